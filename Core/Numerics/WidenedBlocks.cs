using System.Buffers.Binary;

namespace QwenSharp.Numerics;

/// <summary>
/// ggml's <c>block_q3_K</c>, decoded as its definition reads it (the CPU's kernels and the GPU's shaders multiply it as
/// stored), and <c>block_iq4_nl</c>, which QwenSharp multiplies as Q8_0, a type that holds every one of its values: each
/// computed by the same float operations from the same scale and code, so dequantizing the widened block gives ggml's
/// <c>dequantize_row_iq4_nl</c> bit for bit. llama.cpp's Q3_K_M and Q2_K files hold Q3_K, and IQ4_NL where rows are not
/// whole 256-value super-blocks (Qwen2.5-0.5B's 896-wide ones); IQ4_NL files hold it throughout.
/// <code>
///   Q3_K    hmask[32], qs[64], scales[12] (16 six-bit), d f16   value = d × (sc - 32) × q    (q: -4..3, sub-blocks of 16)
///   IQ4_NL  d f16, qs[16]                                        value = d × kvalues[q]       (q: 4 bits, blocks of 32)
/// </code>
/// </summary>
public static class WidenedBlocks
{
    /// <summary>Bytes of a Q3_K super-block.</summary>
    public const int Q3_KBytes = 110;

    /// <summary>Bytes of an IQ4_NL block.</summary>
    public const int Iq4NlBytes = 18;

    private const int Q6_KBytes = 210, Q8_0Bytes = 34;

    /// <summary>IQ4_NL's 16 values of a code (ggml's <c>kvalues_iq4nl</c>): all int8, so a Q8_0 block holds them.</summary>
    private static ReadOnlySpan<sbyte> NonLinearValues => Iq4XsBlocks.NonLinearValues;

    public static void DequantizeQ3_K(ReadOnlySpan<byte> blocks, Span<float> values)
    {
        Span<sbyte> codes = stackalloc sbyte[256];
        Span<sbyte> scales = stackalloc sbyte[16];
        for (int b = 0; b < values.Length / 256; b++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(b * Q3_KBytes, Q3_KBytes);
            Q3_KCodes(block, codes, scales);
            float d = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block[108..]));
            for (int i = 0; i < 256; i++)
            {
                values[(b * 256) + i] = d * scales[i / 16] * codes[i];
            }
        }
    }

    public static void DequantizeIq4_NL(ReadOnlySpan<byte> blocks, Span<float> values)
    {
        for (int b = 0; b < values.Length / 32; b++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(b * Iq4NlBytes, Iq4NlBytes);
            float d = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block));
            for (int j = 0; j < 16; j++)
            {
                values[(b * 32) + j] = d * NonLinearValues[block[2 + j] & 0x0F];
                values[(b * 32) + j + 16] = d * NonLinearValues[block[2 + j] >> 4];
            }
        }
    }

    /// <summary>IQ4_NL blocks stored again as Q8_0: the same f16 scale, each code's table value as the int8 code.</summary>
    public static void WidenIq4_NLToQ8_0(ReadOnlySpan<byte> blocks, Span<byte> q8Blocks)
    {
        for (int b = 0; b < blocks.Length / Iq4NlBytes; b++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(b * Iq4NlBytes, Iq4NlBytes);
            Span<byte> wide = q8Blocks.Slice(b * Q8_0Bytes, Q8_0Bytes);
            wide[0] = block[0];
            wide[1] = block[1];
            for (int j = 0; j < 16; j++)
            {
                wide[2 + j] = (byte)NonLinearValues[block[2 + j] & 0x0F];
                wide[2 + j + 16] = (byte)NonLinearValues[block[2 + j] >> 4];
            }
        }
    }

    /// <summary>A Q3_K super-block's 16 scales, sc - 32 (see <see cref="Q3_KCodes"/>).</summary>
    internal static void Q3_KScales(ReadOnlySpan<byte> block, Span<sbyte> scales)
    {
        ReadOnlySpan<byte> packed = block.Slice(96, 12);
        for (int s = 0; s < 16; s++)
        {
            int low = s < 8 ? packed[s] & 0x0F : packed[s - 8] >> 4;
            int high = (packed[8 + (s % 4)] >> (2 * (s / 4))) & 3;
            scales[s] = (sbyte)((low | (high << 4)) - 32);
        }
    }

    /// <summary>
    /// A Q3_K super-block's 256 codes (-4..3) and 16 scales (sc - 32). Value v's low two bits are laid out as Q2_K's
    /// (<see cref="KQuantBlocks.TwoBitCode"/>), less 4 unless bit v / 32 of hmask[v % 32] is set; its scale is v / 16's. The
    /// 6-bit scale s has its low four bits in the low (s &lt; 8) or high nibble of byte s % 8, its top two in bits
    /// 2 (s / 4), 2 (s / 4) + 1 of byte 8 + s % 4 (ggml's kmask unpacking).
    /// </summary>
    internal static void Q3_KCodes(ReadOnlySpan<byte> block, Span<sbyte> codes, Span<sbyte> scales)
    {
        ReadOnlySpan<byte> hmask = block[..32], qs = block.Slice(32, 64);
        Q3_KScales(block, scales);

        for (int v = 0; v < 256; v++)
        {
            bool high = ((hmask[v % 32] >> (v / 32)) & 1) != 0;
            codes[v] = (sbyte)(KQuantBlocks.TwoBitCode(qs, v) - (high ? 0 : 4));
        }
    }
}
