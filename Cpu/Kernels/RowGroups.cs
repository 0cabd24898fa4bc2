using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// One token's quantized activations as references (the ref struct a kernel's inner loop reads), and the f16 table.
/// </summary>
internal readonly ref struct RowOperands
{
    public readonly ref sbyte Codes;
    public readonly ref float Scales;

    /// <summary>Sums of codes the weight type needs (Q4_K: per 32, Q6_K: per 16); unused for Q8_0 and Q4_0.</summary>
    public readonly ref short Sums;

    /// <summary>Q4_0's offset of 8 as eight 32-bit lanes per block (<see cref="Q8Activations"/>); a null reference otherwise.</summary>
    public readonly ref int Offsets;
    public readonly int Blocks;

    /// <summary>
    /// The f16 → f32 table (<see cref="Half"/>), read once per call: a static read inside a kernel's loop costs a
    /// class-initialization check, whose helper call spills every vector register.
    /// </summary>
    public readonly ref float HalfTable;

    /// <summary>An f16 scale as f32, from the 64K-entry table (the index is a ushort, always inside it).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Half(ref float table, ref byte at) => Unsafe.Add(ref table, Unsafe.ReadUnaligned<ushort>(ref at));

    public RowOperands(ref sbyte codes, ref float scales, ref short sums, ref int offsets, int blocks)
    {
        Codes = ref codes;
        Scales = ref scales;
        Sums = ref sums;
        Offsets = ref offsets;
        Blocks = blocks;
        HalfTable = ref MemoryMarshal.GetArrayDataReference(Q8_0Kernel.HalfToSingle);
    }
}

/// <summary>A vector kernel's dot product of one row, left as four partial sums.</summary>
internal interface IRowKernel
{
    static abstract Vector128<float> Partial(ref byte row, scoped in RowOperands x);
}

/// <summary>A kernel that also dots two rows at once, sharing the activations' loads (<see cref="RowsApart"/>).</summary>
internal interface IRowPairKernel : IRowKernel
{
    /// <summary>The partial sums of the rows at <paramref name="row"/> and <paramref name="apart"/> bytes on, each <see cref="IRowKernel.Partial"/>'s bit for bit.</summary>
    static abstract (Vector128<float> First, Vector128<float> Second) PartialPair(ref byte row, nint apart, scoped in RowOperands x);
}

/// <summary>
/// Rows of an integer-dot kernel (<see cref="KQuantIntegerKernel"/>, <see cref="Q8IntegerKernel"/>) four at a time, so
/// that their horizontal sums share two vhaddps: a 1536-wide row is only 6 Q4_K super-blocks, and a sum per row cost a
/// fifth of its time. The kernel is a type parameter, so each instantiation inlines its own.
/// </summary>
internal static class RowGroups
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run<TKernel>(ref byte w, int rowBytes, int count, scoped in RowOperands x, ref float y)
        where TKernel : IRowKernel
    {
        int r = 0;
        for (; r + 4 <= count; r += 4)
        {
            // The four rows through one call site, so the kernel is inlined once. With a call per row, the JIT of an
            // AVX2-only CPU (AVX-512 hidden from it: DOTNET_EnableAVX512=0) ran out of inlining budget in the Q5_K kernel
            // and called its chunk helper and the vector shifts inside it, in CoreLib, per 32 values: 102 ns per
            // super-block from L2 on the Xeon, now 13.8 (the 512-bit kernels measured alike either way: Q4_K 8.7 against
            // 9.1 ns, Q5_K 11.9 against 12.0, Q6_K 9.7 against 10.4, medians of 5-8 alternating runs), and a Q5_K_M 1.5B
            // model decoded 1.5-2.0 tokens/s on one thread against llama.cpp's AVX2 build's 4.6, now 6.9-7.0. Each row's
            // partial sums move down the four registers.
            Vector128<float> v0 = default, v1 = default, v2 = default, v3 = default;
            for (int i = 0; i < 4; i++)
            {
                Vector128<float> v = TKernel.Partial(ref Unsafe.Add(ref w, (r + i) * rowBytes), x);
                (v0, v1, v2, v3) = (v1, v2, v3, v);
            }

            Sse3.HorizontalAdd(Sse3.HorizontalAdd(v0, v1), Sse3.HorizontalAdd(v2, v3)).StoreUnsafe(ref y, (nuint)r);
        }

        if (r < count)
        {
            Remaining<TKernel>(ref Unsafe.Add(ref w, r * rowBytes), rowBytes, count - r, x, ref Unsafe.Add(ref y, r));
        }
    }

    /// <summary>
    /// <see cref="Run{TKernel}"/> with the rows in pairs half the range apart (<see cref="RowsApart"/>), two pairs a pass so
    /// that their four sums still share the vhaddps: every row's sum is the same bit for bit.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RunPaired<TKernel>(ref byte w, int rowBytes, int count, scoped in RowOperands x, ref float y)
        where TKernel : IRowPairKernel
    {
        int half = count / 2;
        nint apart = (nint)half * rowBytes;
        int j = 0;
        for (; j + 2 <= half; j += 2)
        {
            // Both pairs through one call site, as in Run.
            Vector128<float> a0 = default, a1 = default, b0 = default, b1 = default;
            for (int i = 0; i < 2; i++)
            {
                (Vector128<float> a, Vector128<float> b) = TKernel.PartialPair(ref Unsafe.Add(ref w, (nint)(j + i) * rowBytes), apart, x);
                (a0, a1, b0, b1) = (a1, a, b1, b);
            }

            Vector128<float> sums = Sse3.HorizontalAdd(Sse3.HorizontalAdd(a0, a1), Sse3.HorizontalAdd(b0, b1));
            Unsafe.Add(ref y, j) = sums.ToScalar();
            Unsafe.Add(ref y, j + 1) = sums.GetElement(1);
            Unsafe.Add(ref y, half + j) = sums.GetElement(2);
            Unsafe.Add(ref y, half + j + 1) = sums.GetElement(3);
        }

        if (j < half || count % 2 == 1)
        {
            RemainingPaired<TKernel>(ref w, rowBytes, count, j, x, ref y);
        }
    }

    /// <summary><see cref="RunPaired{TKernel}"/>'s last pair (of an odd half) and its last row (of an odd count).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void RemainingPaired<TKernel>(ref byte w, int rowBytes, int count, int j, scoped in RowOperands x, ref float y)
        where TKernel : IRowPairKernel
    {
        int half = count / 2;
        if (j < half)
        {
            (Vector128<float> a, Vector128<float> b) = TKernel.PartialPair(ref Unsafe.Add(ref w, (nint)j * rowBytes), (nint)half * rowBytes, x);
            Unsafe.Add(ref y, j) = Vector128.Sum(a);
            Unsafe.Add(ref y, half + j) = Vector128.Sum(b);
        }

        if (count % 2 == 1)
        {
            Unsafe.Add(ref y, count - 1) = Vector128.Sum(TKernel.Partial(ref Unsafe.Add(ref w, (nint)(count - 1) * rowBytes), x));
        }
    }

    /// <summary>The last rows, one at a time: a method of its own, so that the kernel inlined here does not push the
    /// four inlined above past the JIT's inlining budget (which then leaves a helper as a call and spills).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Remaining<TKernel>(ref byte w, int rowBytes, int count, scoped in RowOperands x, ref float y)
        where TKernel : IRowKernel
    {
        for (int r = 0; r < count; r++)
        {
            Unsafe.Add(ref y, r) = Vector128.Sum(TKernel.Partial(ref Unsafe.Add(ref w, r * rowBytes), x));
        }
    }
}
