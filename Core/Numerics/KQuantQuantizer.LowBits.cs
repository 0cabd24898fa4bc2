using System.Buffers.Binary;

namespace QwenSharp.Numerics;

/// <summary>
/// llama.cpp's reference quantizers to Q2_K and Q3_K, the bulk of its Q2_K and Q3_K_S/M/L files, the same operations in
/// the same order as <c>quantize_row_q2_K_ref</c> and <c>quantize_row_q3_K_ref</c> (tested byte for byte against its
/// quantizer). Q2_K: per group of 16 a scale and a min by <c>make_qkx2_quants</c> (2-bit codes, weights |x|, least
/// absolute error), both quantized to 4 bits under the f16 d and dmin. Q3_K: per group of 16 a symmetric scale by
/// <c>make_q3_quants</c> (codes -4..3, five passes moving single codes while the weighted fit improves), the 16 scales
/// quantized to 6 bits under one f16 d; every value then requantized against its group's stored scale.
/// </summary>
public static partial class KQuantQuantizer
{
    /// <summary>Bytes of a Q2_K super-block: 16 scale/min bytes, 64 bytes of 2-bit codes, d and dmin.</summary>
    private const int Q2_KBlockBytes = 84;

    /// <summary>Bytes of a Q3_K super-block: 32 bytes of high bits, 64 of 2-bit codes, 12 of 6-bit scales, d.</summary>
    private const int Q3_KBlockBytes = 110;

    public static void QuantizeQ2_K(ReadOnlySpan<float> values, Span<byte> blocks)
    {
        Span<byte> codes = stackalloc byte[256];
        Span<byte> trial = stackalloc byte[16];
        Span<float> weights = stackalloc float[16];
        Span<float> scales = stackalloc float[16];
        Span<float> mins = stackalloc float[16];
        for (int b = 0; b < values.Length / 256; b++)
        {
            ReadOnlySpan<float> x = values.Slice(b * 256, 256);
            Span<byte> block = blocks.Slice(b * Q2_KBlockBytes, Q2_KBlockBytes);
            Span<byte> scaleBytes = block[..16];
            float maxScale = 0, maxMin = 0;
            for (int j = 0; j < 16; j++)
            {
                ReadOnlySpan<float> group = x.Slice(16 * j, 16);
                for (int l = 0; l < 16; l++)
                {
                    weights[l] = MathF.Abs(group[l]);
                }

                scales[j] = AffineScale(group, weights, codes.Slice(16 * j, 16), out mins[j], trial, 3, -0.5f, 0.1f, 15, useMad: true);
                maxScale = scales[j] > maxScale ? scales[j] : maxScale;
                maxMin = mins[j] > maxMin ? mins[j] : maxMin;
            }

            ushort d = 0, dmin = 0;
            scaleBytes.Clear();
            if (maxScale > 0)
            {
                float inverse = 15f / maxScale;
                for (int j = 0; j < 16; j++)
                {
                    scaleBytes[j] = unchecked((byte)NearestInt(inverse * scales[j]));
                }

                d = HalfBits.FromSingle(maxScale / 15f);
            }

            if (maxMin > 0)
            {
                float inverse = 15f / maxMin;
                for (int j = 0; j < 16; j++)
                {
                    scaleBytes[j] |= unchecked((byte)(NearestInt(inverse * mins[j]) << 4));
                }

                dmin = HalfBits.FromSingle(maxMin / 15f);
            }

            StoreQ2_K(x, block, d, dmin, codes);
        }
    }

    /// <summary>
    /// The rest of a Q2_K super-block whose 16 scale/min bytes are in place: d and dmin stored, every value requantized
    /// against its group's stored scale and min (a group whose scale is 0 keeps the codes of its own fit), the codes packed.
    /// </summary>
    internal static void StoreQ2_K(ReadOnlySpan<float> x, Span<byte> block, ushort d, ushort dmin, Span<byte> codes)
    {
        ReadOnlySpan<byte> scaleBytes = block[..16];
        BinaryPrimitives.WriteUInt16LittleEndian(block[80..], d);
        BinaryPrimitives.WriteUInt16LittleEndian(block[82..], dmin);
        for (int j = 0; j < 16; j++)
        {
            float dj = HalfBits.ToSingle(d) * (scaleBytes[j] & 0xF);
            if (dj == 0)
            {
                continue;    // the group keeps the codes its own fit gave it
            }

            float dm = HalfBits.ToSingle(dmin) * (scaleBytes[j] >> 4);
            for (int i = 0; i < 16; i++)
            {
                codes[(16 * j) + i] = (byte)Math.Clamp(NearestInt((x[(16 * j) + i] + dm) / dj), 0, 3);
            }
        }

        PackTwoBitCodes(codes, block.Slice(16, 64));
    }

