using System.Buffers.Binary;

namespace QwenSharp.Numerics;

/// <summary>
/// llama.cpp's quantizers guided by an importance matrix (<c>llama-quantize --imatrix</c>): each column's mean squared
/// activation weighs how much its rounding error counts, so the scales fit the values that move the outputs most. The same
/// operations in the same order as ggml's <c>quantize_row_*_impl</c> with <c>quant_weights</c> (tested byte for byte
/// against <c>ggml_quantize_chunk</c>). One row at a time: the legacy types' weights use the whole row's mean square.
/// Weights per value are importance × √(σ² + x²), σ² the row's (legacy types) or the super-block's (k-quants, doubled)
/// mean square; Q6_K takes the importance as it is. Q8_0 has no weighted form (llama.cpp ignores the matrix for it).
/// </summary>
public static class ImportanceQuantizer
{
    private const int Block = 32;

    /// <summary>Whether <paramref name="type"/> quantizes differently with an importance matrix (the types with a weighted form here).</summary>
    public static bool Weighs(Formats.DType type) => type is Formats.DType.Q4_0 or Formats.DType.Q4_1 or Formats.DType.Q5_0 or Formats.DType.Q5_1
        or Formats.DType.Q2_K or Formats.DType.Q3_K or Formats.DType.Q4_K or Formats.DType.Q5_K or Formats.DType.Q6_K
        or Formats.DType.IQ4_NL or Formats.DType.IQ4_XS or Formats.DType.IQ3_XXS or Formats.DType.IQ3_S or Formats.DType.IQ2_S or Formats.DType.IQ2_XS or Formats.DType.IQ2_XXS or Formats.DType.IQ1_S or Formats.DType.IQ1_M;

    /// <summary>One row of <paramref name="type"/> (<see cref="Weighs"/>) from its values and one importance per column.</summary>
    public static void QuantizeRow(Formats.DType type, ReadOnlySpan<float> row, ReadOnlySpan<float> importance, Span<byte> blocks)
    {
        if (importance.Length != row.Length)
        {
            throw new ArgumentException($"{importance.Length} importances for a row of {row.Length} values", nameof(importance));
        }

        switch (type)
        {
            case Formats.DType.Q4_0: QuantizeSymmetricLegacy(row, importance, blocks, nmax: 8); break;
            case Formats.DType.Q4_1: QuantizeAffineLegacy(row, importance, blocks, nmax: 15); break;
            case Formats.DType.Q5_0: QuantizeSymmetricLegacy(row, importance, blocks, nmax: 16); break;
            case Formats.DType.Q5_1: QuantizeAffineLegacy(row, importance, blocks, nmax: 31); break;
            case Formats.DType.Q2_K: QuantizeQ2_K(row, importance, blocks); break;
            case Formats.DType.Q3_K: QuantizeQ3_K(row, importance, blocks); break;
            case Formats.DType.Q4_K: QuantizeAffineK(row, importance, blocks, fifthBit: false); break;
            case Formats.DType.Q5_K: QuantizeAffineK(row, importance, blocks, fifthBit: true); break;
            case Formats.DType.Q6_K: KQuantQuantizer.QuantizeQ6_K(row, blocks, importance); break;
            case Formats.DType.IQ4_NL: Iq4Quantizer.QuantizeIq4_NL(row, blocks, importance); break;
            case Formats.DType.IQ4_XS: Iq4Quantizer.QuantizeIq4_XS(row, blocks, importance); break;
            case Formats.DType.IQ3_XXS: Iq3Quantizer.QuantizeIq3_XXS(row, blocks, importance); break;
            case Formats.DType.IQ3_S: Iq3Quantizer.QuantizeIq3_S(row, blocks, importance); break;
            case Formats.DType.IQ2_S: Iq2Quantizer.QuantizeIq2_S(row, blocks, importance); break;
            case Formats.DType.IQ2_XS: Iq2Quantizer.QuantizeIq2_XS(row, blocks, importance); break;
            case Formats.DType.IQ2_XXS: Iq2Quantizer.QuantizeIq2_XXS(row, blocks, importance); break;
            case Formats.DType.IQ1_S: Iq1Quantizer.QuantizeIq1_S(row, blocks, importance); break;
            case Formats.DType.IQ1_M: Iq1Quantizer.QuantizeIq1_M(row, blocks, importance); break;
            default: throw new NotSupportedException($"no importance-weighted quantizer to {Formats.DTypes.Name(type)}");
        }
    }

