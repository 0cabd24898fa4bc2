using System.Runtime.CompilerServices;

namespace QwenSharp.Numerics;

/// <summary>IEEE binary16 stored as its 16 raw bits.</summary>
public static class HalfBits
{
    /// <summary>2^112: the rebias from binary16's exponent (bias 15) to binary32's (bias 127).</summary>
    private const uint TwoPow112Bits = (127 + 112) << 23;

    /// <summary>
    /// The f32 with the same value (exact: every binary16 is a binary32). Finite values are their exponent and mantissa
    /// shifted into f32 place, which is the value × 2^-112 (a subnormal half becomes an f32 subnormal), times 2^112, with
    /// the sign put back; infinities directly; NaNs through the runtime's conversion, which quiets them. All integer and
    /// one multiply, inline: the runtime's (float)Half is a helper call, and called from vector code on the Intel Xeon
    /// (AVX-512) it took ~146 ns instead of ~3, which made Q8_0's prefill panels 24x slower to widen.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToSingle(ushort bits)
    {
        uint magnitude = bits & 0x7FFFu;
        uint sign = (uint)(bits & 0x8000) << 16;
        if (magnitude < 0x7C00)
        {
            float value = BitConverter.UInt32BitsToSingle(magnitude << 13) * BitConverter.UInt32BitsToSingle(TwoPow112Bits);
            return BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(value) | sign);
        }

        return magnitude == 0x7C00 ? BitConverter.UInt32BitsToSingle(sign | 0x7F800000) : Runtime(bits);
    }

    public static ushort FromSingle(float value) => BitConverter.HalfToUInt16Bits((Half)value);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float Runtime(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);
}
