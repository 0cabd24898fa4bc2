namespace QwenSharp.Numerics;

/// <summary>
/// llama.cpp's reference quantizers to the k-quants, the same operations in the same order, so the bytes equal
/// llama.cpp's for the same input (tested against its quantizer). Q6_K (<c>quantize_row_q6_K_ref</c> with
/// <c>make_qx_quants</c>, rmse_type 1): per group of 16 a scale chosen among 19 candidates by weighted least squares
/// (weights x²), the 16 scales quantized to int8 under one f16 d, every value requantized against its group's stored
/// scale. Q4_K (<c>quantize_row_q4_K_ref</c> with <c>make_qkx2_quants</c>): per sub-block of 32 a scale and a min
/// fitted by weighted least squares over 21 candidate steps (weights rms + |x|), both quantized to 6 bits under the
/// f16 d and dmin, every value requantized against the stored pair.
/// </summary>
public static partial class KQuantQuantizer
{
    internal const float GroupMaxEps = 1e-15f;

    /// <summary>ggml's nearest_int: round half to even (its float trick, for |x| up to 2^22).</summary>
    internal static int NearestInt(float value) => (int)MathF.Round(value);

    public static void QuantizeQ6_K(ReadOnlySpan<float> values, Span<byte> blocks) => QuantizeQ6_K(values, blocks, importance: default);

    /// <summary>
    /// Q6_K, each group's scale fitted with <paramref name="importance"/> as its weights where given (llama.cpp's
    /// <c>quantize_row_q6_K_impl</c> with an importance matrix), else with x² (the reference quantizer).
    /// </summary>
    internal static void QuantizeQ6_K(ReadOnlySpan<float> values, Span<byte> blocks, ReadOnlySpan<float> importance)
    {
        Span<sbyte> codes = stackalloc sbyte[256];
        Span<float> scales = stackalloc float[16];
        for (int b = 0; b < values.Length / 256; b++)
        {
            ReadOnlySpan<float> x = values.Slice(b * 256, 256);
            Span<byte> block = blocks.Slice(b * 210, 210);
            float maxScale = 0, maxAbsScale = 0;
            for (int g = 0; g < 16; g++)
            {
                float scale = SymmetricScale(x.Slice(16 * g, 16), codes.Slice(16 * g, 16), 32,
                    importance.IsEmpty ? default : importance.Slice((b * 256) + (16 * g), 16));
                scales[g] = scale;
                if (MathF.Abs(scale) > maxAbsScale)
                {
                    maxAbsScale = MathF.Abs(scale);
                    maxScale = scale;
                }
            }

            block.Clear();
            if (maxAbsScale < GroupMaxEps)
            {
                continue;
            }

            float iscale = -128f / maxScale;
            ushort d = HalfBits.FromSingle(1 / iscale);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(block[208..], d);
            for (int g = 0; g < 16; g++)
            {
                block[192 + g] = (byte)(sbyte)Math.Min(127, NearestInt(iscale * scales[g]));
            }

            for (int g = 0; g < 16; g++)
            {
                float dg = HalfBits.ToSingle(d) * (sbyte)block[192 + g];
                if (dg == 0)
                {
                    continue;    // the group keeps the codes its own scale gave it
                }

                for (int i = 0; i < 16; i++)
                {
                    int l = Math.Clamp(NearestInt(x[(16 * g) + i] / dg), -32, 31);
                    codes[(16 * g) + i] = (sbyte)(l + 32);
                }
            }

            PackQ6_KCodes(codes, block);
        }
    }

