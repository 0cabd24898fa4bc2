using System.Buffers.Binary;

namespace QwenSharp.Numerics;

/// <summary>
/// GGUF's k-quant super-blocks of 256 values (ggml's <c>block_q4_K</c>, <c>block_q5_K</c>, <c>block_q6_K</c>,
/// <c>block_q8_K</c>), dequantized as ggml's reference <c>dequantize_row_*</c> defines them: sub-blocks of 32
/// (Q4_K, Q5_K: a 6-bit scale and a 6-bit min each, packed in 12 bytes) or 16 values (Q6_K: an int8 scale each)
/// under one f16 super-scale.
/// <code>
///   Q4_K  d f16, dmin f16, scales[12], qs[128]            value = d × sc × q - dmin × m     (q: 4 bits)
///   Q5_K  d f16, dmin f16, scales[12], qh[32], qs[128]    value = d × sc × q - dmin × m     (q: 5 bits)
///   Q6_K  ql[128], qh[64], scales[16] int8, d f16          value = d × sc × (q - 32)          (q: 6 bits)
///   Q8_K  d f32, qs[256] int8, bsums[16] int16             value = d × q
/// </code>
/// </summary>
public static class KQuantBlocks
{
    public const int BlockValues = 256;

    /// <summary>Bytes of a Q2_K super-block: scales[16] (4-bit scale, 4-bit min), qs[64], d, dmin.</summary>
    public const int Q2_KBytes = 84;

    public static void DequantizeQ2_K(ReadOnlySpan<byte> blocks, Span<float> values)
    {
        for (int b = 0; b < values.Length / BlockValues; b++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(b * Q2_KBytes, Q2_KBytes);
            float d = Half(block, 80), min = Half(block, 82);
            for (int v = 0; v < BlockValues; v++)
            {
                byte sc = block[v / 16];
                values[(b * BlockValues) + v] = (d * (sc & 0xF) * TwoBitCode(block.Slice(16, 64), v)) - (min * (sc >> 4));
            }
        }
    }

    /// <summary>
    /// Value v's 2-bit code among the 64 bytes of 2-bit codes of a Q2_K or Q3_K super-block, in ggml's order: v = 128n +
    /// 32j + 16h + l takes bits 2j, 2j + 1 of qs[32n + 16h + l]. Its scale is its 16-value group's, v / 16.
    /// </summary>
    public static int TwoBitCode(ReadOnlySpan<byte> qs, int v) => (qs[(32 * (v / 128)) + (v % 32)] >> (2 * (v % 128 / 32))) & 3;

    public static void DequantizeQ4_K(ReadOnlySpan<byte> blocks, Span<float> values)
    {
        for (int b = 0; b < values.Length / BlockValues; b++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(b * 144, 144);
            float d = Half(block, 0), min = Half(block, 2);
            ReadOnlySpan<byte> scales = block.Slice(4, 12), q = block.Slice(16, 128);
            Span<float> y = values.Slice(b * BlockValues, BlockValues);
            for (int j = 0, sub = 0; j < BlockValues; j += 64, sub += 2)
            {
                (float d1, float m1) = ScaleAndMin(scales, sub, d, min);
                (float d2, float m2) = ScaleAndMin(scales, sub + 1, d, min);
                ReadOnlySpan<byte> qs = q.Slice(j / 2, 32);
                for (int l = 0; l < 32; l++)
                {
                    y[j + l] = (d1 * (qs[l] & 0xF)) - m1;
                    y[j + 32 + l] = (d2 * (qs[l] >> 4)) - m2;
                }
            }
        }
    }

    public static void DequantizeQ5_K(ReadOnlySpan<byte> blocks, Span<float> values)
    {
        for (int b = 0; b < values.Length / BlockValues; b++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(b * 176, 176);
            float d = Half(block, 0), min = Half(block, 2);
            ReadOnlySpan<byte> scales = block.Slice(4, 12), qh = block.Slice(16, 32), q = block.Slice(48, 128);
            Span<float> y = values.Slice(b * BlockValues, BlockValues);
            int low = 1, high = 2;
            for (int j = 0, sub = 0; j < BlockValues; j += 64, sub += 2, low <<= 2, high <<= 2)
            {
                (float d1, float m1) = ScaleAndMin(scales, sub, d, min);
                (float d2, float m2) = ScaleAndMin(scales, sub + 1, d, min);
                ReadOnlySpan<byte> qs = q.Slice(j / 2, 32);
                for (int l = 0; l < 32; l++)
                {
                    y[j + l] = (d1 * ((qs[l] & 0xF) + ((qh[l] & low) != 0 ? 16 : 0))) - m1;
                    y[j + 32 + l] = (d2 * ((qs[l] >> 4) + ((qh[l] & high) != 0 ? 16 : 0))) - m2;
                }
            }
        }
    }

    public static void DequantizeQ6_K(ReadOnlySpan<byte> blocks, Span<float> values)
    {
        for (int b = 0; b < values.Length / BlockValues; b++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(b * 210, 210);
            float d = Half(block, 208);
            Span<float> y = values.Slice(b * BlockValues, BlockValues);
            for (int n = 0; n < BlockValues; n += 128)
            {
                ReadOnlySpan<byte> ql = block.Slice(n / 2, 64), qh = block.Slice(128 + (n / 4), 32);
                ReadOnlySpan<byte> sc = block.Slice(192 + (n / 16), 8);
                for (int l = 0; l < 32; l++)
                {
                    int s = l / 16;
                    int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                    int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                    int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                    int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                    y[n + l] = d * (sbyte)sc[s] * q1;
                    y[n + l + 32] = d * (sbyte)sc[s + 2] * q2;
                    y[n + l + 64] = d * (sbyte)sc[s + 4] * q3;
                    y[n + l + 96] = d * (sbyte)sc[s + 6] * q4;
                }
            }
        }
    }

    public static void DequantizeQ8_K(ReadOnlySpan<byte> blocks, Span<float> values)
    {
        for (int b = 0; b < values.Length / BlockValues; b++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(b * 292, 292);
            float d = BinaryPrimitives.ReadSingleLittleEndian(block);
            for (int j = 0; j < BlockValues; j++)
            {
                values[(b * BlockValues) + j] = d * (sbyte)block[4 + j];
            }
        }
    }

    /// <summary>
    /// ggml's <c>get_scale_min_k4</c>: sub-blocks 0-3 keep their 6-bit scale and min in the low bits of bytes j and
    /// j + 4; sub-blocks 4-7 take 4 bits from byte j + 4 and the top 2 bits of bytes j - 4 (scale) and j (min).
    /// </summary>
    internal static (int Scale, int Min) ScaleAndMinCodes(ReadOnlySpan<byte> scales, int j) => j < 4
        ? (scales[j] & 63, scales[j + 4] & 63)
        : ((scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4), (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));

    /// <summary>Sub-block j's scale and min as the dequantizers use them: d × scale, dmin × min.</summary>
    private static (float Scale, float Min) ScaleAndMin(ReadOnlySpan<byte> scales, int j, float d, float min)
    {
        (int sc, int m) = ScaleAndMinCodes(scales, j);
        return (d * sc, min * m);
    }

    private static float Half(ReadOnlySpan<byte> block, int offset) => HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block[offset..]));
}
