using System.Buffers.Binary;

namespace QwenSharp.Numerics;

/// <summary>
/// GGUF's first block types, 32 values per block (ggml's <c>block_q4_0</c> ... <c>block_q5_1</c>), dequantized as
/// ggml's reference <c>dequantize_row_*</c> defines them. Byte j of <c>qs</c> holds value j in its low nibble and
/// value j + 16 in its high one; the Q5 types add a fifth bit per value from the 32-bit <c>qh</c> (bit j for value j,
/// bit j + 16 for value j + 16).
/// <code>
///   Q4_0  d f16, qs[16]           value = (q - 8) × d
///   Q4_1  d f16, m f16, qs[16]    value = q × d + m
///   Q5_0  d f16, qh[4], qs[16]    value = (q - 16) × d
///   Q5_1  d f16, m f16, qh[4], qs[16]   value = q × d + m
/// </code>
/// </summary>
public static class LegacyQuantBlocks
{
    public const int BlockValues = 32;

    /// <summary>Bytes of a Q4_0 block: the f16 scale and 16 bytes of codes.</summary>
    public const int Q4_0BlockBytes = 18;

    public static void DequantizeQ4_0(ReadOnlySpan<byte> blocks, Span<float> values)
    {
        for (int b = 0; b < values.Length / BlockValues; b++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(b * 18, 18);
            float d = Half(block, 0);
            Span<float> y = values.Slice(b * BlockValues, BlockValues);
            for (int j = 0; j < 16; j++)
            {
                y[j] = ((block[2 + j] & 0x0F) - 8) * d;
                y[j + 16] = ((block[2 + j] >> 4) - 8) * d;
            }
        }
    }

    /// <summary>
    /// Q4_0 blocks stored again as Q8_0 without loss: the same f16 scale, codes q - 8 (for a backend with Q8_0 kernels
    /// and none for Q4_0). Requantizing the values instead rounds them again: d becomes max|x| / 127, not a divisor of
    /// Q4_0's steps.
    /// </summary>
    public static void WidenQ4_0ToQ8_0(ReadOnlySpan<byte> blocks, Span<byte> q8Blocks)
    {
        for (int b = 0; b < blocks.Length / 18; b++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(b * 18, 18);
            Span<byte> wide = q8Blocks.Slice(b * 34, 34);
            wide[0] = block[0];
            wide[1] = block[1];
            for (int j = 0; j < 16; j++)
            {
                wide[2 + j] = (byte)(sbyte)((block[2 + j] & 0x0F) - 8);
                wide[2 + j + 16] = (byte)(sbyte)((block[2 + j] >> 4) - 8);
            }
        }
    }

