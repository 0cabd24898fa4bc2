using System.Runtime.CompilerServices;

namespace QwenSharp.Numerics;

/// <summary>IEEE binary16 stored as its 16 raw bits.</summary>
public static class HalfBits
{
    /// <summary>
    /// The f32 with the same value (exact: every binary16 is a binary32), with no helper call and no floating-point
    /// operation on a subnormal: normals are their exponent and mantissa moved into f32 place and rebiased (+112) in
    /// integers; zeros and subnormals their mantissa converted and scaled by 2^-24 (no operand or result subnormal);
    /// infinities directly; NaNs quieted with their payload kept, as the runtime's conversion and vcvtph2ps do. The runtime's
    /// (float)Half is a helper call, and called from vector code on the Intel Xeon (AVX-512) it took ~146 ns instead of ~3,
    /// which made Q8_0's prefill panels 24x slower to widen; an f32 subnormal operand costs Intel cores a microcode assist.
    /// No path calls anything, not even the NaN one: a call in a vector kernel's scalar tail makes the JIT keep the
    /// loop's accumulators in memory (every caller-saved register is lost across it), which left F16 decode's row pairs
    /// storing three accumulators to the stack each iteration on Zen 5.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToSingle(ushort bits)
    {
        uint magnitude = bits & 0x7FFFu;
        uint sign = (uint)(bits & 0x8000) << 16;
        if (magnitude >= 0x7C00)
        {
            // An infinity, or a NaN (a mantissa) made quiet.
            uint quiet = magnitude == 0x7C00 ? 0u : 0x00400000u;
            return BitConverter.UInt32BitsToSingle(sign | 0x7F800000 | quiet | ((magnitude & 0x3FF) << 13));
        }

        if (magnitude >= 0x0400)
        {
            return BitConverter.UInt32BitsToSingle(((magnitude << 13) + (112u << 23)) | sign);
        }

        return BitConverter.UInt32BitsToSingle(BitConverter.SingleToUInt32Bits(magnitude * (1f / (1 << 24))) | sign);
    }

    public static ushort FromSingle(float value) => BitConverter.HalfToUInt16Bits((Half)value);
}