    public static void QuantizeQ3_K(ReadOnlySpan<float> values, Span<byte> blocks)
    {
        Span<sbyte> codes = stackalloc sbyte[256];
        Span<byte> low = stackalloc byte[256];
        Span<float> scales = stackalloc float[16];
        for (int b = 0; b < values.Length / 256; b++)
        {
            ReadOnlySpan<float> x = values.Slice(b * 256, 256);
            Span<byte> block = blocks.Slice(b * Q3_KBlockBytes, Q3_KBlockBytes);
            Span<byte> packedScales = block.Slice(96, 12);
            float maxScale = 0, amax = 0;
            for (int j = 0; j < 16; j++)
            {
                scales[j] = ThreeBitScale(x.Slice(16 * j, 16), codes.Slice(16 * j, 16));
                if (MathF.Abs(scales[j]) > amax)
                {
                    amax = MathF.Abs(scales[j]);
                    maxScale = scales[j];
                }
            }

            packedScales.Clear();
            ushort d = 0;
            if (maxScale != 0)
            {
                float iscale = -32f / maxScale;
                for (int j = 0; j < 16; j++)
                {
                    PackQ3_KScale(packedScales, j, Math.Clamp(NearestInt(iscale * scales[j]), -32, 31) + 32);
                }

                d = HalfBits.FromSingle(1 / iscale);
            }

            StoreQ3_K(x, block, d, codes, low);
        }
    }

    /// <summary>
    /// The rest of a Q3_K super-block whose 12 bytes of 6-bit scales are in place: d stored, every value requantized against
    /// its group's stored scale (a group whose scale is 0 keeps the codes of its own fit), high bits and low codes packed.
    /// </summary>
    internal static void StoreQ3_K(ReadOnlySpan<float> x, Span<byte> block, ushort d, Span<sbyte> codes, Span<byte> low)
    {
        Span<byte> hmask = block[..32];
        ReadOnlySpan<byte> packedScales = block.Slice(96, 12);
        BinaryPrimitives.WriteUInt16LittleEndian(block[108..], d);
        for (int j = 0; j < 16; j++)
        {
            int sc = j < 8 ? packedScales[j] & 0xF : packedScales[j - 8] >> 4;
            sc = (sc | (((packedScales[8 + (j % 4)] >> (2 * (j / 4))) & 3) << 4)) - 32;
            float dj = HalfBits.ToSingle(d) * sc;
            if (dj == 0)
            {
                continue;    // the group keeps the codes its own scale gave it
            }

            for (int i = 0; i < 16; i++)
            {
                codes[(16 * j) + i] = (sbyte)(Math.Clamp(NearestInt(x[(16 * j) + i] / dj), -4, 3) + 4);
            }
        }

        // The high bit of code j goes to bit j / 32 of hmask[j % 32]; the low two bits as Q2_K's.
        hmask.Clear();
        for (int j = 0; j < 256; j++)
        {
            int code = codes[j];
            if (code > 3)
            {
                hmask[j % 32] |= (byte)(1 << (j / 32));
                code -= 4;
            }

            low[j] = (byte)code;
        }

        PackTwoBitCodes(low, block.Slice(32, 64));
    }

    /// <summary>A Q3_K group scale's 6-bit code (0..63) into the super-block's 12 packed scale bytes (cleared beforehand).</summary>
    internal static void PackQ3_KScale(Span<byte> packedScales, int j, int l)
    {
        if (j < 8)
        {
            packedScales[j] = (byte)(l & 0xF);
        }
        else
        {
            packedScales[j - 8] |= (byte)((l & 0xF) << 4);
        }

        packedScales[(j % 4) + 8] |= (byte)((l >> 4) << (2 * (j / 4)));
    }

    /// <summary>A super-block's 256 two-bit codes into 64 bytes: byte l of each 32 holds codes l, l + 32, l + 64, l + 96 of its 128.</summary>
    internal static void PackTwoBitCodes(ReadOnlySpan<byte> codes, Span<byte> packed)
    {
        for (int j = 0; j < 256; j += 128)
        {
            for (int l = 0; l < 32; l++)
            {
                packed[(j / 4) + l] = (byte)(codes[j + l] | (codes[j + l + 32] << 2) | (codes[j + l + 64] << 4) | (codes[j + l + 96] << 6));
            }
        }
    }

    /// <summary>
    /// make_q3_quants with do_rmse: codes round(-4 / max × x) in -4..3 (max the value of largest magnitude), then up to
    /// five passes that move single codes to where the weighted least-squares fit (weights x²) improves; returns the fitted
    /// scale and leaves the codes + 4 (0..7) in <paramref name="codes"/>.
    /// </summary>
    private static float ThreeBitScale(ReadOnlySpan<float> x, Span<sbyte> codes)
    {
        const int nmax = 4;
        float max = SignedMax(x, out float amax);
        if (amax < GroupMaxEps)
        {
            codes.Clear();
            return 0;
        }

        float iscale = -nmax / max, sumlx = 0, suml2 = 0;
        for (int i = 0; i < x.Length; i++)
        {
            int l = Math.Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1);
            codes[i] = (sbyte)l;
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }

        for (int pass = 0; pass < 5; pass++)
        {
            int changed = 0;
            for (int i = 0; i < x.Length; i++)
            {
                float w = x[i] * x[i];
                float slx = sumlx - (w * x[i] * codes[i]);
                if (slx > 0)
                {
                    float sl2 = suml2 - (w * codes[i] * codes[i]);
                    int l = Math.Clamp(NearestInt(x[i] * sl2 / slx), -nmax, nmax - 1);
                    if (l != codes[i])
                    {
                        slx += w * x[i] * l;
                        sl2 += w * l * l;
                        if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2)
                        {
                            codes[i] = (sbyte)l;
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

        for (int i = 0; i < x.Length; i++)
        {
            codes[i] += nmax;
        }

        return sumlx / suml2;
    }
}