    /// <summary>
    /// As llama.cpp's <c>quantize_row_q4_0_ref</c>: the value of largest magnitude (the first, sign kept) maps to
    /// code 0, d = max / -8 stored as f16, codes (x / d + 8.5) truncated and at most 15; a block of zeros has d = 0
    /// and every code 8.
    /// </summary>
    public static void QuantizeQ4_0(ReadOnlySpan<float> values, Span<byte> blocks)
    {
        for (int b = 0; b < values.Length / BlockValues; b++)
        {
            ReadOnlySpan<float> x = values.Slice(b * BlockValues, BlockValues);
            Span<byte> block = blocks.Slice(b * 18, 18);
            float d = LargestMagnitude(x) / -8, id = d != 0 ? 1 / d : 0;
            BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits.FromSingle(d));
            for (int j = 0; j < 16; j++)
            {
                int low = Math.Min(15, (int)(sbyte)((x[j] * id) + 8.5f));
                int high = Math.Min(15, (int)(sbyte)((x[j + 16] * id) + 8.5f));
                block[2 + j] = (byte)(low | (high << 4));
            }
        }
    }

    public static void DequantizeQ4_1(ReadOnlySpan<byte> blocks, Span<float> values)
    {
        for (int b = 0; b < values.Length / BlockValues; b++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(b * Q4_1BlockBytes, Q4_1BlockBytes);
            float d = Half(block, 0), m = Half(block, 2);
            Span<float> y = values.Slice(b * BlockValues, BlockValues);
            for (int j = 0; j < 16; j++)
            {
                y[j] = ((block[4 + j] & 0x0F) * d) + m;
                y[j + 16] = ((block[4 + j] >> 4) * d) + m;
            }
        }
    }

    /// <summary>Bytes of a Q4_1 block: the f16 scale and minimum, and 16 bytes of codes.</summary>
    public const int Q4_1BlockBytes = 20;

    /// <summary>
    /// As llama.cpp's <c>quantize_row_q4_1_ref</c>: the block's minimum and maximum give d = (max - min) / 15 and m = min,
    /// both stored as f16 (the codes are computed with the f32 ones), codes ((x - min) / d + 0.5) truncated and at most 15;
    /// a constant block has d = 0 and every code 0.
    /// </summary>
    public static void QuantizeQ4_1(ReadOnlySpan<float> values, Span<byte> blocks)
    {
        for (int b = 0; b < values.Length / BlockValues; b++)
        {
            ReadOnlySpan<float> x = values.Slice(b * BlockValues, BlockValues);
            Span<byte> block = blocks.Slice(b * Q4_1BlockBytes, Q4_1BlockBytes);
            (float min, float d, float id) = MinimumAndStep(x, 15);
            BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits.FromSingle(d));
            BinaryPrimitives.WriteUInt16LittleEndian(block[2..], HalfBits.FromSingle(min));
            for (int j = 0; j < 16; j++)
            {
                int low = Math.Min(15, (int)(sbyte)(((x[j] - min) * id) + 0.5f));
                int high = Math.Min(15, (int)(sbyte)(((x[j + 16] - min) * id) + 0.5f));
                block[4 + j] = (byte)(low | (high << 4));
            }
        }
    }

    /// <summary>Bytes of a Q5_0 block: the f16 scale, the 32 fifth bits and 16 bytes of low nibbles.</summary>
    public const int Q5_0BlockBytes = 22;

    public static void DequantizeQ5_0(ReadOnlySpan<byte> blocks, Span<float> values)
    {
        for (int b = 0; b < values.Length / BlockValues; b++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(b * Q5_0BlockBytes, Q5_0BlockBytes);
            float d = Half(block, 0);
            uint qh = BinaryPrimitives.ReadUInt32LittleEndian(block[2..]);
            Span<float> y = values.Slice(b * BlockValues, BlockValues);
            for (int j = 0; j < BlockValues; j++)
            {
                y[j] = (FiveBitCode(block, 6, qh, j) - 16) * d;
            }
        }
    }

    /// <summary>
    /// As llama.cpp's <c>quantize_row_q5_0_ref</c>: the value of largest magnitude (the first, sign kept) maps to code 0,
    /// d = max / -16 stored as f16, codes (x / d + 16.5) truncated and at most 31, their fifth bits gathered into qh; a
    /// block of zeros has d = 0 and every code 16.
    /// </summary>
    public static void QuantizeQ5_0(ReadOnlySpan<float> values, Span<byte> blocks)
    {
        for (int b = 0; b < values.Length / BlockValues; b++)
        {
            ReadOnlySpan<float> x = values.Slice(b * BlockValues, BlockValues);
            Span<byte> block = blocks.Slice(b * Q5_0BlockBytes, Q5_0BlockBytes);
            float d = LargestMagnitude(x) / -16, id = d != 0 ? 1 / d : 0;
            BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits.FromSingle(d));
            uint qh = 0;
            for (int j = 0; j < 16; j++)
            {
                int low = Math.Min(31, (int)(sbyte)((x[j] * id) + 16.5f));
                int high = Math.Min(31, (int)(sbyte)((x[j + 16] * id) + 16.5f));
                block[6 + j] = (byte)((low & 0x0F) | ((high & 0x0F) << 4));
                qh |= (uint)((low >> 4) & 1) << j;
                qh |= (uint)((high >> 4) & 1) << (j + 16);
            }

            BinaryPrimitives.WriteUInt32LittleEndian(block[2..], qh);
        }
    }

    /// <summary>
    /// Q5_0 blocks stored again as Q8_0 without loss: the same f16 scale, codes q - 16 (both backends multiply Q5_0 this
    /// way: the CPU's Q8_0 kernels outran a Q5_0 one, and the GPU has Q8_0 shaders). Requantizing the values would round
    /// them a second time.
    /// </summary>
    public static void WidenQ5_0ToQ8_0(ReadOnlySpan<byte> blocks, Span<byte> q8Blocks)
    {
        for (int b = 0; b < blocks.Length / Q5_0BlockBytes; b++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(b * Q5_0BlockBytes, Q5_0BlockBytes);
            Span<byte> wide = q8Blocks.Slice(b * 34, 34);
            wide[0] = block[0];
            wide[1] = block[1];
            uint qh = BinaryPrimitives.ReadUInt32LittleEndian(block[2..]);
            for (int j = 0; j < BlockValues; j++)
            {
                wide[2 + j] = (byte)(sbyte)(FiveBitCode(block, 6, qh, j) - 16);
            }
        }
    }

    /// <summary>
    /// Value <paramref name="j"/>'s code (0..31) in a Q5 block: its nibble (the low ones of the 16 bytes at
    /// <paramref name="codesAt"/> for values 0-15, the high ones for 16-31) with bit j of qh as its fifth bit.
    /// </summary>
    private static int FiveBitCode(ReadOnlySpan<byte> block, int codesAt, uint qh, int j)
    {
        byte packed = block[codesAt + (j % 16)];
        return (int)((uint)(j < 16 ? packed & 0x0F : packed >> 4) | FifthBit(qh, j));
    }

    public static void DequantizeQ5_1(ReadOnlySpan<byte> blocks, Span<float> values)
    {
        for (int b = 0; b < values.Length / BlockValues; b++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(b * Q5_1BlockBytes, Q5_1BlockBytes);
            float d = Half(block, 0), m = Half(block, 2);
            uint qh = BinaryPrimitives.ReadUInt32LittleEndian(block[4..]);
            Span<float> y = values.Slice(b * BlockValues, BlockValues);
            for (int j = 0; j < BlockValues; j++)
            {
                y[j] = (FiveBitCode(block, 8, qh, j) * d) + m;
            }
        }
    }

    /// <summary>Bytes of a Q5_1 block: the f16 scale and minimum, the 32 fifth bits and 16 bytes of low nibbles.</summary>
    public const int Q5_1BlockBytes = 24;

    /// <summary>
    /// As llama.cpp's <c>quantize_row_q5_1_ref</c>: d = (max - min) / 31 and m = min stored as f16, codes ((x - min) / d +
    /// 0.5) truncated to a byte (no clamp: they stay within 0..31), their fifth bits gathered into qh.
    /// </summary>
    public static void QuantizeQ5_1(ReadOnlySpan<float> values, Span<byte> blocks)
    {
        for (int b = 0; b < values.Length / BlockValues; b++)
        {
            ReadOnlySpan<float> x = values.Slice(b * BlockValues, BlockValues);
            Span<byte> block = blocks.Slice(b * Q5_1BlockBytes, Q5_1BlockBytes);
            (float min, float d, float id) = MinimumAndStep(x, 31);
            BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits.FromSingle(d));
            BinaryPrimitives.WriteUInt16LittleEndian(block[2..], HalfBits.FromSingle(min));
            uint qh = 0;
            for (int j = 0; j < 16; j++)
            {
                int low = (byte)(int)(((x[j] - min) * id) + 0.5f);
                int high = (byte)(int)(((x[j + 16] - min) * id) + 0.5f);
                block[8 + j] = (byte)((low & 0x0F) | ((high & 0x0F) << 4));
                qh |= (uint)((low >> 4) & 1) << j;
                qh |= (uint)((high >> 4) & 1) << (j + 16);
            }

            BinaryPrimitives.WriteUInt32LittleEndian(block[4..], qh);
        }
    }

    /// <summary>
    /// Q4_1 or Q5_1 blocks as the Q8_0 blocks of their codes (the same f16 scale, codes 0..15 or 0..31) and their f16
    /// minimums widened to f32, so that value j of block b is exactly <c>q8[b][j] × d + minimums[b]</c>: a backend with Q8_0
    /// kernels multiplies the codes and adds each block's minimum × the block's sum of activations, and keeps every value
    /// as stored. <paramref name="minimums"/> has one per block, <paramref name="minimumStride"/> apart.
    /// </summary>
    public static void SplitMinimums(Formats.DType type, ReadOnlySpan<byte> blocks, Span<byte> q8Blocks, Span<float> minimums, int minimumStride)
    {
        int blockBytes = type switch
        {
            Formats.DType.Q4_1 => Q4_1BlockBytes,
            Formats.DType.Q5_1 => Q5_1BlockBytes,
            _ => throw new ArgumentOutOfRangeException(nameof(type), type, "Q4_1 or Q5_1"),
        };
        for (int b = 0; b < blocks.Length / blockBytes; b++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(b * blockBytes, blockBytes);
            Span<byte> wide = q8Blocks.Slice(b * 34, 34);
            wide[0] = block[0];
            wide[1] = block[1];
            minimums[b * minimumStride] = Half(block, 2);
            if (type == Formats.DType.Q4_1)
            {
                for (int j = 0; j < 16; j++)
                {
                    wide[2 + j] = (byte)(block[4 + j] & 0x0F);
                    wide[2 + j + 16] = (byte)(block[4 + j] >> 4);
                }
            }
            else
            {
                uint qh = BinaryPrimitives.ReadUInt32LittleEndian(block[4..]);
                for (int j = 0; j < BlockValues; j++)
                {
                    wide[2 + j] = (byte)FiveBitCode(block, 8, qh, j);
                }
            }
        }
    }

    /// <summary>
    /// A Q4_1/Q5_1 block's minimum, its step to the largest value over <paramref name="steps"/> codes and the step's
    /// inverse (0 for a constant block), as ggml's reference quantizers compute them.
    /// </summary>
    private static (float Min, float D, float Id) MinimumAndStep(ReadOnlySpan<float> x, int steps)
    {
        float min = float.MaxValue, max = -float.MaxValue;
        foreach (float v in x)
        {
            if (v < min)
            {
                min = v;
            }

            if (v > max)
            {
                max = v;
            }
        }

        float d = (max - min) / steps;
        return (min, d, d != 0 ? 1 / d : 0);
    }

    /// <summary>The first value of largest magnitude, its sign kept (ggml's reference quantizers' <c>max</c>).</summary>
    private static float LargestMagnitude(ReadOnlySpan<float> x)
    {
        float amax = 0, max = 0;
        foreach (float v in x)
        {
            if (amax < MathF.Abs(v))
            {
                amax = MathF.Abs(v);
                max = v;
            }
        }

        return max;
    }

    /// <summary>Bit <paramref name="value"/> of qh, as the fifth bit (16) of that value's code.</summary>
    private static uint FifthBit(uint qh, int value) => ((qh >> value) & 1) << 4;

    private static float Half(ReadOnlySpan<byte> block, int offset) => HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block[offset..]));
}
