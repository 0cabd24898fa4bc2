using System.Buffers.Binary;

namespace QwenSharp.Numerics;

/// <summary>
/// GGUF's Q8_0 (ggml's <c>block_q8_0</c>): 32 values per block stored as
/// <code>
///   bytes 0-1   d    f16 scale
///   bytes 2-33  qs   32 × int8          value[j] = d × qs[j]
/// </code>
/// The scalar reference for the kernels, and the quantizer llama.cpp's <c>quantize_row_q8_0_ref</c> defines.
/// </summary>
public static class Q8_0Blocks
{
    public const int BlockValues = 32;
    public const int BlockBytes = 34;

    /// <summary>Values of whole blocks, in order.</summary>
    public static void Dequantize(ReadOnlySpan<byte> blocks, Span<float> values)
    {
        int count = values.Length / BlockValues;
        for (int b = 0; b < count; b++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(b * BlockBytes, BlockBytes);
            float d = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block));
            for (int j = 0; j < BlockValues; j++)
            {
                values[(b * BlockValues) + j] = d * (sbyte)block[2 + j];
            }
        }
    }

    /// <summary>
    /// As llama.cpp: d = max|x| / 127, q = round(x / d) (halves away from zero), d stored as f16; a block of zeros
    /// has d = 0 and q = 0.
    /// </summary>
    public static void Quantize(ReadOnlySpan<float> values, Span<byte> blocks)
    {
        int count = values.Length / BlockValues;
        for (int b = 0; b < count; b++)
        {
            ReadOnlySpan<float> x = values.Slice(b * BlockValues, BlockValues);
            Span<byte> block = blocks.Slice(b * BlockBytes, BlockBytes);
            float amax = 0;
            foreach (float v in x)
            {
                amax = Math.Max(amax, Math.Abs(v));
            }

            float d = amax / 127, id = d != 0 ? 1 / d : 0;
            BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits.FromSingle(d));
            for (int j = 0; j < BlockValues; j++)
            {
                block[2 + j] = (byte)(sbyte)MathF.Round(x[j] * id, MidpointRounding.AwayFromZero);
            }
        }
    }
}
