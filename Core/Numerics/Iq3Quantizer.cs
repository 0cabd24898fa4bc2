using System.Buffers.Binary;

namespace QwenSharp.Numerics;

/// <summary>
/// llama.cpp's quantizers to IQ3_XXS and IQ3_S (<c>quantize_row_iq3_xxs_impl</c>, <c>quantize_row_iq3_s_impl</c>, as
/// llama-quantize calls them): per 32 values the signs taken out (IQ3_XXS keeps an even count of them, flipping the least
/// important value's where it must), then over 31 (IQ3_S: 19) candidate scales around max / 15 each group of four
/// magnitudes rounded to 3-bit levels and, where those are not a point of the lattice (<see cref="IqGrids"/>), replaced by
/// the nearest of its precomputed neighbours in weighted distance; the scale that fits best in weighted least squares wins.
/// Weights x², or with an importance matrix importance × √(σ² + x²), σ² twice the super-block's mean square. The same
/// operations in the same order (tested byte for byte against ggml's quantizer, with and without importance).
/// </summary>
public static class Iq3Quantizer
{
    private const int SuperBlock = 256, Block = 32;

    private static readonly IqSearchRule s_xxsRule = new(Block, GroupSize: 4, MaxLevel: 8, Step: 0.2f, Tries: 15, KeepOnGrid: true, EvenSigns: true, SkipBelow: 1e-8f);

    // ggml leaves a block unscaled only where its largest magnitude is 0 (the least positive float is the bound that says so).
    private static readonly IqSearchRule s_sRule = new(Block, GroupSize: 4, MaxLevel: 8, Step: 0.2f, Tries: 9, KeepOnGrid: false, EvenSigns: false, SkipBelow: float.Epsilon);

    private static readonly Lazy<IqLattice> s_xxs = new(() => new IqLattice(256, dims: 4, bits: 3, k => IqGrids.Iq3Xxs(k), [4, 12, 20, 28, 36, 44, 52, 62], neighbourDistances: 2));
    private static readonly Lazy<IqLattice> s_s = new(() => new IqLattice(512, dims: 4, bits: 3, k => IqGrids.Iq3S(k), [1, 3, 5, 7, 9, 11, 13, 15], neighbourDistances: 3));

    /// <summary>Bytes of an IQ3_XXS super-block: f16 d, 64 lattice indices, 8 words of 4 × 7 sign bits and a 4-bit scale.</summary>
    public const int Iq3XxsBlockBytes = 98;

    /// <summary>Bytes of an IQ3_S super-block: f16 d, 64 low index bytes, 8 bytes of ninth bits, 32 sign bytes, 4 scale bytes.</summary>
    public const int Iq3SBlockBytes = 110;

    /// <summary>A row of IQ3_XXS super-blocks; <paramref name="importance"/> one weight per value of the row, or empty.</summary>
    public static void QuantizeIq3_XXS(ReadOnlySpan<float> values, Span<byte> blocks, ReadOnlySpan<float> importance = default)
    {
        IqLattice lattice = s_xxs.Value;
        var state = new IqScaleSearch(s_xxsRule);
        Span<float> scales = stackalloc float[SuperBlock / Block];
        Span<byte> signs = stackalloc byte[4];
        for (int b = 0; b < values.Length / SuperBlock; b++)
        {
            ReadOnlySpan<float> x = values.Slice(b * SuperBlock, SuperBlock);
            Span<byte> block = blocks.Slice(b * Iq3XxsBlockBytes, Iq3XxsBlockBytes);
            block.Clear();
            Span<byte> indices = block.Slice(2, 64), words = block.Slice(66, 32);
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

                for (int k = 0; k < 8; k++)
                {
                    indices[(8 * ib) + k] = (byte)lattice.IndexOf(state.Codes.Slice(4 * k, 4));
                }

                BinaryPrimitives.WriteUInt32LittleEndian(words[(4 * ib)..], (uint)(signs[0] | (signs[1] << 7) | (signs[2] << 14) | (signs[3] << 21)));
                scales[ib] = scale;
                maxScale = MathF.Max(maxScale, scale);
            }

            if (maxScale == 0)
            {
                block.Clear();
                continue;
            }

            float d = maxScale / 31;
            BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits.FromSingle(d * 1.0125f));    // ggml's fudge factor
            float id = 1 / d;
            for (int ib = 0; ib < SuperBlock / Block; ib++)
            {
                int l = IqScaleSearch.ScaleCode(id, scales[ib]);
                Span<byte> word = words[(4 * ib)..];
                BinaryPrimitives.WriteUInt32LittleEndian(word, BinaryPrimitives.ReadUInt32LittleEndian(word) | ((uint)l << 28));
            }
        }
    }

    /// <summary>A row of IQ3_S super-blocks; <paramref name="importance"/> one weight per value of the row, or empty.</summary>
    public static void QuantizeIq3_S(ReadOnlySpan<float> values, Span<byte> blocks, ReadOnlySpan<float> importance = default)
    {
        IqLattice lattice = s_s.Value;
        var state = new IqScaleSearch(s_sRule);
        Span<float> scales = stackalloc float[SuperBlock / Block];
        Span<byte> signs = stackalloc byte[4];
        for (int b = 0; b < values.Length / SuperBlock; b++)
        {
            ReadOnlySpan<float> x = values.Slice(b * SuperBlock, SuperBlock);
            Span<byte> block = blocks.Slice(b * Iq3SBlockBytes, Iq3SBlockBytes);
            block.Clear();
            Span<byte> low = block.Slice(2, 64), high = block.Slice(66, 8), signBytes = block.Slice(74, 32), scaleBytes = block.Slice(106, 4);
            float sigma2 = state.Sigma2(x);
            float maxScale = 0;
            for (int ib = 0; ib < SuperBlock / Block; ib++)
            {
                // ggml skips an all-zero group without moving on its index and sign bytes, so the groups after it land one
                // place early under their own scales (values it does not mean); each group's bytes stay in its own place here.
                ReadOnlySpan<float> xb = x.Slice(ib * Block, Block);
                if (!state.TryFit(lattice, xb, IqScaleSearch.ImportanceOf(importance, (b * SuperBlock) + (ib * Block), Block), sigma2, signs, out float scale))
                {
                    scales[ib] = 0;
                    continue;
                }

                for (int k = 0; k < 8; k++)
                {
                    int index = lattice.IndexOf(state.Codes.Slice(4 * k, 4));
                    low[(8 * ib) + k] = (byte)index;
                    high[((8 * ib) + k) / 8] |= (byte)((index >> 8) << (((8 * ib) + k) % 8));
                }

                signs.CopyTo(signBytes[(4 * ib)..]);
                scales[ib] = scale;
                maxScale = MathF.Max(maxScale, scale);
            }

            if (maxScale == 0)
            {
                continue;
            }

            float d = maxScale / 31;
            BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits.FromSingle(d * 1.033f));    // ggml's fudge factor
            float id = 1 / d;
            for (int ib = 0; ib < SuperBlock / Block; ib += 2)
            {
                int l1 = IqScaleSearch.ScaleCode(id, scales[ib]);
                int l2 = IqScaleSearch.ScaleCode(id, scales[ib + 1]);
                scaleBytes[ib / 2] = (byte)(l1 | (l2 << 4));
            }
        }
    }
}
