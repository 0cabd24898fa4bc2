using System.Buffers.Binary;

namespace QwenSharp.Numerics;

/// <summary>
/// llama.cpp's quantizers to IQ2_S, IQ2_XS and IQ2_XXS (<c>quantize_row_iq2_s_impl</c>, <c>_iq2_xs_impl</c>,
/// <c>_iq2_xxs_impl</c>, as llama-quantize calls them). IQ2_S: per 16 values the signs
/// taken out, then over 19 candidate scales around max / 5 each group of eight magnitudes rounded to 2-bit levels and,
/// where those are not a point of the 1024-point lattice (<see cref="IqGrids.Iq2S"/>), replaced by the nearest of its
/// neighbours in weighted distance; the scale that fits best in weighted least squares wins. Weights σ²/4 + x², or with
/// an importance matrix importance × √(σ² + x²), σ² twice the super-block's mean square. The same operations in the same
/// order (tested byte for byte against ggml's quantizer, with and without importance). IQ2_XS (512 points, 16 values a
/// scale) and IQ2_XXS (256 points, 32 values a scale, first fitted by make_qp_quants, candidates around it, every group
/// rounded again) keep an even count of minus signs as IQ3_XXS does, weigh by importance × √(σ² + x²) with σ² the plain
/// mean square, and take no row without an importance matrix (ggml asserts one; llama-quantize requires it).
/// </summary>
public static class Iq2Quantizer
{
    private const int SuperBlock = 256, Block = 16;

    private static readonly IqSearchRule s_sRule = new(Block, GroupSize: 8, MaxLevel: 3, Step: 0.1f, Tries: 9, KeepOnGrid: true, EvenSigns: false, SkipBelow: 1e-8f, UnweightedSigmaShare: 0.25f);
    private static readonly IqSearchRule s_xsRule = new(Block, GroupSize: 8, MaxLevel: 3, Step: 0.1f, Tries: 9, KeepOnGrid: true, EvenSigns: true, SkipBelow: KQuantQuantizer.GroupMaxEps, SigmaTwice: false);
    private static readonly IqSearchRule s_xxsRule = new(Block: 32, GroupSize: 8, MaxLevel: 3, Step: 0.1f, Tries: 6, KeepOnGrid: false, EvenSigns: true, SkipBelow: KQuantQuantizer.GroupMaxEps, SigmaTwice: false, FirstFit: true);

    // Every key a search can form: eight levels of 0..2 at 2 bits each (ggml's kmap_size 43692).
    private static readonly Lazy<IqLattice> s_s = new(() => new IqLattice(1024, dims: 8, bits: 2, k => IqGrids.Iq2S(k), [8, 25, 43], neighbourDistances: 1, keys: 43692));
    private static readonly Lazy<IqLattice> s_xs = new(() => new IqLattice(512, dims: 8, bits: 2, k => IqGrids.Iq2Xs(k), [8, 25, 43], neighbourDistances: 2, keys: 43692));
    private static readonly Lazy<IqLattice> s_xxs = new(() => new IqLattice(256, dims: 8, bits: 2, k => IqGrids.Iq2Xxs(k), [8, 25, 43], neighbourDistances: 2, keys: 43692));

    /// <summary>Bytes of an IQ2_XS super-block: f16 d, 32 words of a 9-bit index and 7 sign bits, 8 scale bytes.</summary>
    public const int Iq2XsBlockBytes = 74;

    /// <summary>Bytes of an IQ2_XXS super-block: f16 d, then per 32 values four 8-bit indices and a word of 4 × 7 sign bits and a 4-bit scale.</summary>
    public const int Iq2XxsBlockBytes = 66;

    /// <summary>Bytes of an IQ2_S super-block: f16 d, 32 low index bytes, 32 sign bytes, 8 bytes of high index bits, 8 scale bytes.</summary>
    public const int Iq2SBlockBytes = 82;