    /// <summary>A Q6_K super-block's 256 six-bit codes (0..63) into its ql and qh (the first 192 bytes of <paramref name="block"/>).</summary>
    internal static void PackQ6_KCodes(ReadOnlySpan<sbyte> codes, Span<byte> block)
    {
        for (int n = 0; n < 256; n += 128)
        {
            Span<byte> ql = block.Slice(n / 2, 64), qh = block.Slice(128 + (n / 4), 32);
            for (int l = 0; l < 32; l++)
            {
                int q1 = codes[n + l], q2 = codes[n + l + 32], q3 = codes[n + l + 64], q4 = codes[n + l + 96];
                ql[l] = (byte)((q1 & 0xF) | ((q3 & 0xF) << 4));
                ql[l + 32] = (byte)((q2 & 0xF) | ((q4 & 0xF) << 4));
                qh[l] = (byte)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
        }
    }

    /// <summary>
    /// make_qx_quants with rmse_type 1: codes nmax + round(iscale × x) in 0..2·nmax-1, for iscale = -nmax / max and 18
    /// nudged candidates, keeping the one whose least-squares scale (weights x², or <paramref name="weights"/> where given)
    /// explains most; returns that scale.
    /// </summary>
    internal static float SymmetricScale(ReadOnlySpan<float> x, Span<sbyte> codes, int nmax, ReadOnlySpan<float> weights = default)
    {
        float max = SignedMax(x, out float amax);
        if (amax < GroupMaxEps)
        {
            codes.Clear();
            return 0;
        }

        float iscale = -nmax / max;
        (float sumlx, float suml2) = Sums(x, weights, iscale, nmax);
        for (int i = 0; i < x.Length; i++)
        {
            codes[i] = (sbyte)(nmax + Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1));
        }

        float scale = suml2 != 0 ? sumlx / suml2 : 0f;
        float best = scale * sumlx;
        for (int step = -9; step <= 9; step++)
        {
            if (step == 0)
            {
                continue;
            }

            iscale = -(nmax + (0.1f * step)) / max;
            (sumlx, suml2) = Sums(x, weights, iscale, nmax);
            if (suml2 > 0 && sumlx * sumlx > best * suml2)
            {
                for (int i = 0; i < x.Length; i++)
                {
                    codes[i] = (sbyte)(nmax + Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1));
                }

                scale = sumlx / suml2;
                best = scale * sumlx;
            }
        }

