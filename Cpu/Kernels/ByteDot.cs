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
    /// <summary>Whether unsigned bytes up to 255 multiply exactly (vpdpbusd sums in 32 bits), not only those below 128.</summary>
    static abstract bool TakesWholeBytes { get; }

    static abstract Vector256<int> Dot(Vector256<int> addend, Vector256<byte> unsigned, Vector256<sbyte> signed);
}

/// <summary>vpmaddubsw to 16-bit pairs, vpmaddwd by ones to 32 bits (AVX2).</summary>
internal readonly struct PairSums : IByteDot
{
    public static bool TakesWholeBytes => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(Vector256<int> addend, Vector256<byte> unsigned, Vector256<sbyte> signed) =>
        addend + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(unsigned, signed), Vector256.Create((short)1));
}

/// <summary>AVX-VNNI's vpdpbusd: the same in one instruction.</summary>
internal readonly struct Vnni : IByteDot
{
    public static bool TakesWholeBytes => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(Vector256<int> addend, Vector256<byte> unsigned, Vector256<sbyte> signed) =>
        AvxVnni.MultiplyWideningAndAdd(addend, unsigned, signed);
}

/// <summary>
/// Which <see cref="IByteDot"/> the integer kernels take: vpdpbusd on the 512-bit path where the CPU has AVX-VNNI (Intel since
/// Sapphire Rapids and Alder Lake), else vpmaddubsw pairs (AMD Zen 4 has AVX-512 without it). Tests turn VNNI off on their
/// own thread, so one machine runs both kernels of the 512-bit path.
/// </summary>
internal static class ByteDots
{
    [ThreadStatic]
    private static bool t_withoutVnni;

    /// <summary>Whether the kernels on <paramref name="path"/> multiply with vpdpbusd.</summary>
    public static bool Vnni(KernelPath path) => path == KernelPath.Vector512 && AvxVnni.IsSupported && !t_withoutVnni;

    /// <summary>Until disposed, this thread's kernels use <see cref="PairSums"/> on every path (for tests).</summary>
    public static WithoutVnniScope WithoutVnni()
    {
        t_withoutVnni = true;
        return default;
    }

    /// <summary>Ends <see cref="WithoutVnni"/>.</summary>
    public readonly struct WithoutVnniScope : IDisposable
    {
        public void Dispose() => t_withoutVnni = false;
    }
}