    /// <summary>
    /// quantize_row_q4_0_impl / q5_0_impl: per block make_qx_quants with 8 (Q4_0) or 16 (Q5_0) levels each side,
    /// weighted; d the fitted scale, Q5_0's fifth bits gathered into qh.
    /// </summary>
    private static void QuantizeSymmetricLegacy(ReadOnlySpan<float> row, ReadOnlySpan<float> importance, Span<byte> blocks, int nmax)
    {
        bool five = nmax == 16;
        int blockBytes = five ? LegacyQuantBlocks.Q5_0BlockBytes : 18;
        float sigma2 = MeanSquare(row);
        Span<float> weights = stackalloc float[Block];
        Span<sbyte> codes = stackalloc sbyte[Block];
        for (int b = 0; b < row.Length / Block; b++)
        {
            ReadOnlySpan<float> x = row.Slice(b * Block, Block);
            Weights(x, importance.Slice(b * Block, Block), sigma2, weights);
            float d = KQuantQuantizer.SymmetricScale(x, codes, nmax, weights);
            Span<byte> block = blocks.Slice(b * blockBytes, blockBytes);
            BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits.FromSingle(d));
            Span<byte> qs = block.Slice(five ? 6 : 2, 16);
            uint qh = 0;
            for (int j = 0; j < 16; j++)
            {
                int low = (byte)codes[j], high = (byte)codes[j + 16];
                qs[j] = (byte)((low & 0x0F) | ((high & 0x0F) << 4));
                qh |= (uint)((low >> 4) & 1) << j;
                qh |= (uint)((high >> 4) & 1) << (j + 16);
            }

            if (five)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(block[2..], qh);
            }
        }
    }

    /// <summary>quantize_row_q4_1_impl / q5_1_impl: per block a scale and min by make_qkx3_quants, weighted; m = -min.</summary>
    private static void QuantizeAffineLegacy(ReadOnlySpan<float> row, ReadOnlySpan<float> importance, Span<byte> blocks, int nmax)
    {
        bool five = nmax == 31;
        int blockBytes = five ? LegacyQuantBlocks.Q5_1BlockBytes : LegacyQuantBlocks.Q4_1BlockBytes;
        float sigma2 = MeanSquare(row);
        Span<float> weights = stackalloc float[Block];
        Span<byte> codes = stackalloc byte[Block];
        Span<byte> trial = stackalloc byte[Block];
        for (int b = 0; b < row.Length / Block; b++)
        {
            ReadOnlySpan<float> x = row.Slice(b * Block, Block);
            Weights(x, importance.Slice(b * Block, Block), sigma2, weights);
            float d = FineAffineScale(x, weights, codes, out float negatedMin, trial, nmax);
            Span<byte> block = blocks.Slice(b * blockBytes, blockBytes);
            BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits.FromSingle(d));
            BinaryPrimitives.WriteUInt16LittleEndian(block[2..], HalfBits.FromSingle(-negatedMin));
            Span<byte> qs = block.Slice(five ? 8 : 4, 16);
            uint qh = 0;
            for (int j = 0; j < 16; j++)
            {
                int low = codes[j], high = codes[j + 16];
                qs[j] = (byte)((low & 0x0F) | ((high & 0x0F) << 4));
                qh |= (uint)((low >> 4) & 1) << j;
                qh |= (uint)((high >> 4) & 1) << (j + 16);
            }

            if (five)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(block[4..], qh);
            }
        }
    }

    /// <summary>
    /// quantize_row_q2_K_impl: per group of 16 a scale and min by make_qkx3_quants (weights importance × √(σ² + x²), σ² the
    /// super-block's mean square), the 16 scales and the 16 mins quantized to 4 bits by make_qp_quants weighted by each
    /// group's total weight, every value requantized against the stored pair.
    /// </summary>
    private static void QuantizeQ2_K(ReadOnlySpan<float> row, ReadOnlySpan<float> importance, Span<byte> blocks)
    {
        Span<byte> codes = stackalloc byte[256];
        Span<byte> trial = stackalloc byte[16];
        Span<float> weights = stackalloc float[16];
        Span<float> scales = stackalloc float[16], mins = stackalloc float[16], groupWeights = stackalloc float[16];
        Span<byte> scaleCodes = stackalloc byte[16], minCodes = stackalloc byte[16];
        for (int b = 0; b < row.Length / 256; b++)
        {
            ReadOnlySpan<float> x = row.Slice(b * 256, 256);
            float sigma2 = MeanSquare(x);
            for (int j = 0; j < 16; j++)
            {
                ReadOnlySpan<float> group = x.Slice(16 * j, 16);
                Weights(group, importance.Slice((b * 256) + (16 * j), 16), sigma2, weights);
                groupWeights[j] = Sum(weights);
                scales[j] = FineAffineScale(group, weights, codes.Slice(16 * j, 16), out mins[j], trial, 3);
            }

            float dm = PositiveScale(scales, scaleCodes, 15, groupWeights);
            float mm = PositiveScale(mins, minCodes, 15, groupWeights);
            Span<byte> block = blocks.Slice(b * 84, 84);
            for (int j = 0; j < 16; j++)
            {
                block[j] = unchecked((byte)(scaleCodes[j] | (minCodes[j] << 4)));
            }

            KQuantQuantizer.StoreQ2_K(x, block, HalfBits.FromSingle(dm), HalfBits.FromSingle(mm), codes);
        }
    }

    /// <summary>
    /// quantize_row_q3_K_impl: per group of 16 a symmetric scale by make_qx_quants (weights importance × √(σ² + x²), σ² twice
    /// the super-block's mean square), the 16 scales to 6 bits by make_qx_quants weighted by each group's total weight.
    /// </summary>
    private static void QuantizeQ3_K(ReadOnlySpan<float> row, ReadOnlySpan<float> importance, Span<byte> blocks)
    {
        Span<sbyte> codes = stackalloc sbyte[256];
        Span<byte> low = stackalloc byte[256];
        Span<float> weights = stackalloc float[16];
        Span<float> scales = stackalloc float[16], groupWeights = stackalloc float[16];
        Span<sbyte> scaleCodes = stackalloc sbyte[16];
        for (int b = 0; b < row.Length / 256; b++)
        {
            ReadOnlySpan<float> x = row.Slice(b * 256, 256);
            float sigma2 = 2 * SumOfSquares(x) / 256;
            for (int j = 0; j < 16; j++)
            {
                ReadOnlySpan<float> group = x.Slice(16 * j, 16);
                Weights(group, importance.Slice((b * 256) + (16 * j), 16), sigma2, weights);
                groupWeights[j] = Sum(weights);
                scales[j] = KQuantQuantizer.SymmetricScale(group, codes.Slice(16 * j, 16), 4, weights);
            }

            Span<byte> block = blocks.Slice(b * 110, 110);
            Span<byte> packedScales = block.Slice(96, 12);
            packedScales.Clear();
            float dBlock = KQuantQuantizer.SymmetricScale(scales, scaleCodes, 32, groupWeights);
            for (int j = 0; j < 16; j++)
            {
                KQuantQuantizer.PackQ3_KScale(packedScales, j, scaleCodes[j]);
            }

            KQuantQuantizer.StoreQ3_K(x, block, HalfBits.FromSingle(dBlock), codes, low);
        }
    }

    /// <summary>
    /// quantize_row_q4_K_impl / q5_K_impl: per sub-block of 32 a scale and min by make_qkx3_quants (weights importance ×
    /// √(σ² + x²), σ² twice the super-block's mean square), the eight scales and eight mins to 6 bits by make_qp_quants.
    /// </summary>
    private static void QuantizeAffineK(ReadOnlySpan<float> row, ReadOnlySpan<float> importance, Span<byte> blocks, bool fifthBit)
    {
        int blockBytes = fifthBit ? 176 : 144, nmax = fifthBit ? 31 : 15;
        Span<byte> codes = stackalloc byte[256];
        Span<byte> trial = stackalloc byte[32];
        Span<float> weights = stackalloc float[32];
        Span<float> scales = stackalloc float[8], mins = stackalloc float[8], groupWeights = stackalloc float[8];
        Span<byte> scaleCodes = stackalloc byte[8], minCodes = stackalloc byte[8];
        for (int b = 0; b < row.Length / 256; b++)
        {
            ReadOnlySpan<float> x = row.Slice(b * 256, 256);
            float sigma2 = 2 * SumOfSquares(x) / 256;
            for (int j = 0; j < 8; j++)
            {
                ReadOnlySpan<float> sub = x.Slice(32 * j, 32);
                Weights(sub, importance.Slice((b * 256) + (32 * j), 32), sigma2, weights);
                groupWeights[j] = Sum(weights);
                scales[j] = FineAffineScale(sub, weights, codes.Slice(32 * j, 32), out mins[j], trial, nmax);
            }

            float dBlock = PositiveScale(scales, scaleCodes, 63, groupWeights);
            float mBlock = PositiveScale(mins, minCodes, 63, groupWeights);
            if (fifthBit)
            {
                // (q5_K_impl clamps the codes to 63; q4_K_impl stores them as they come.)
                for (int j = 0; j < 8; j++)
                {
                    scaleCodes[j] = Math.Min((byte)63, scaleCodes[j]);
                    minCodes[j] = Math.Min((byte)63, minCodes[j]);
                }
            }

            KQuantQuantizer.StoreAffine(x, blocks.Slice(b * blockBytes, blockBytes), scaleCodes, minCodes, dBlock, mBlock, fifthBit, codes);
        }
    }

    /// <summary>importance × √(σ² + x²) for each value of a block.</summary>
    private static void Weights(ReadOnlySpan<float> x, ReadOnlySpan<float> importance, float sigma2, Span<float> weights)
    {
        for (int i = 0; i < x.Length; i++)
        {
            weights[i] = importance[i] * MathF.Sqrt(sigma2 + (x[i] * x[i]));
        }
    }

    /// <summary>Σ x² / n, summed in order in f32 as ggml does.</summary>
    private static float MeanSquare(ReadOnlySpan<float> x) => SumOfSquares(x) / x.Length;

    /// <summary>Σ x², summed in order in f32 as ggml's quantizers sum it (a SIMD sum would round differently).</summary>
    internal static float SumOfSquares(ReadOnlySpan<float> x)
    {
        float sum = 0;
        foreach (float v in x)
        {
            sum += v * v;
        }

        return sum;
    }

    private static float Sum(ReadOnlySpan<float> x)
    {
        float sum = 0;
        foreach (float v in x)
        {
            sum += v;
        }

        return sum;
    }

    /// <summary>
    /// make_qkx3_quants as the weighted quantizers call it (rmin -0.9, rdelta 0.05, 36 steps, least squares): make_qkx2's
    /// search (<see cref="KQuantQuantizer.AffineScale"/>) over finer steps; it clamps each product before rounding where
    /// make_qkx2 clamps after, the same codes for every finite value.
    /// </summary>
    private static float FineAffineScale(ReadOnlySpan<float> x, ReadOnlySpan<float> weights, Span<byte> codes, out float negatedMin,
        Span<byte> trial, int nmax) =>
        KQuantQuantizer.AffineScale(x, weights, codes, out negatedMin, trial, nmax, -0.9f, 0.05f, 36);

    /// <summary>
    /// make_qp_quants: non-negative values (a super-block's scales or mins) to codes 0..nmax under one scale, chosen among
    /// nine candidates by weighted squared error, then up to five passes moving single codes while the weighted
    /// least-squares fit improves; returns the fitted scale. Codes are bytes as in ggml (a negative one wraps).
    /// </summary>
    internal static float PositiveScale(ReadOnlySpan<float> x, Span<byte> codes, int nmax, ReadOnlySpan<float> weights)
    {
        int n = x.Length;
        float max = 0;
        foreach (float v in x)
        {
            max = MathF.Max(max, v);
        }

        if (max < KQuantQuantizer.GroupMaxEps)
        {
            codes[..n].Clear();
            return 0f;
        }

        float iscale = nmax / max;
        for (int i = 0; i < n; i++)
        {
            codes[i] = unchecked((byte)KQuantQuantizer.NearestInt(iscale * x[i]));
        }

        float scale = 1 / iscale;
        float bestError = 0;
        for (int i = 0; i < n; i++)
        {
            float diff = x[i] - (scale * codes[i]);
            bestError += weights[i] * diff * diff;
        }

        for (int step = -4; step <= 4; step++)
        {
            if (step == 0)
            {
                continue;
            }

            float trialInverse = ((0.1f * step) + nmax) / max;
            float trialScale = 1 / trialInverse;
            float error = 0;
            for (int i = 0; i < n; i++)
            {
                int l = Math.Min(nmax, KQuantQuantizer.NearestInt(trialInverse * x[i]));
                float diff = x[i] - (trialScale * l);
                error += weights[i] * diff * diff;
            }

            if (error < bestError)
            {
                bestError = error;
                iscale = trialInverse;
            }
        }

        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < n; i++)
        {
            int l = Math.Min(nmax, KQuantQuantizer.NearestInt(iscale * x[i]));
            codes[i] = unchecked((byte)l);
            float w = weights[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }

        for (int pass = 0; pass < 5; pass++)
        {
            int changed = 0;
            for (int i = 0; i < n; i++)
            {
                float w = weights[i];
                float slx = sumlx - (w * x[i] * codes[i]);
                float sl2 = suml2 - (w * codes[i] * codes[i]);
                if (slx > 0 && sl2 > 0)
                {
                    int l = Math.Min(nmax, KQuantQuantizer.NearestInt(x[i] * sl2 / slx));
                    if (l != codes[i])
                    {
                        slx += w * x[i] * l;
                        sl2 += w * l * l;
                        if (slx * slx * suml2 > sumlx * sumlx * sl2)
                        {
                            codes[i] = unchecked((byte)l);
                            sumlx = slx;
                            suml2 = sl2;
                            changed++;
                        }
                    }
                }
            }

            if (changed == 0)
            {
                break;
            }
        }

        return suml2 > 0 ? sumlx / suml2 : 0f;
    }
}
