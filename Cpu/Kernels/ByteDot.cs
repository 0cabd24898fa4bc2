using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Unsigned bytes times signed bytes, every 4 summed into eight 32-bit lanes added to <c>addend</c>: the step of every
/// integer kernel. The unsigned operand must stay below 128 for <see cref="PairSums"/> (two products summed to 16 bits
/// saturate past 32767): the weight codes are 4 to 6 bits, or Q8_0's magnitudes (at most 127).
/// </summary>
internal interface IByteDot
{
    static abstract Vector256<int> Dot(Vector256<int> addend, Vector256<byte> unsigned, Vector256<sbyte> signed);
}

/// <summary>vpmaddubsw to 16-bit pairs, vpmaddwd by ones to 32 bits (AVX2).</summary>
internal readonly struct PairSums : IByteDot
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(Vector256<int> addend, Vector256<byte> unsigned, Vector256<sbyte> signed) =>
        addend + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(unsigned, signed), Vector256.Create((short)1));
}

/// <summary>AVX-VNNI's vpdpbusd: the same in one instruction.</summary>
internal readonly struct Vnni : IByteDot
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(Vector256<int> addend, Vector256<byte> unsigned, Vector256<sbyte> signed) =>
        AvxVnni.MultiplyWideningAndAdd(addend, unsigned, signed);
}
