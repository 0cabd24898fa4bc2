using QwenSharp.Numerics;

namespace QwenSharp.Formats.Gguf;

/// <summary>The GGUF block types QwenSharp can dequantize (tests compare them with llama.cpp's; the load converts those it has no kernels for).</summary>
public static class GgmlDequantize
{
    public static bool Supports(int type) => (GgmlType)type is GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1
        or GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K or GgmlType.Q8_K or GgmlType.IQ4_NL or GgmlType.IQ4_XS
        || IqTypeOf(type) is not null;

    /// <summary>The 1-3-bit i-quant a GGUF type is (<see cref="IqBlocks"/>), or null.</summary>
    public static IqType? IqTypeOf(int type) => (GgmlType)type switch
    {
        GgmlType.IQ2_XXS => IqType.Iq2Xxs,
        GgmlType.IQ2_XS => IqType.Iq2Xs,
        GgmlType.IQ2_S => IqType.Iq2S,
        GgmlType.IQ3_XXS => IqType.Iq3Xxs,
        GgmlType.IQ3_S => IqType.Iq3S,
        GgmlType.IQ1_S => IqType.Iq1S,
        GgmlType.IQ1_M => IqType.Iq1M,
        _ => null,
    };

    /// <summary>The values of whole blocks of <paramref name="type"/>, as ggml's reference dequantizers give them.</summary>
    public static void Values(int type, ReadOnlySpan<byte> blocks, Span<float> values)
    {
        switch ((GgmlType)type)
        {
            case GgmlType.Q4_0: LegacyQuantBlocks.DequantizeQ4_0(blocks, values); break;
            case GgmlType.Q4_1: LegacyQuantBlocks.DequantizeQ4_1(blocks, values); break;
            case GgmlType.Q5_0: LegacyQuantBlocks.DequantizeQ5_0(blocks, values); break;
            case GgmlType.Q5_1: LegacyQuantBlocks.DequantizeQ5_1(blocks, values); break;
            case GgmlType.Q2_K: KQuantBlocks.DequantizeQ2_K(blocks, values); break;
            case GgmlType.Q3_K: WidenedBlocks.DequantizeQ3_K(blocks, values); break;
            case GgmlType.Q4_K: KQuantBlocks.DequantizeQ4_K(blocks, values); break;
            case GgmlType.Q5_K: KQuantBlocks.DequantizeQ5_K(blocks, values); break;
            case GgmlType.Q6_K: KQuantBlocks.DequantizeQ6_K(blocks, values); break;
            case GgmlType.Q8_K: KQuantBlocks.DequantizeQ8_K(blocks, values); break;
            case GgmlType.IQ4_NL: WidenedBlocks.DequantizeIq4_NL(blocks, values); break;
            case GgmlType.IQ4_XS: Iq4XsBlocks.Dequantize(blocks, values); break;
            case var _ when IqTypeOf(type) is IqType iq: IqBlocks.Dequantize(iq, blocks, values); break;
            default: throw new ArgumentOutOfRangeException(nameof(type), GgmlTypes.Name(type), "not a type QwenSharp dequantizes");
        }
    }
}
