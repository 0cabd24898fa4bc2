namespace QwenSharp.Numerics;

/// <summary>
/// bfloat16 stored as its 16 raw bits. A bf16 is the top half of an f32:
/// <code>
///   f32:  s eeeeeeee mmmmmmm mmmmmmmmmmmmmmmm
///   bf16: s eeeeeeee mmmmmmm                   (the low 16 mantissa bits dropped)
/// </code>
/// so widening is a shift left by 16, exact for every value.
/// </summary>
public static class BFloat16Bits
{
    public static float ToSingle(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    /// <summary>Rounds to nearest, ties to even, as PyTorch's <c>tensor.to(torch.bfloat16)</c>; NaN stays NaN.</summary>
    public static ushort FromSingle(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value))
        {
            return (ushort)((bits >> 16) | 0x40);
        }

        uint roundingBias = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + roundingBias) >> 16);
    }
}
