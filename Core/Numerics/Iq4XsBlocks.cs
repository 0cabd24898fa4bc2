using System.Buffers.Binary;

namespace QwenSharp.Numerics;

/// <summary>
/// ggml's <c>block_iq4_xs</c>: IQ4_NL's 4-bit indices into the same table of 16 int8 values (<see cref="NonLinearValues"/>),
/// in super-blocks of 256 with a 6-bit scale per 32 values. The type of the IQ4_XS files people download (4.25 bits a
/// value); no wider type holds its values (d × (ls - 32) is not an f16 in general, and the table's values need 8 bits),
/// so the backends multiply it as stored.
/// <code>
///   d f16, scales_h u16, scales_l[4], qs[128]    value = d × (ls - 32) × NonLinearValues[q]
///   ls of sub-block s (32 values): (scales_l[s / 2] >> 4 × (s % 2)) &amp; 15 | ((scales_h >> 2s) &amp; 3) &lt;&lt; 4
///   sub-block s's 16 bytes qs[16s..]: low nibbles are its values 0-15, high nibbles 16-31
/// </code>
/// </summary>
public static class Iq4XsBlocks
{
    /// <summary>Bytes of a super-block.</summary>
    public const int BlockBytes = 136;

    /// <summary>Values of a super-block.</summary>
    public const int BlockValues = 256;

    /// <summary>ggml's <c>kvalues_iq4nl</c>, the values a 4-bit index stands for (IQ4_NL's and IQ4_XS's).</summary>
    public static ReadOnlySpan<sbyte> NonLinearValues => [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

    /// <summary>Sub-block <paramref name="s"/>'s scale less 32 (-32..31) from a super-block's bytes.</summary>
    public static int SubBlockScale(ReadOnlySpan<byte> block, int s) =>
        (((block[4 + (s / 2)] >> (4 * (s % 2))) & 0x0F) | (((BinaryPrimitives.ReadUInt16LittleEndian(block[2..]) >> (2 * s)) & 3) << 4)) - 32;

    /// <summary>Value <paramref name="j"/> (0..255) of a super-block as its table value (-127..113), before the scales.</summary>
    public static int Code(ReadOnlySpan<byte> block, int j)
    {
        byte packed = block[8 + (16 * (j / 32)) + (j % 16)];
        return NonLinearValues[j % 32 < 16 ? packed & 0x0F : packed >> 4];
    }

    /// <summary>The values of whole super-blocks, as ggml's <c>dequantize_row_iq4_xs</c>: (d × (ls - 32)) × table value.</summary>
    public static void Dequantize(ReadOnlySpan<byte> blocks, Span<float> values)
    {
        for (int b = 0; b < values.Length / BlockValues; b++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(b * BlockBytes, BlockBytes);
            float d = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block));
            for (int s = 0; s < 8; s++)
            {
                float dl = d * SubBlockScale(block, s);
                for (int j = 0; j < 32; j++)
                {
                    values[(b * BlockValues) + (32 * s) + j] = dl * Code(block, (32 * s) + j);
                }
            }
        }
    }
}
