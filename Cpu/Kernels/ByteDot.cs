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

    /// <summary>Sums accumulated by <see cref="Dot"/> from zero as eight 32-bit lanes (where the dot keeps them narrower).</summary>
    static abstract Vector256<int> Widened(Vector256<int> sums);

    /// <summary>Two accumulations added as <see cref="Dot"/> keeps them (before <see cref="Widened"/>).</summary>
    static abstract Vector256<int> Add(Vector256<int> a, Vector256<int> b);
}

/// <summary>vpmaddubsw to 16-bit pairs, vpmaddwd by ones to 32 bits (AVX2).</summary>
internal readonly struct PairSums : IByteDot
{
    public static bool TakesWholeBytes => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(Vector256<int> addend, Vector256<byte> unsigned, Vector256<sbyte> signed) =>
        addend + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(unsigned, signed), Vector256.Create((short)1));

    public static Vector256<int> Widened(Vector256<int> sums) => sums;

    public static Vector256<int> Add(Vector256<int> a, Vector256<int> b) => a + b;
}

/// <summary>
/// vpmaddubsw's 16-bit pairs added up in sixteen 16-bit lanes, widened by one vpmaddwd at the end (<see cref="Widened"/>):
/// where the unsigned codes are nibbles (0..15) and the signed ones at most 127 in size (Q8_0's and Q8_K's activation
/// codes), a pair is at most 3810 in size, so eight column quads (a 32-value sub-block) sum within 16 bits (30480), and the
/// eight vpmaddwd of <see cref="PairSums"/> become one. Only for sums started from zero over at most eight such dots.
/// </summary>
internal readonly struct NibblePairSums : IByteDot
{
    public static bool TakesWholeBytes => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(Vector256<int> addend, Vector256<byte> unsigned, Vector256<sbyte> signed) =>
        (addend.AsInt16() + Avx2.MultiplyAddAdjacent(unsigned, signed)).AsInt32();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Widened(Vector256<int> sums) => Avx2.MultiplyAddAdjacent(sums.AsInt16(), Vector256.Create((short)1));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Add(Vector256<int> a, Vector256<int> b) => (a.AsInt16() + b.AsInt16()).AsInt32();
}

/// <summary>AVX-VNNI's vpdpbusd: the same in one instruction.</summary>
internal readonly struct Vnni : IByteDot
{
    public static bool TakesWholeBytes => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<int> Dot(Vector256<int> addend, Vector256<byte> unsigned, Vector256<sbyte> signed) =>
        AvxVnni.MultiplyWideningAndAdd(addend, unsigned, signed);

    public static Vector256<int> Widened(Vector256<int> sums) => sums;

    public static Vector256<int> Add(Vector256<int> a, Vector256<int> b) => a + b;
}

/// <summary>
/// Which <see cref="IByteDot"/> the integer kernels take: vpdpbusd on the 512-bit path where the CPU has AVX-VNNI (Intel since
/// Sapphire Rapids and Alder Lake), else vpmaddubsw pairs (AMD Zen 4 has AVX-512 without it). Tests turn VNNI off on their
/// own thread, so one machine runs both kernels of the 512-bit path.
/// </summary>
internal static class ByteDots
{
    /// <summary>Whether the kernels on <paramref name="path"/> multiply with vpdpbusd.</summary>
    public static bool Vnni(KernelPath path) => path == KernelPath.Vector512 && AvxVnni.IsSupported && ThreadOverride<Switch>.Or(true);

    /// <summary>Until disposed, this thread's kernels use <see cref="PairSums"/> on every path (for tests).</summary>
    public static ThreadOverride<Switch>.Scope WithoutVnni() => ThreadOverride<Switch>.Set(false);

    /// <summary>Names this switch's <see cref="ThreadOverride{TSwitch}"/>.</summary>
    internal readonly struct Switch
    {
    }
}
