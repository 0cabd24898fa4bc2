using System.Runtime.CompilerServices;

namespace QwenSharp.Numerics;

/// <summary>IEEE binary16 stored as its 16 raw bits.</summary>
public static class HalfBits
{
    /// <summary>
    /// The f32 with the same value (exact: every binary16 is a binary32), with no helper call and no floating-point
    /// operation on a subnormal: normals are their exponent and mantissa moved into f32 place and rebiased (+112) in
    /// integers; zeros and subnormals their mantissa converted and scaled by 2^-24 (no operand or result subnormal);
    /// infinities directly; NaNs through the runtime's conversion, which quiets them. The runtime's (float)Half is a helper
    /// call, and called from vector code on the Intel Xeon (AVX-512) it took ~146 ns instead of ~3, which made Q8_0's
    /// prefill panels 24x slower to widen; an f32 subnormal operand costs Intel cores a microcode assist.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToSingle(ushort bits)
    {
        uint magnitude = bits & 0x7FFFu;
        uint sign = (uint)(bits & 0x8000) << 16;
        if (magnitude >= 0x7C00)
        {
            return magnitude == 0x7C00 ? BitConverter.UInt32BitsToSingle(sign | 0x7F800000) : Runtime(bits);
        }

        if (magnitude >= 0x0400)
        {
            return BitConverter.UInt32BitsToSingle(((magnitude << 13) + (112u << 23)) | sign);
        }

        return BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(magnitude * (1f / (1 << 24))) | sign);
    }

    public static ushort FromSingle(float value) => BitConverter.HalfToUInt16Bits((Half)value);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float Runtime(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);
}
