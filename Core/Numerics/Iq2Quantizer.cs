using System.Buffers.Binary;

namespace QwenSharp.Numerics;

/// <summary>
/// llama.cpp's quantizer to IQ2_S (<c>quantize_row_iq2_s_impl</c>, as llama-quantize calls it): per 16 values the signs
/// taken out, then over 19 candidate scales around max / 5 each group of eight magnitudes rounded to 2-bit levels and,
/// where those are not a point of the 1024-point lattice (<see cref="IqGrids.Iq2S"/>), replaced by the nearest of its
/// neighbours in weighted distance; the scale that fits best in weighted least squares wins. Weights σ²/4 + x², or with
/// an importance matrix importance × √(σ² + x²), σ² twice the super-block's mean square. The same operations in the same
/// order (tested byte for byte against ggml's quantizer, with and without importance).
/// </summary>
public static class Iq2Quantizer
{
    private const int SuperBlock = 256, Block = 16, MaxLevel = 3;

    // Every key a search can form: eight levels of 0..2 at 2 bits each (ggml's kmap_size 43692).
    private static readonly Lazy<IqLattice> s_s = new(() => new IqLattice(1024, dims: 8, bits: 2, k => IqGrids.Iq2S(k), [8, 25, 43], neighbourDistances: 1, keys: 43692));

    /// <summary>Bytes of an IQ2_S super-block: f16 d, 32 low index bytes, 32 sign bytes, 8 bytes of high index bits, 8 scale bytes.</summary>
    public const int Iq2SBlockBytes = 82;

    /// <summary>A row of IQ2_S super-blocks; <paramref name="importance"/> one weight per value of the row, or empty.</summary>
    public static void QuantizeIq2_S(ReadOnlySpan<float> values, Span<byte> blocks, ReadOnlySpan<float> importance = default)
    {
        IqLattice lattice = s_s.Value;
        var state = new IqScaleSearch(Block, groupSize: 8, MaxLevel, step: 0.1f);
        Span<float> scales = stackalloc float[SuperBlock / Block];
        Span<byte> signs = stackalloc byte[2];
        for (int b = 0; b < values.Length / SuperBlock; b++)
        {
            ReadOnlySpan<float> x = values.Slice(b * SuperBlock, SuperBlock);
            Span<byte> block = blocks.Slice(b * Iq2SBlockBytes, Iq2SBlockBytes);
            block.Clear();
            Span<byte> low = block.Slice(2, 32), signBytes = block.Slice(34, 32), high = block.Slice(66, 8), scaleBytes = block.Slice(74, 8);
            float sigma2 = 2 * ImportanceQuantizer.SumOfSquares(x) / SuperBlock;
            float maxScale = 0;
            for (int ib = 0; ib < SuperBlock / Block; ib++)
            {
                ReadOnlySpan<float> xb = x.Slice(ib * Block, Block);
                state.Weigh(xb, importance.IsEmpty ? default : importance.Slice((b * SuperBlock) + (ib * Block), Block), sigma2, unweightedFloor: 0.25f * sigma2);
                signs[0] = state.AllSigns(xb, 0);
                signs[1] = state.AllSigns(xb, 1);
                float max = state.MaxMagnitude();
                if (max < 1e-8f)
                {
                    scales[ib] = 0;
                    continue;
                }

                float scale = state.Search(lattice, max, tries: 9, keepOnGrid: true);
                if (scale < 0)
                {
                    scale = -scale;
                    signs[0] = (byte)~signs[0];
                    signs[1] = (byte)~signs[1];
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
                int l = Math.Clamp(KQuantQuantizer.NearestInt(0.5f * ((inverse * scales[ib]) - 1)), 0, 15);
                scaleBytes[ib / 2] |= (byte)(l << (4 * (ib % 2)));
            }
        }
    }
}
