using System.Buffers.Binary;

namespace QwenSharp.Numerics;

/// <summary>
/// llama.cpp's quantizer to IQ4_NL and IQ4_XS (<c>quantize_row_iq4_nl_impl</c>, as <c>quantize_iq4_nl</c> and
/// <c>quantize_iq4_xs</c> call it for llama-quantize): per 32 values the scale d for which the nearest table values
/// (<see cref="Iq4XsBlocks.NonLinearValues"/>) × d best fit the values in weighted least squares, over 15 candidates
/// around -max / -127; weights x², or with an importance matrix importance × √(σ² + x²), σ² twice the (super-)block's
/// mean square. IQ4_NL stores that d as f16 per block; IQ4_XS stores each sub-block's d as a 6-bit multiple of the
/// super-block's f16 d = -max d / 32 and picks the values again against it. The same operations in the same order
/// (tested byte for byte against ggml's quantizer, with and without importance).
/// </summary>
public static class Iq4Quantizer
{
    private const int Block = 32, Tries = 7;

    /// <summary>Rows of IQ4_NL blocks (18 bytes per 32 values); <paramref name="importance"/> one weight per value of the row, or empty.</summary>
    public static void QuantizeIq4_NL(ReadOnlySpan<float> values, Span<byte> blocks, ReadOnlySpan<float> importance = default)
    {
        Span<float> weights = stackalloc float[Block];
        Span<byte> codes = stackalloc byte[Block];
        Span<float> scales = stackalloc float[1];
        for (int b = 0; b < values.Length / Block; b++)
        {
            ReadOnlySpan<float> x = values.Slice(b * Block, Block);
            Span<byte> block = blocks.Slice(b * 18, 18);
            ReadOnlySpan<float> qw = importance.IsEmpty ? default : importance.Slice(b * Block, Block);
            float sigma2 = 2f * ImportanceQuantizer.SumOfSquares(x) / Block;
            FitScales(x, qw, sigma2, weights, codes, scales);
            BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits.FromSingle(scales[0]));
            float id = scales[0] != 0 ? 1 / scales[0] : 0;
            for (int j = 0; j < Block; j++)
            {
                codes[j] = (byte)BestIndex(id * x[j]);
            }

            Pack(codes, block.Slice(2, 16));
        }
    }

    /// <summary>Rows of IQ4_XS super-blocks (136 bytes per 256 values); <paramref name="importance"/> one weight per value of the row, or empty.</summary>
    public static void QuantizeIq4_XS(ReadOnlySpan<float> values, Span<byte> blocks, ReadOnlySpan<float> importance = default)
    {
        const int superBlock = Iq4XsBlocks.BlockValues;
        Span<float> weights = stackalloc float[Block];
        Span<byte> codes = stackalloc byte[superBlock];
        Span<float> scales = stackalloc float[superBlock / Block];
        for (int b = 0; b < values.Length / superBlock; b++)
        {
            ReadOnlySpan<float> x = values.Slice(b * superBlock, superBlock);
            Span<byte> block = blocks.Slice(b * Iq4XsBlocks.BlockBytes, Iq4XsBlocks.BlockBytes);
            ReadOnlySpan<float> qw = importance.IsEmpty ? default : importance.Slice(b * superBlock, superBlock);
            float sigma2 = 2f * ImportanceQuantizer.SumOfSquares(x) / superBlock;
            float maxScale = FitScales(x, qw, sigma2, weights, codes, scales);

            // The sub-blocks' scales as 6-bit multiples of d = -max / 32, each sub-block's values picked again against its stored scale.
            block.Clear();
            float d = -maxScale / 32;
            BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits.FromSingle(d));
            float id = d != 0 ? 1 / d : 0f;
            ushort scalesHigh = 0;
            Span<byte> scalesLow = block.Slice(4, 4);
            for (int s = 0; s < scales.Length; s++)
            {
                int l = Math.Clamp(KQuantQuantizer.NearestInt(id * scales[s]), -32, 31);
                float dl = d * l;
                float idl = dl != 0 ? 1 / dl : 0f;
                for (int j = 0; j < Block; j++)
                {
                    codes[(s * Block) + j] = (byte)BestIndex(idl * x[(s * Block) + j]);
                }

                l += 32;
                scalesLow[s / 2] |= (byte)((l & 0xF) << (4 * (s % 2)));
                scalesHigh |= (ushort)((l >> 4) << (2 * s));
            }

            BinaryPrimitives.WriteUInt16LittleEndian(block[2..], scalesHigh);
            Pack(codes, block.Slice(8, 128));
        }
    }

    /// <summary>
    /// Each 32 values' best scale into <paramref name="scales"/> (0 for a block of zeros) and its codes into
    /// <paramref name="codes"/>; returns the scale of largest magnitude, sign kept.
    /// </summary>
    private static float FitScales(ReadOnlySpan<float> x, ReadOnlySpan<float> importance, float sigma2, Span<float> weights, Span<byte> codes, Span<float> scales)
    {
        ReadOnlySpan<sbyte> table = Iq4XsBlocks.NonLinearValues;
        float maxScale = 0, amaxScale = 0;
        for (int s = 0; s < scales.Length; s++)
        {
            ReadOnlySpan<float> xb = x.Slice(s * Block, Block);
            for (int j = 0; j < Block; j++)
            {
                weights[j] = importance.IsEmpty ? xb[j] * xb[j] : importance[(s * Block) + j] * MathF.Sqrt(sigma2 + (xb[j] * xb[j]));
            }

            float max = KQuantQuantizer.SignedMax(xb, out float amax);
            if (amax < KQuantQuantizer.GroupMaxEps)
            {
                scales[s] = 0;
                continue;
            }

            float d = -max / table[0];
            float id = 1 / d;
            float sumqx = 0, sumq2 = 0;
            for (int j = 0; j < Block; j++)
            {
                int l = BestIndex(id * xb[j]);
                codes[(s * Block) + j] = (byte)l;
                float q = table[l], w = weights[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }

            // (A block whose every importance is 0 has no fit: its scale is 0, the block zeros, as ggml's.)
            d = sumq2 > 0 ? sumqx / sumq2 : 0f;
            float best = d * sumqx;
            for (int step = -Tries; step <= Tries; step++)
            {
                id = (step + table[0]) / max;
                sumqx = sumq2 = 0;
                for (int j = 0; j < Block; j++)
                {
                    float q = table[BestIndex(id * xb[j])], w = weights[j];
                    sumqx += w * q * xb[j];
                    sumq2 += w * q * q;
                }

                if (sumq2 > 0 && sumqx * sumqx > best * sumq2)
                {
                    d = sumqx / sumq2;
                    best = d * sumqx;
                }
            }

            scales[s] = d;
            if (MathF.Abs(d) > amaxScale)
            {
                amaxScale = MathF.Abs(d);
                maxScale = d;
            }
        }

        return maxScale;
    }

    /// <summary>ggml's best_index_int8: the index of the table value nearest <paramref name="x"/> (the upper one on a tie), by bisection.</summary>
    private static int BestIndex(float x)
    {
        ReadOnlySpan<sbyte> table = Iq4XsBlocks.NonLinearValues;
        if (x <= table[0])
        {
            return 0;
        }

        if (x >= table[^1])
        {
            return table.Length - 1;
        }

        int low = 0, high = table.Length - 1;
        while (high - low > 1)
        {
            int middle = (low + high) / 2;
            if (x < table[middle])
            {
                high = middle;
            }
            else
            {
                low = middle;
            }
        }

        return x - table[high - 1] < table[high] - x ? high - 1 : high;
    }

    /// <summary>Each 32 codes into 16 bytes: code j in the low nibble of byte j, code j + 16 in its high nibble.</summary>
    private static void Pack(ReadOnlySpan<byte> codes, Span<byte> packed)
    {
        for (int i = 0; i < codes.Length / Block; i++)
        {
            for (int j = 0; j < 16; j++)
            {
                packed[(16 * i) + j] = (byte)(codes[(Block * i) + j] | (codes[(Block * i) + 16 + j] << 4));
            }
        }
    }
}
