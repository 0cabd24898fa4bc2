using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using V256 = System.Runtime.Intrinsics.Vector256;
using V512 = System.Runtime.Intrinsics.Vector512;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Dot product of a stored weight row with f32 activations, the heart of a matrix-vector product (decode).
/// Four independent accumulators hide the FMA latency (ggml vec.cpp); weights are converted to f32 in
/// registers; the tail that fills no whole vector goes through the scalar code.
/// </summary>
/// <remarks>
/// One row at a time elsewhere: four neighbouring BF16 rows at once, sharing each activation load, streamed 21-22 GB/s
/// on one Zen 4 core against 27-29 row by row (43 against 55-58 on two). Reading four places of memory at once defeats
/// the streaming that keeps this memory-bound loop fed; Q8_0 measured the same. Only the compute-bound Q4_0 kernel gains
/// from sharing (<see cref="Q8IntegerKernel"/>). Rows a quarter of the range apart are another matter: four streams,
/// each sequential, and on Zen 5 BF16 and F16 decode gain from them (<see cref="FourRows512"/>, <see cref="RowsApart"/>),
/// on Zen 3 pairs (<see cref="TwoRows256"/>).
/// </remarks>
internal static class Dot<TW>
    where TW : struct, IWeightLoad
{
    /// <summary>
    /// The row against <paramref name="x"/>; <paramref name="prefetch"/> says whether the loop prefetches the weights ahead
    /// (decode asks <see cref="Prefetch.InDecode"/>): the sums are the same either way.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Run(KernelPath path, ReadOnlySpan<byte> weights, ReadOnlySpan<float> x, bool prefetch = true) => path switch
    {
        KernelPath.Vector512 => Vector512(weights, x, prefetch),
        KernelPath.Vector256 => Vector256(weights, x, prefetch),
        _ => Reference(weights, x),
    };

    /// <summary>
    /// <see cref="Run(KernelPath, ReadOnlySpan{byte}, ReadOnlySpan{float})"/> with the row's map of exact groups
    /// (<see cref="F16ExactGroups.MapRow"/>), which <see cref="F16ScaledLoad"/> weights read instead of testing each group's
    /// exponents; other weights ignore it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Run(KernelPath path, ReadOnlySpan<byte> weights, ReadOnlySpan<float> x, ReadOnlySpan<ulong> exactGroups, bool prefetch = true)
    {
        if (typeof(TW) != typeof(F16ScaledLoad) || path is not (KernelPath.Vector512 or KernelPath.Vector256))
        {
            return Run(path, weights, x, prefetch);
        }

        if (exactGroups.Length < F16ExactGroups.MapWords(x.Length))
        {
            ThrowMapTooShort(exactGroups.Length, x.Length);
        }

        return (path, prefetch) switch
        {
            (KernelPath.Vector512, true) => Vector512<MapTest, WithPrefetch>(weights, x, exactGroups),
            (KernelPath.Vector512, false) => Vector512<MapTest, WithoutPrefetch>(weights, x, exactGroups),
            (_, true) => Vector256<MapTest, WithPrefetch>(weights, x, exactGroups),
            (_, false) => Vector256<MapTest, WithoutPrefetch>(weights, x, exactGroups),
        };
    }

    /// <summary>
    /// <see cref="F16ScaledLoad"/> weights read by placement throughout, no group exactly: the same sums as
    /// <see cref="Run(KernelPath, ReadOnlySpan{byte}, ReadOnlySpan{float}, ReadOnlySpan{ulong})"/>, faster where
    /// <see cref="SubnormalOperands.AtFullSpeed"/> and far slower where not.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float RunPlaced(KernelPath path, ReadOnlySpan<byte> weights, ReadOnlySpan<float> x, bool prefetch = true) => (path, prefetch) switch
    {
        (KernelPath.Vector512, true) => Vector512<PlacedOnly, WithPrefetch>(weights, x, default),
        (KernelPath.Vector512, false) => Vector512<PlacedOnly, WithoutPrefetch>(weights, x, default),
        (KernelPath.Vector256, true) => Vector256<PlacedOnly, WithPrefetch>(weights, x, default),
        (KernelPath.Vector256, false) => Vector256<PlacedOnly, WithoutPrefetch>(weights, x, default),
        _ => Reference(weights, x),
    };

    /// <summary>
    /// Four rows against the same activations, each activation load shared by the four (<see cref="RowsApart"/>): each row
    /// keeps <see cref="Vector512(ReadOnlySpan{byte}, ReadOnlySpan{float})"/>'s accumulators in its order, so each sum is
    /// that method's bit for bit (for F16, that of <see cref="RunPlaced"/>: no group is read exactly).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static (float, float, float, float) FourRows512(ReadOnlySpan<byte> first, ReadOnlySpan<byte> second, ReadOnlySpan<byte> third, ReadOnlySpan<byte> fourth,
        ReadOnlySpan<float> x, bool prefetch = true) => prefetch
        ? FourRows512<WithPrefetch>(first, second, third, fourth, x)
        : FourRows512<WithoutPrefetch>(first, second, third, fourth, x);

    /// <summary><see cref="FourRows512(ReadOnlySpan{byte}, ReadOnlySpan{byte}, ReadOnlySpan{byte}, ReadOnlySpan{byte}, ReadOnlySpan{float}, bool)"/>, prefetching or not.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static (float, float, float, float) FourRows512<TPrefetch>(ReadOnlySpan<byte> first, ReadOnlySpan<byte> second, ReadOnlySpan<byte> third, ReadOnlySpan<byte> fourth,
        ReadOnlySpan<float> x)
        where TPrefetch : struct, IPrefetchChoice
    {
        CheckLengths(first, x);
        CheckLengths(second, x);
        CheckLengths(third, x);
        CheckLengths(fourth, x);
        ref byte w = ref MemoryMarshal.GetReference(first), v = ref MemoryMarshal.GetReference(second);
        ref byte u = ref MemoryMarshal.GetReference(third), t = ref MemoryMarshal.GetReference(fourth);
        ref float xr = ref MemoryMarshal.GetReference(x);
        nint n = x.Length, i = 0;
        const int lanes = 16;    // as in Vector512
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector512<float> b0 = default, b1 = default, b2 = default, b3 = default;
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default;
        Vector512<float> d0 = default, d1 = default, d2 = default, d3 = default;
        for (; i <= n - (4 * lanes); i += 4 * lanes)
        {
            if (TPrefetch.Ahead)
            {
                Prefetch.Ahead(ref Unsafe.Add(ref w, i * TW.ElementSize), TW.ElementSize * 4 * lanes / 64);
                Prefetch.Ahead(ref Unsafe.Add(ref v, i * TW.ElementSize), TW.ElementSize * 4 * lanes / 64);
                Prefetch.Ahead(ref Unsafe.Add(ref u, i * TW.ElementSize), TW.ElementSize * 4 * lanes / 64);
                Prefetch.Ahead(ref Unsafe.Add(ref t, i * TW.ElementSize), TW.ElementSize * 4 * lanes / 64);
            }

            Vector512<float> x0 = V512.LoadUnsafe(ref xr, (nuint)i), x1 = V512.LoadUnsafe(ref xr, (nuint)(i + lanes));
            a0 = V512.FusedMultiplyAdd(TW.Load512(ref w, i), x0, a0);
            b0 = V512.FusedMultiplyAdd(TW.Load512(ref v, i), x0, b0);
            c0 = V512.FusedMultiplyAdd(TW.Load512(ref u, i), x0, c0);
            d0 = V512.FusedMultiplyAdd(TW.Load512(ref t, i), x0, d0);
            a1 = V512.FusedMultiplyAdd(TW.Load512(ref w, i + lanes), x1, a1);
            b1 = V512.FusedMultiplyAdd(TW.Load512(ref v, i + lanes), x1, b1);
            c1 = V512.FusedMultiplyAdd(TW.Load512(ref u, i + lanes), x1, c1);
            d1 = V512.FusedMultiplyAdd(TW.Load512(ref t, i + lanes), x1, d1);
            Vector512<float> x2 = V512.LoadUnsafe(ref xr, (nuint)(i + (2 * lanes))), x3 = V512.LoadUnsafe(ref xr, (nuint)(i + (3 * lanes)));
            a2 = V512.FusedMultiplyAdd(TW.Load512(ref w, i + (2 * lanes)), x2, a2);
            b2 = V512.FusedMultiplyAdd(TW.Load512(ref v, i + (2 * lanes)), x2, b2);
            c2 = V512.FusedMultiplyAdd(TW.Load512(ref u, i + (2 * lanes)), x2, c2);
            d2 = V512.FusedMultiplyAdd(TW.Load512(ref t, i + (2 * lanes)), x2, d2);
            a3 = V512.FusedMultiplyAdd(TW.Load512(ref w, i + (3 * lanes)), x3, a3);
            b3 = V512.FusedMultiplyAdd(TW.Load512(ref v, i + (3 * lanes)), x3, b3);
            c3 = V512.FusedMultiplyAdd(TW.Load512(ref u, i + (3 * lanes)), x3, c3);
            d3 = V512.FusedMultiplyAdd(TW.Load512(ref t, i + (3 * lanes)), x3, d3);
        }

        for (; i <= n - lanes; i += lanes)
        {
            Vector512<float> x0 = V512.LoadUnsafe(ref xr, (nuint)i);
            a0 = V512.FusedMultiplyAdd(TW.Load512(ref w, i), x0, a0);
            b0 = V512.FusedMultiplyAdd(TW.Load512(ref v, i), x0, b0);
            c0 = V512.FusedMultiplyAdd(TW.Load512(ref u, i), x0, c0);
            d0 = V512.FusedMultiplyAdd(TW.Load512(ref t, i), x0, d0);
        }

        return (ScalarTail(ref w, ref xr, i, n, V512.Sum((a0 + a1) + (a2 + a3))), ScalarTail(ref v, ref xr, i, n, V512.Sum((b0 + b1) + (b2 + b3))),
            ScalarTail(ref u, ref xr, i, n, V512.Sum((c0 + c1) + (c2 + c3))), ScalarTail(ref t, ref xr, i, n, V512.Sum((d0 + d1) + (d2 + d3))));
    }

    /// <summary>
    /// Two rows against the same activations, each activation load shared by the two (<see cref="RowsApart"/>, rows
    /// narrower than <see cref="RowsApart.FloatMinimumWidth"/>): each row keeps
    /// <see cref="Vector512(ReadOnlySpan{byte}, ReadOnlySpan{float}, bool)"/>'s accumulators in its order, so each sum is that
    /// method's bit for bit (for F16, that of <see cref="RunPlaced"/>). It does not prefetch: on Zen 5, the one CPU that
    /// reads rows apart, BF16 and F16 decoded faster in pairs without it (see <see cref="RowsApart"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static (float, float) TwoRows512(ReadOnlySpan<byte> first, ReadOnlySpan<byte> second, ReadOnlySpan<float> x)
    {
        CheckLengths(first, x);
        CheckLengths(second, x);
        ref byte w = ref MemoryMarshal.GetReference(first), v = ref MemoryMarshal.GetReference(second);
        ref float xr = ref MemoryMarshal.GetReference(x);
        nint n = x.Length, i = 0;
        const int lanes = 16;    // as in Vector512
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector512<float> b0 = default, b1 = default, b2 = default, b3 = default;
        for (; i <= n - (4 * lanes); i += 4 * lanes)
        {
            Vector512<float> x0 = V512.LoadUnsafe(ref xr, (nuint)i), x1 = V512.LoadUnsafe(ref xr, (nuint)(i + lanes));
            a0 = V512.FusedMultiplyAdd(TW.Load512(ref w, i), x0, a0);
            b0 = V512.FusedMultiplyAdd(TW.Load512(ref v, i), x0, b0);
            a1 = V512.FusedMultiplyAdd(TW.Load512(ref w, i + lanes), x1, a1);
            b1 = V512.FusedMultiplyAdd(TW.Load512(ref v, i + lanes), x1, b1);
            Vector512<float> x2 = V512.LoadUnsafe(ref xr, (nuint)(i + (2 * lanes))), x3 = V512.LoadUnsafe(ref xr, (nuint)(i + (3 * lanes)));
            a2 = V512.FusedMultiplyAdd(TW.Load512(ref w, i + (2 * lanes)), x2, a2);
            b2 = V512.FusedMultiplyAdd(TW.Load512(ref v, i + (2 * lanes)), x2, b2);
            a3 = V512.FusedMultiplyAdd(TW.Load512(ref w, i + (3 * lanes)), x3, a3);
            b3 = V512.FusedMultiplyAdd(TW.Load512(ref v, i + (3 * lanes)), x3, b3);
        }

        for (; i <= n - lanes; i += lanes)
        {
            Vector512<float> x0 = V512.LoadUnsafe(ref xr, (nuint)i);
            a0 = V512.FusedMultiplyAdd(TW.Load512(ref w, i), x0, a0);
            b0 = V512.FusedMultiplyAdd(TW.Load512(ref v, i), x0, b0);
        }

        return (ScalarTail(ref w, ref xr, i, n, V512.Sum((a0 + a1) + (a2 + a3))), ScalarTail(ref v, ref xr, i, n, V512.Sum((b0 + b1) + (b2 + b3))));
    }

    /// <summary>
    /// <see cref="TwoRows512"/> on the 256-bit path (<see cref="RowsApart"/>): each row keeps
    /// <see cref="Vector256(ReadOnlySpan{byte}, ReadOnlySpan{float}, bool)"/>'s accumulators in its order, so each sum is that
    /// method's bit for bit (for F16, that of <see cref="RunPlaced"/>). Two rows' eight accumulators, the activations and a
    /// weight vector fill AVX2's sixteen registers, so there are no fours here.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static (float, float) TwoRows256(ReadOnlySpan<byte> first, ReadOnlySpan<byte> second, ReadOnlySpan<float> x, bool prefetch = true) => prefetch
        ? TwoRows256<WithPrefetch>(first, second, x)
        : TwoRows256<WithoutPrefetch>(first, second, x);

    /// <summary><see cref="TwoRows256(ReadOnlySpan{byte}, ReadOnlySpan{byte}, ReadOnlySpan{float}, bool)"/>, prefetching or not.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static (float, float) TwoRows256<TPrefetch>(ReadOnlySpan<byte> first, ReadOnlySpan<byte> second, ReadOnlySpan<float> x)
        where TPrefetch : struct, IPrefetchChoice
    {
        CheckLengths(first, x);
        CheckLengths(second, x);
        ref byte w = ref MemoryMarshal.GetReference(first), v = ref MemoryMarshal.GetReference(second);
        ref float xr = ref MemoryMarshal.GetReference(x);
        nint n = x.Length, i = 0;
        const int lanes = 8;    // as in Vector256
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default;
        for (; i <= n - (4 * lanes); i += 4 * lanes)
        {
            if (TPrefetch.Ahead)
            {
                Prefetch.Ahead(ref Unsafe.Add(ref w, i * TW.ElementSize), TW.ElementSize * 4 * lanes / 64);
                Prefetch.Ahead(ref Unsafe.Add(ref v, i * TW.ElementSize), TW.ElementSize * 4 * lanes / 64);
            }

            Vector256<float> x0 = V256.LoadUnsafe(ref xr, (nuint)i), x1 = V256.LoadUnsafe(ref xr, (nuint)(i + lanes));
            a0 = V256.FusedMultiplyAdd(TW.Load256(ref w, i), x0, a0);
            b0 = V256.FusedMultiplyAdd(TW.Load256(ref v, i), x0, b0);
            a1 = V256.FusedMultiplyAdd(TW.Load256(ref w, i + lanes), x1, a1);
            b1 = V256.FusedMultiplyAdd(TW.Load256(ref v, i + lanes), x1, b1);
            Vector256<float> x2 = V256.LoadUnsafe(ref xr, (nuint)(i + (2 * lanes))), x3 = V256.LoadUnsafe(ref xr, (nuint)(i + (3 * lanes)));
            a2 = V256.FusedMultiplyAdd(TW.Load256(ref w, i + (2 * lanes)), x2, a2);
            b2 = V256.FusedMultiplyAdd(TW.Load256(ref v, i + (2 * lanes)), x2, b2);
            a3 = V256.FusedMultiplyAdd(TW.Load256(ref w, i + (3 * lanes)), x3, a3);
            b3 = V256.FusedMultiplyAdd(TW.Load256(ref v, i + (3 * lanes)), x3, b3);
        }

        for (; i <= n - lanes; i += lanes)
        {
            Vector256<float> x0 = V256.LoadUnsafe(ref xr, (nuint)i);
            a0 = V256.FusedMultiplyAdd(TW.Load256(ref w, i), x0, a0);
            b0 = V256.FusedMultiplyAdd(TW.Load256(ref v, i), x0, b0);
        }

        return (ScalarTail(ref w, ref xr, i, n, V256.Sum((a0 + a1) + (a2 + a3))), ScalarTail(ref v, ref xr, i, n, V256.Sum((b0 + b1) + (b2 + b3))));
    }

    /// <summary>The plain loop every SIMD path is checked against.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Reference(ReadOnlySpan<byte> weights, ReadOnlySpan<float> x)
    {
        CheckLengths(weights, x);
        return ScalarTail(ref MemoryMarshal.GetReference(weights), ref MemoryMarshal.GetReference(x), 0, x.Length, 0f);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Vector512(ReadOnlySpan<byte> weights, ReadOnlySpan<float> x, bool prefetch = true) => prefetch
        ? Vector512<ExponentTest, WithPrefetch>(weights, x, default)
        : Vector512<ExponentTest, WithoutPrefetch>(weights, x, default);

    /// <summary>The loop, with <typeparamref name="TGroups"/> finding the groups F16 weights read exactly.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Vector512<TGroups, TPrefetch>(ReadOnlySpan<byte> weights, ReadOnlySpan<float> x, ReadOnlySpan<ulong> exactGroups)
        where TGroups : struct, IExactGroupTest
        where TPrefetch : struct, IPrefetchChoice
    {
        CheckLengths(weights, x);
        ref ulong map = ref MemoryMarshal.GetReference(exactGroups);
        ref byte w = ref MemoryMarshal.GetReference(weights);
        ref float xr = ref MemoryMarshal.GetReference(x);
        nint n = x.Length, i = 0;
        const int lanes = 16;    // Vector512<float>.Count; a constant, so i + lanes folds into the loads' addresses (a local left an lea per load)
        Vector512<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (; i <= n - (4 * lanes); i += 4 * lanes)
        {
            if (TPrefetch.Ahead)
            {
                Prefetch.Ahead(ref Unsafe.Add(ref w, i * TW.ElementSize), TW.ElementSize * 4 * lanes / 64);
            }

            if (typeof(TW) == typeof(F16ScaledLoad) && TGroups.Exact64(ref w, ref map, i))
            {
                // A zero or subnormal f16 here: read exactly, against the activations unscaled (see F16ExactGroups).
                acc0 = V512.FusedMultiplyAdd(F16ExactGroups.Load512(ref w, i), F16ExactGroups.Unscaled512(ref xr, i), acc0);
                acc1 = V512.FusedMultiplyAdd(F16ExactGroups.Load512(ref w, i + lanes), F16ExactGroups.Unscaled512(ref xr, i + lanes), acc1);
                acc2 = V512.FusedMultiplyAdd(F16ExactGroups.Load512(ref w, i + (2 * lanes)), F16ExactGroups.Unscaled512(ref xr, i + (2 * lanes)), acc2);
                acc3 = V512.FusedMultiplyAdd(F16ExactGroups.Load512(ref w, i + (3 * lanes)), F16ExactGroups.Unscaled512(ref xr, i + (3 * lanes)), acc3);
                continue;
            }

            acc0 = V512.FusedMultiplyAdd(TW.Load512(ref w, i), V512.LoadUnsafe(ref xr, (nuint)i), acc0);
            acc1 = V512.FusedMultiplyAdd(TW.Load512(ref w, i + lanes), V512.LoadUnsafe(ref xr, (nuint)(i + lanes)), acc1);
            acc2 = V512.FusedMultiplyAdd(TW.Load512(ref w, i + (2 * lanes)), V512.LoadUnsafe(ref xr, (nuint)(i + (2 * lanes))), acc2);
            acc3 = V512.FusedMultiplyAdd(TW.Load512(ref w, i + (3 * lanes)), V512.LoadUnsafe(ref xr, (nuint)(i + (3 * lanes))), acc3);
        }

        for (; i <= n - lanes; i += lanes)
        {
            acc0 = V512.FusedMultiplyAdd(TW.Load512(ref w, i), V512.LoadUnsafe(ref xr, (nuint)i), acc0);
        }

        float sum = V512.Sum((acc0 + acc1) + (acc2 + acc3));
        return ScalarTail(ref w, ref xr, i, n, sum);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Vector256(ReadOnlySpan<byte> weights, ReadOnlySpan<float> x, bool prefetch = true) => prefetch
        ? Vector256<ExponentTest, WithPrefetch>(weights, x, default)
        : Vector256<ExponentTest, WithoutPrefetch>(weights, x, default);

    /// <summary>The loop, with <typeparamref name="TGroups"/> finding the groups F16 weights read exactly.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Vector256<TGroups, TPrefetch>(ReadOnlySpan<byte> weights, ReadOnlySpan<float> x, ReadOnlySpan<ulong> exactGroups)
        where TGroups : struct, IExactGroupTest
        where TPrefetch : struct, IPrefetchChoice
    {
        CheckLengths(weights, x);
        ref ulong map = ref MemoryMarshal.GetReference(exactGroups);
        ref byte w = ref MemoryMarshal.GetReference(weights);
        ref float xr = ref MemoryMarshal.GetReference(x);
        nint n = x.Length, i = 0;
        const int lanes = 8;    // Vector256<float>.Count, as a constant (see Vector512)
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        for (; i <= n - (4 * lanes); i += 4 * lanes)
        {
            if (TPrefetch.Ahead)
            {
                Prefetch.Ahead(ref Unsafe.Add(ref w, i * TW.ElementSize), TW.ElementSize * 4 * lanes / 64);
            }

            if (typeof(TW) == typeof(F16ScaledLoad) && TGroups.Exact32(ref w, ref map, i))
            {
                acc0 = V256.FusedMultiplyAdd(F16ExactGroups.Load256(ref w, i), F16ExactGroups.Unscaled256(ref xr, i), acc0);
                acc1 = V256.FusedMultiplyAdd(F16ExactGroups.Load256(ref w, i + lanes), F16ExactGroups.Unscaled256(ref xr, i + lanes), acc1);
                acc2 = V256.FusedMultiplyAdd(F16ExactGroups.Load256(ref w, i + (2 * lanes)), F16ExactGroups.Unscaled256(ref xr, i + (2 * lanes)), acc2);
                acc3 = V256.FusedMultiplyAdd(F16ExactGroups.Load256(ref w, i + (3 * lanes)), F16ExactGroups.Unscaled256(ref xr, i + (3 * lanes)), acc3);
                continue;
            }

            acc0 = V256.FusedMultiplyAdd(TW.Load256(ref w, i), V256.LoadUnsafe(ref xr, (nuint)i), acc0);
            acc1 = V256.FusedMultiplyAdd(TW.Load256(ref w, i + lanes), V256.LoadUnsafe(ref xr, (nuint)(i + lanes)), acc1);
            acc2 = V256.FusedMultiplyAdd(TW.Load256(ref w, i + (2 * lanes)), V256.LoadUnsafe(ref xr, (nuint)(i + (2 * lanes))), acc2);
            acc3 = V256.FusedMultiplyAdd(TW.Load256(ref w, i + (3 * lanes)), V256.LoadUnsafe(ref xr, (nuint)(i + (3 * lanes))), acc3);
        }

        for (; i <= n - lanes; i += lanes)
        {
            acc0 = V256.FusedMultiplyAdd(TW.Load256(ref w, i), V256.LoadUnsafe(ref xr, (nuint)i), acc0);
        }

        float sum = V256.Sum((acc0 + acc1) + (acc2 + acc3));
        return ScalarTail(ref w, ref xr, i, n, sum);
    }

    /// <summary>The elements after the last whole vector, one at a time (also <see cref="DotTokens{TW}"/>'s tail, so both round alike).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float ScalarTail(ref byte w, ref float x, nint from, nint to, float sum)
    {
        for (nint i = from; i < to; i++)
        {
            sum += TW.LoadScalar(ref w, i) * Unsafe.Add(ref x, i);
        }

        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CheckLengths(ReadOnlySpan<byte> weights, ReadOnlySpan<float> x)
    {
        if (weights.Length < (long)x.Length * TW.ElementSize)
        {
            ThrowLengthMismatch(weights.Length, x.Length);
        }
    }

    private static void ThrowMapTooShort(int words, int length) =>
        throw new ArgumentException($"a map of {words} words does not cover the {length / F16ExactGroups.MapGroup} groups of a row of {length} f16 values");

    private static void ThrowLengthMismatch(int weightBytes, int length) =>
        throw new ArgumentException($"a weight row of {weightBytes} bytes is shorter than {length} elements of {TW.ElementSize} bytes");
}