        return scale;
    }

    /// <summary>The first value of the largest magnitude, sign and all (ggml's max), and that magnitude.</summary>
    internal static float SignedMax(ReadOnlySpan<float> x, out float amax)
    {
        float max = 0;
        amax = 0;
        foreach (float v in x)
        {
            if (MathF.Abs(v) > amax)
            {
                amax = MathF.Abs(v);
                max = v;
            }
        }

        return max;
    }

    /// <summary>Σ w·x·l and Σ w·l² over the group, w = x² (or the given weights), l = round(iscale × x) clamped.</summary>
    private static (float SumLX, float SumL2) Sums(ReadOnlySpan<float> x, ReadOnlySpan<float> weights, float iscale, int nmax)
    {
        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < x.Length; i++)
        {
            float v = x[i];
            int l = Math.Clamp(NearestInt(iscale * v), -nmax, nmax - 1);
            float w = weights.IsEmpty ? v * v : weights[i];
            sumlx += w * v * l;
            suml2 += w * l * l;
        }

        return (sumlx, suml2);
    }

    public static void QuantizeQ4_K(ReadOnlySpan<float> values, Span<byte> blocks) => QuantizeAffine(values, blocks, fifthBit: false);

    /// <summary>
    /// llama.cpp's quantize_row_q5_K_ref: Q4_K's search with 5-bit codes (make_qkx2_quants with nmax 31, rmin -0.5 and
    /// 15 steps), the codes' fifth bits in qh (bit 2c or 2c + 1 of qh[l] for value l of chunk c's low or high nibbles).
    /// </summary>
    public static void QuantizeQ5_K(ReadOnlySpan<float> values, Span<byte> blocks) => QuantizeAffine(values, blocks, fifthBit: true);

    /// <summary>Q4_K, or with <paramref name="fifthBit"/> Q5_K: the two differ only in the code range and where codes go.</summary>
    private static void QuantizeAffine(ReadOnlySpan<float> values, Span<byte> blocks, bool fifthBit)
    {
        int blockBytes = fifthBit ? 176 : 144;
        Span<byte> codes = stackalloc byte[256];
        Span<byte> scaleCodes = stackalloc byte[8];
        Span<byte> minCodes = stackalloc byte[8];
        Span<byte> trial = stackalloc byte[32];
        Span<float> weights = stackalloc float[32];
        Span<float> scales = stackalloc float[8];
        Span<float> mins = stackalloc float[8];
        for (int b = 0; b < values.Length / 256; b++)
        {
            ReadOnlySpan<float> x = values.Slice(b * 256, 256);
            Span<byte> block = blocks.Slice(b * blockBytes, blockBytes);
            float maxScale = 0, maxMin = 0;
            for (int j = 0; j < 8; j++)
            {
                ReadOnlySpan<float> sub = x.Slice(32 * j, 32);
                float sumX2 = 0;
                foreach (float v in sub)
                {
                    sumX2 += v * v;
                }

                float averageX = MathF.Sqrt(sumX2 / 32);
                for (int l = 0; l < 32; l++)
                {
                    weights[l] = averageX + MathF.Abs(sub[l]);
                }

                scales[j] = fifthBit ? AffineScale(sub, weights, codes.Slice(32 * j, 32), out mins[j], trial, 31, -0.5f, 0.1f, 15)
                    : AffineScale(sub, weights, codes.Slice(32 * j, 32), out mins[j], trial, 15, -1f, 0.1f, 20);
                maxScale = scales[j] > maxScale ? scales[j] : maxScale;
                maxMin = mins[j] > maxMin ? mins[j] : maxMin;
            }

            float inverseScale = maxScale > 0 ? 63f / maxScale : 0f;
            float inverseMin = maxMin > 0 ? 63f / maxMin : 0f;
            for (int j = 0; j < 8; j++)
            {
                scaleCodes[j] = Math.Min((byte)63, unchecked((byte)NearestInt(inverseScale * scales[j])));
                minCodes[j] = Math.Min((byte)63, unchecked((byte)NearestInt(inverseMin * mins[j])));
            }

            StoreAffine(x, block, scaleCodes, minCodes, maxScale / 63f, maxMin / 63f, fifthBit, codes);
        }
    }

    /// <summary>
    /// A Q4_K (or with <paramref name="fifthBit"/> Q5_K) super-block from its eight 6-bit scale and min codes and its d and
    /// dmin: those packed and stored, then every value of <paramref name="x"/> requantized against its sub-block's stored
    /// scale and min (a sub-block whose scale is 0 keeps the codes of its own fit, already in <paramref name="codes"/>).
    /// </summary>
    internal static void StoreAffine(ReadOnlySpan<float> x, Span<byte> block, ReadOnlySpan<byte> scaleCodes, ReadOnlySpan<byte> minCodes,
        float dValue, float dminValue, bool fifthBit, Span<byte> codes)
    {
        int top = fifthBit ? 31 : 15;
        block.Clear();
        Span<byte> packed = block.Slice(4, 12);
        for (int j = 0; j < 8; j++)
        {
            byte ls = scaleCodes[j], lm = minCodes[j];
            if (j < 4)
            {
                packed[j] = ls;
                packed[j + 4] = lm;
            }
            else
            {
                packed[j + 4] = (byte)((ls & 0xF) | ((lm & 0xF) << 4));
                packed[j - 4] |= (byte)((ls >> 4) << 6);
                packed[j] |= (byte)((lm >> 4) << 6);
            }
        }

        ushort d = HalfBits.FromSingle(dValue), dmin = HalfBits.FromSingle(dminValue);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(block, d);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(block[2..], dmin);
        for (int j = 0; j < 8; j++)
        {
            (int sc, int m) = KQuantBlocks.ScaleAndMinCodes(packed, j);
            float dj = HalfBits.ToSingle(d) * sc;
            if (dj == 0)
            {
                continue;
            }

            float dm = HalfBits.ToSingle(dmin) * m;
            for (int i = 0; i < 32; i++)
            {
                codes[(32 * j) + i] = (byte)Math.Clamp(NearestInt((x[(32 * j) + i] + dm) / dj), 0, top);
            }
        }

        Span<byte> qh = block.Slice(16, 32), qs = block.Slice(fifthBit ? 48 : 16, 128);
        for (int j = 0, c = 0; j < 256; j += 64, c++)
        {
            for (int l = 0; l < 32; l++)
            {
                int low = codes[j + l], high = codes[j + l + 32];
                if (fifthBit)
                {
                    qh[l] |= (byte)(((low >> 4) << (2 * c)) | ((high >> 4) << ((2 * c) + 1)));
                }

                qs[(j / 2) + l] = (byte)((low & 0xF) | ((high & 0xF) << 4));
            }
        }
    }

    /// <summary>
    /// make_qkx2_quants: codes round(iscale × (x - min)) in 0..nmax, the scale and min refitted by
    /// weighted least squares for iscale = (rmin + rdelta·step + nmax) / (max - min), step 0..nsteps, keeping the fit
    /// of least weighted squared error (absolute error with <paramref name="useMad"/>); <paramref name="negatedMin"/> is -min (min ≤ 0).
    /// </summary>
    internal static float AffineScale(ReadOnlySpan<float> x, ReadOnlySpan<float> weights, Span<byte> codes, out float negatedMin,
        Span<byte> trial, int nmax, float rmin, float rdelta, int nsteps, bool useMad = false)
    {
        float min = x[0], max = x[0], sumW = weights[0], sumX = sumW * x[0];
        for (int i = 1; i < x.Length; i++)
        {
            if (x[i] < min)
            {
                min = x[i];
            }

            if (x[i] > max)
            {
                max = x[i];
            }

            float w = weights[i];
            sumW += w;
            sumX += w * x[i];
        }

        if (min > 0)
        {
            min = 0;
        }

        if (max == min)
        {
            codes.Clear();
            negatedMin = -min;
            return 0f;
        }

        float iscale = nmax / (max - min);
        float scale = 1 / iscale;
        float bestError = 0;
        for (int i = 0; i < x.Length; i++)
        {
            codes[i] = (byte)Math.Clamp(NearestInt(iscale * (x[i] - min)), 0, nmax);
            float diff = (scale * codes[i]) + min - x[i];
            bestError += weights[i] * (useMad ? MathF.Abs(diff) : diff * diff);
        }

        for (int step = 0; step <= nsteps; step++)
        {
            iscale = (rmin + (rdelta * step) + nmax) / (max - min);
            float sumL = 0, sumL2 = 0, sumXL = 0;
            for (int i = 0; i < x.Length; i++)
            {
                int l = Math.Clamp(NearestInt(iscale * (x[i] - min)), 0, nmax);
                trial[i] = (byte)l;
                float w = weights[i];
                sumL += w * l;
                sumL2 += w * l * l;
                sumXL += w * l * x[i];
            }

            float determinant = (sumW * sumL2) - (sumL * sumL);
            if (determinant > 0)
            {
                float thisScale = ((sumW * sumXL) - (sumX * sumL)) / determinant;
                float thisMin = ((sumL2 * sumX) - (sumL * sumXL)) / determinant;
                if (thisMin > 0)
                {
                    thisMin = 0;
                    thisScale = sumXL / sumL2;
                }

                float error = 0;
                for (int i = 0; i < x.Length; i++)
                {
                    float diff = (thisScale * trial[i]) + thisMin - x[i];
                    error += weights[i] * (useMad ? MathF.Abs(diff) : diff * diff);
                }

                if (error < bestError)
                {
                    trial[..x.Length].CopyTo(codes);
                    bestError = error;
                    scale = thisScale;
                    min = thisMin;
                }
            }
        }

        negatedMin = -min;
        return scale;
    }
}