    /// <summary>A row of IQ2_S super-blocks; <paramref name="importance"/> one weight per value of the row, or empty.</summary>
    public static void QuantizeIq2_S(ReadOnlySpan<float> values, Span<byte> blocks, ReadOnlySpan<float> importance = default)
    {
        IqLattice lattice = s_s.Value;
        var state = new IqScaleSearch(s_sRule);
        Span<float> scales = stackalloc float[SuperBlock / Block];
        Span<byte> signs = stackalloc byte[2];
        for (int b = 0; b < values.Length / SuperBlock; b++)
        {
            ReadOnlySpan<float> x = values.Slice(b * SuperBlock, SuperBlock);
            Span<byte> block = blocks.Slice(b * Iq2SBlockBytes, Iq2SBlockBytes);
            block.Clear();
            Span<byte> low = block.Slice(2, 32), signBytes = block.Slice(34, 32), high = block.Slice(66, 8), scaleBytes = block.Slice(74, 8);
            float sigma2 = state.Sigma2(x);
            float maxScale = 0;
            for (int ib = 0; ib < SuperBlock / Block; ib++)
            {
                ReadOnlySpan<float> xb = x.Slice(ib * Block, Block);
                if (!state.TryFit(lattice, xb, IqScaleSearch.ImportanceOf(importance, (b * SuperBlock) + (ib * Block), Block), sigma2, signs, out float scale))
                {
                    scales[ib] = 0;
                    continue;
                }

                for (int k = 0; k < 2; k++)
                {
                    int index = lattice.IndexOf(state.Codes.Slice(8 * k, 8)), group = (2 * ib) + k;
                    low[group] = (byte)index;
                    high[group / 4] |= (byte)((index >> 8) << (2 * (group % 4)));
                    signBytes[group] = signs[k];
                }

                scales[ib] = scale;
                maxScale = MathF.Max(maxScale, scale);
            }

            if (maxScale == 0)
            {
                continue;
            }

            float d = maxScale / 31;
            BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits.FromSingle(d * 0.9875f));    // ggml's fudge factor
            float inverse = 1 / d;
            for (int ib = 0; ib < SuperBlock / Block; ib++)
            {
                int l = IqScaleSearch.ScaleCode(inverse, scales[ib]);
                scaleBytes[ib / 2] |= (byte)(l << (4 * (ib % 2)));
            }
        }
    }

    /// <summary>A row of IQ2_XS super-blocks, weighted by <paramref name="importance"/> (one per value of the row).</summary>
    public static void QuantizeIq2_XS(ReadOnlySpan<float> values, Span<byte> blocks, ReadOnlySpan<float> importance)
    {
        RequireImportance(importance, "IQ2_XS");
        IqLattice lattice = s_xs.Value;
        var state = new IqScaleSearch(s_xsRule);
        Span<float> scales = stackalloc float[SuperBlock / Block];
        Span<byte> signs = stackalloc byte[2];
        for (int b = 0; b < values.Length / SuperBlock; b++)
        {
            ReadOnlySpan<float> x = values.Slice(b * SuperBlock, SuperBlock);
            Span<byte> block = blocks.Slice(b * Iq2XsBlockBytes, Iq2XsBlockBytes);
            block.Clear();
            Span<byte> words = block.Slice(2, 64), scaleBytes = block.Slice(66, 8);
            float sigma2 = state.Sigma2(x);
            float maxScale = 0;
            for (int ib = 0; ib < SuperBlock / Block; ib++)
            {
                ReadOnlySpan<float> xb = x.Slice(ib * Block, Block);
                if (!state.TryFit(lattice, xb, importance.Slice((b * SuperBlock) + (ib * Block), Block), sigma2, signs, out float scale))
                {
                    scales[ib] = 0;
                    continue;
                }

                for (int k = 0; k < 2; k++)
                {
                    int index = lattice.IndexOf(state.Codes.Slice(8 * k, 8));
                    BinaryPrimitives.WriteUInt16LittleEndian(words[(2 * ((2 * ib) + k))..], (ushort)(index | (signs[k] << 9)));
                }

                scales[ib] = scale;
                maxScale = MathF.Max(maxScale, scale);
            }

            if (maxScale == 0)
            {
                block.Clear();
                continue;
            }

            float d = maxScale / 31;
            BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits.FromSingle(d));
            float inverse = 1 / d;
            for (int ib = 0; ib < SuperBlock / Block; ib++)
            {
                int l = IqScaleSearch.ScaleCode(inverse, scales[ib]);
                scaleBytes[ib / 2] |= (byte)(l << (4 * (ib % 2)));
            }
        }
    }

    /// <summary>A row of IQ2_XXS super-blocks, weighted by <paramref name="importance"/> (one per value of the row).</summary>
    public static void QuantizeIq2_XXS(ReadOnlySpan<float> values, Span<byte> blocks, ReadOnlySpan<float> importance)
    {
        const int block32 = 32;
        RequireImportance(importance, "IQ2_XXS");
        IqLattice lattice = s_xxs.Value;
        var state = new IqScaleSearch(s_xxsRule);
        Span<float> scales = stackalloc float[SuperBlock / block32];
        Span<byte> signs = stackalloc byte[4];
        for (int b = 0; b < values.Length / SuperBlock; b++)
        {
            ReadOnlySpan<float> x = values.Slice(b * SuperBlock, SuperBlock);
            Span<byte> block = blocks.Slice(b * Iq2XxsBlockBytes, Iq2XxsBlockBytes);
            block.Clear();
            Span<byte> words = block.Slice(2, 64);
            float sigma2 = state.Sigma2(x);
            float maxScale = 0;
            for (int ib = 0; ib < SuperBlock / block32; ib++)
            {
                ReadOnlySpan<float> xb = x.Slice(ib * block32, block32);
                if (!state.TryFit(lattice, xb, importance.Slice((b * SuperBlock) + (ib * block32), block32), sigma2, signs, out float scale))
                {
                    scales[ib] = 0;
                    continue;
                }

                uint indices = 0, signWord = 0;
                for (int k = 0; k < 4; k++)
                {
                    indices |= (uint)lattice.IndexOf(state.Codes.Slice(8 * k, 8)) << (8 * k);
                    signWord |= (uint)signs[k] << (7 * k);
                }

                BinaryPrimitives.WriteUInt32LittleEndian(words[(8 * ib)..], indices);
                BinaryPrimitives.WriteUInt32LittleEndian(words[((8 * ib) + 4)..], signWord);
                scales[ib] = scale;
                maxScale = MathF.Max(maxScale, scale);
            }

            if (maxScale == 0)
            {
                block.Clear();
                continue;
            }

            float d = maxScale / 31;
            BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits.FromSingle(d));
            float inverse = 1 / d;
            for (int ib = 0; ib < SuperBlock / block32; ib++)
            {
                int l = IqScaleSearch.ScaleCode(inverse, scales[ib]);
                Span<byte> word = words[((8 * ib) + 4)..];
                BinaryPrimitives.WriteUInt32LittleEndian(word, BinaryPrimitives.ReadUInt32LittleEndian(word) | ((uint)l << 28));
            }
        }
    }

    private static void RequireImportance(ReadOnlySpan<float> importance, string type)
    {
        if (importance.IsEmpty)
        {
            throw new NotSupportedException($"{type} is quantized with an importance matrix only (llama-quantize requires one): give --imatrix F");
        }
    }
}
