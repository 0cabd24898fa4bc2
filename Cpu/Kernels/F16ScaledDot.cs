using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using V256 = System.Runtime.Intrinsics.Vector256;
using V512 = System.Runtime.Intrinsics.Vector512;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// <see cref="Dot{TW}"/> and <see cref="DotTokens{TW}"/> for <see cref="F16ScaledLoad"/> weights (activations × 2^112), with every group of 64 (32 on
/// 256-bit vectors) weights that holds a zero or subnormal f16 read exactly instead of by bit placement. Placed, an f16 subnormal is
/// an f32 subnormal (the value × 2^-112), and an FMA with a subnormal operand takes a microcode assist on Intel cores:
/// on the 2-core Xeon (AVX512_FP16) a row of weights in ±0.025, 0.24% of them subnormal as in real F16 checkpoints, ran
/// at 11.6 GB/s from L2 instead of 29, and F16 decode read 68% of the memory bound against BF16's 94%. Zen 4 takes no
/// such assist. The exact group has the same products (the true weight times the true activation, both normal), in the
/// same accumulators, so the sums are bit for bit those of the placed loader and of <see cref="F16FiniteLoad"/>.
/// </summary>
internal static class F16ScaledDot
{
    private const int Lanes = 16;

    private const int Lanes256 = 8;

    /// <summary>The f32 sign bit, and the f16 exponent and mantissa once shifted into place.</summary>
    private const uint SignExponentMantissa = 0x8FFFE000;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Vector512(ReadOnlySpan<byte> weights, ReadOnlySpan<float> x)
    {
        if (weights.Length < (long)x.Length * 2)
        {
            throw new ArgumentException($"a weight row of {weights.Length} bytes is shorter than {x.Length} f16 elements");
        }

        ref byte w = ref MemoryMarshal.GetReference(weights);
        ref ushort halves = ref Unsafe.As<byte, ushort>(ref w);
        ref float xr = ref MemoryMarshal.GetReference(x);
        nint n = x.Length, i = 0;
        Vector512<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        var exponent = V512.Create((ushort)0x7C00);
        for (; i <= n - (4 * Lanes); i += 4 * Lanes)
        {
            Prefetch.Ahead(ref Unsafe.Add(ref w, i * 2), 2);
            // One test and branch for the 64: the smaller exponent field of each pair of halves is zero somewhere.
            Vector512<ushort> exponents = V512.Min(V512.LoadUnsafe(ref halves, (nuint)i) & exponent, V512.LoadUnsafe(ref halves, (nuint)(i + (2 * Lanes))) & exponent);
            if (V512.EqualsAny(exponents, Vector512<ushort>.Zero))
            {
                acc0 = V512.FusedMultiplyAdd(Exact(ref halves, i), Unscaled(ref xr, i), acc0);
                acc1 = V512.FusedMultiplyAdd(Exact(ref halves, i + Lanes), Unscaled(ref xr, i + Lanes), acc1);
                acc2 = V512.FusedMultiplyAdd(Exact(ref halves, i + (2 * Lanes)), Unscaled(ref xr, i + (2 * Lanes)), acc2);
                acc3 = V512.FusedMultiplyAdd(Exact(ref halves, i + (3 * Lanes)), Unscaled(ref xr, i + (3 * Lanes)), acc3);
                continue;
            }

            acc0 = V512.FusedMultiplyAdd(F16ScaledLoad.Load512(ref w, i), V512.LoadUnsafe(ref xr, (nuint)i), acc0);
            acc1 = V512.FusedMultiplyAdd(F16ScaledLoad.Load512(ref w, i + Lanes), V512.LoadUnsafe(ref xr, (nuint)(i + Lanes)), acc1);
            acc2 = V512.FusedMultiplyAdd(F16ScaledLoad.Load512(ref w, i + (2 * Lanes)), V512.LoadUnsafe(ref xr, (nuint)(i + (2 * Lanes))), acc2);
            acc3 = V512.FusedMultiplyAdd(F16ScaledLoad.Load512(ref w, i + (3 * Lanes)), V512.LoadUnsafe(ref xr, (nuint)(i + (3 * Lanes))), acc3);
        }

        for (; i <= n - Lanes; i += Lanes)
        {
            acc0 = V512.FusedMultiplyAdd(Exact(ref halves, i), Unscaled(ref xr, i), acc0);
        }

        float sum = V512.Sum((acc0 + acc1) + (acc2 + acc3));
        return Dot<F16ScaledLoad>.ScalarTail(ref w, ref xr, i, n, sum);
    }

    /// <summary>
    /// Sixteen f16 weights as the f32s of the same value, with no floating-point operation on a subnormal: normals are
    /// placed and rebiased in integers (exponent + 112), zeros and subnormals are their mantissa converted and scaled by
    /// 2^-24 (a normal result), each with its sign. Finite weights only (as <see cref="F16ScaledLoad"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> Exact(ref ushort halves, nint index)
    {
        Vector512<int> h = V512.WidenLower(V256.LoadUnsafe(ref Unsafe.As<ushort, short>(ref halves), (nuint)index).ToVector512Unsafe());
        Vector512<uint> placed = (h << 13).AsUInt32() & V512.Create(SignExponentMantissa);
        Vector512<uint> normal = placed + V512.Create(112u << 23);
        Vector512<uint> small = (V512.ConvertToSingle(h & V512.Create(0x3FF)) * V512.Create(1f / (1 << 24))).AsUInt32()
            | (placed & V512.Create(0x80000000u));
        Vector512<uint> isSmall = V512.Equals(h & V512.Create(0x7C00), Vector512<int>.Zero).AsUInt32();
        return V512.ConditionalSelect(isSmall, small, normal).AsSingle();
    }

    /// <summary>Sixteen activations back from × 2^112 (exact: they were scaled by a power of two).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Unscaled(ref float x, nint index) =>
        V512.LoadUnsafe(ref x, (nuint)index) * V512.Create(F16Scaling.Down);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Vector256(ReadOnlySpan<byte> weights, ReadOnlySpan<float> x)
    {
        if (weights.Length < (long)x.Length * 2)
        {
            throw new ArgumentException($"a weight row of {weights.Length} bytes is shorter than {x.Length} f16 elements");
        }

        ref byte w = ref MemoryMarshal.GetReference(weights);
        ref ushort halves = ref Unsafe.As<byte, ushort>(ref w);
        ref float xr = ref MemoryMarshal.GetReference(x);
        nint n = x.Length, i = 0;
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        var exponent = V256.Create((ushort)0x7C00);
        for (; i <= n - (4 * Lanes256); i += 4 * Lanes256)
        {
            Prefetch.Ahead(ref Unsafe.Add(ref w, i * 2), 1);
            Vector256<ushort> exponents = V256.Min(V256.LoadUnsafe(ref halves, (nuint)i) & exponent, V256.LoadUnsafe(ref halves, (nuint)(i + (2 * Lanes256))) & exponent);
            if (V256.EqualsAny(exponents, Vector256<ushort>.Zero))
            {
                acc0 = V256.FusedMultiplyAdd(Exact256(ref halves, i), Unscaled256(ref xr, i), acc0);
                acc1 = V256.FusedMultiplyAdd(Exact256(ref halves, i + Lanes256), Unscaled256(ref xr, i + Lanes256), acc1);
                acc2 = V256.FusedMultiplyAdd(Exact256(ref halves, i + (2 * Lanes256)), Unscaled256(ref xr, i + (2 * Lanes256)), acc2);
                acc3 = V256.FusedMultiplyAdd(Exact256(ref halves, i + (3 * Lanes256)), Unscaled256(ref xr, i + (3 * Lanes256)), acc3);
                continue;
            }

            acc0 = V256.FusedMultiplyAdd(F16ScaledLoad.Load256(ref w, i), V256.LoadUnsafe(ref xr, (nuint)i), acc0);
            acc1 = V256.FusedMultiplyAdd(F16ScaledLoad.Load256(ref w, i + Lanes256), V256.LoadUnsafe(ref xr, (nuint)(i + Lanes256)), acc1);
            acc2 = V256.FusedMultiplyAdd(F16ScaledLoad.Load256(ref w, i + (2 * Lanes256)), V256.LoadUnsafe(ref xr, (nuint)(i + (2 * Lanes256))), acc2);
            acc3 = V256.FusedMultiplyAdd(F16ScaledLoad.Load256(ref w, i + (3 * Lanes256)), V256.LoadUnsafe(ref xr, (nuint)(i + (3 * Lanes256))), acc3);
        }

        for (; i <= n - Lanes256; i += Lanes256)
        {
            acc0 = V256.FusedMultiplyAdd(Exact256(ref halves, i), Unscaled256(ref xr, i), acc0);
        }

        float sum = V256.Sum((acc0 + acc1) + (acc2 + acc3));
        return Dot<F16ScaledLoad>.ScalarTail(ref w, ref xr, i, n, sum);
    }

    /// <summary><see cref="Exact"/> for eight weights.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Exact256(ref ushort halves, nint index)
    {
        Vector256<int> h = V256.WidenLower(Vector128.LoadUnsafe(ref Unsafe.As<ushort, short>(ref halves), (nuint)index).ToVector256Unsafe());
        Vector256<uint> placed = (h << 13).AsUInt32() & V256.Create(SignExponentMantissa);
        Vector256<uint> normal = placed + V256.Create(112u << 23);
        Vector256<uint> small = (V256.ConvertToSingle(h & V256.Create(0x3FF)) * V256.Create(1f / (1 << 24))).AsUInt32()
            | (placed & V256.Create(0x80000000u));
        Vector256<uint> isSmall = V256.Equals(h & V256.Create(0x7C00), Vector256<int>.Zero).AsUInt32();
        return V256.ConditionalSelect(isSmall, small, normal).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Unscaled256(ref float x, nint index) =>
        V256.LoadUnsafe(ref x, (nuint)index) * V256.Create(F16Scaling.Down);

    /// <summary>
    /// <see cref="DotTokens{TW}"/>'s four tokens against one row (a small batch's decode step), each group of 64 weights
    /// tested as in <see cref="Vector512"/>: the four tokens' sums are bit for bit each token's alone.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void FourTokens512(ref byte w, ref float x0, nint k, Span<float> results)
    {
        ref ushort halves = ref Unsafe.As<byte, ushort>(ref w);
        ref float x1 = ref Unsafe.Add(ref x0, k), x2 = ref Unsafe.Add(ref x0, 2 * k), x3 = ref Unsafe.Add(ref x0, 3 * k);
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default;
        Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default;
        Vector512<float> a30 = default, a31 = default, a32 = default, a33 = default;
        var exponent = V512.Create((ushort)0x7C00);
        nint i = 0;
        for (; i <= k - (4 * Lanes); i += 4 * Lanes)
        {
            Vector512<ushort> exponents = V512.Min(V512.LoadUnsafe(ref halves, (nuint)i) & exponent, V512.LoadUnsafe(ref halves, (nuint)(i + (2 * Lanes))) & exponent);
            if (V512.EqualsAny(exponents, Vector512<ushort>.Zero))
            {
                Vector512<float> e0 = Exact(ref halves, i), e1 = Exact(ref halves, i + Lanes);
                Vector512<float> e2 = Exact(ref halves, i + (2 * Lanes)), e3 = Exact(ref halves, i + (3 * Lanes));
                a00 = V512.FusedMultiplyAdd(e0, Unscaled(ref x0, i), a00);
                a01 = V512.FusedMultiplyAdd(e1, Unscaled(ref x0, i + Lanes), a01);
                a02 = V512.FusedMultiplyAdd(e2, Unscaled(ref x0, i + (2 * Lanes)), a02);
                a03 = V512.FusedMultiplyAdd(e3, Unscaled(ref x0, i + (3 * Lanes)), a03);
                a10 = V512.FusedMultiplyAdd(e0, Unscaled(ref x1, i), a10);
                a11 = V512.FusedMultiplyAdd(e1, Unscaled(ref x1, i + Lanes), a11);
                a12 = V512.FusedMultiplyAdd(e2, Unscaled(ref x1, i + (2 * Lanes)), a12);
                a13 = V512.FusedMultiplyAdd(e3, Unscaled(ref x1, i + (3 * Lanes)), a13);
                a20 = V512.FusedMultiplyAdd(e0, Unscaled(ref x2, i), a20);
                a21 = V512.FusedMultiplyAdd(e1, Unscaled(ref x2, i + Lanes), a21);
                a22 = V512.FusedMultiplyAdd(e2, Unscaled(ref x2, i + (2 * Lanes)), a22);
                a23 = V512.FusedMultiplyAdd(e3, Unscaled(ref x2, i + (3 * Lanes)), a23);
                a30 = V512.FusedMultiplyAdd(e0, Unscaled(ref x3, i), a30);
                a31 = V512.FusedMultiplyAdd(e1, Unscaled(ref x3, i + Lanes), a31);
                a32 = V512.FusedMultiplyAdd(e2, Unscaled(ref x3, i + (2 * Lanes)), a32);
                a33 = V512.FusedMultiplyAdd(e3, Unscaled(ref x3, i + (3 * Lanes)), a33);
                continue;
            }

            Vector512<float> w0 = F16ScaledLoad.Load512(ref w, i), w1 = F16ScaledLoad.Load512(ref w, i + Lanes);
            Vector512<float> w2 = F16ScaledLoad.Load512(ref w, i + (2 * Lanes)), w3 = F16ScaledLoad.Load512(ref w, i + (3 * Lanes));
            a00 = V512.FusedMultiplyAdd(w0, V512.LoadUnsafe(ref x0, (nuint)i), a00);
            a01 = V512.FusedMultiplyAdd(w1, V512.LoadUnsafe(ref x0, (nuint)(i + Lanes)), a01);
            a02 = V512.FusedMultiplyAdd(w2, V512.LoadUnsafe(ref x0, (nuint)(i + (2 * Lanes))), a02);
            a03 = V512.FusedMultiplyAdd(w3, V512.LoadUnsafe(ref x0, (nuint)(i + (3 * Lanes))), a03);
            a10 = V512.FusedMultiplyAdd(w0, V512.LoadUnsafe(ref x1, (nuint)i), a10);
            a11 = V512.FusedMultiplyAdd(w1, V512.LoadUnsafe(ref x1, (nuint)(i + Lanes)), a11);
            a12 = V512.FusedMultiplyAdd(w2, V512.LoadUnsafe(ref x1, (nuint)(i + (2 * Lanes))), a12);
            a13 = V512.FusedMultiplyAdd(w3, V512.LoadUnsafe(ref x1, (nuint)(i + (3 * Lanes))), a13);
            a20 = V512.FusedMultiplyAdd(w0, V512.LoadUnsafe(ref x2, (nuint)i), a20);
            a21 = V512.FusedMultiplyAdd(w1, V512.LoadUnsafe(ref x2, (nuint)(i + Lanes)), a21);
            a22 = V512.FusedMultiplyAdd(w2, V512.LoadUnsafe(ref x2, (nuint)(i + (2 * Lanes))), a22);
            a23 = V512.FusedMultiplyAdd(w3, V512.LoadUnsafe(ref x2, (nuint)(i + (3 * Lanes))), a23);
            a30 = V512.FusedMultiplyAdd(w0, V512.LoadUnsafe(ref x3, (nuint)i), a30);
            a31 = V512.FusedMultiplyAdd(w1, V512.LoadUnsafe(ref x3, (nuint)(i + Lanes)), a31);
            a32 = V512.FusedMultiplyAdd(w2, V512.LoadUnsafe(ref x3, (nuint)(i + (2 * Lanes))), a32);
            a33 = V512.FusedMultiplyAdd(w3, V512.LoadUnsafe(ref x3, (nuint)(i + (3 * Lanes))), a33);
        }

        for (; i <= k - Lanes; i += Lanes)
        {
            Vector512<float> e0 = Exact(ref halves, i);
            a00 = V512.FusedMultiplyAdd(e0, Unscaled(ref x0, i), a00);
            a10 = V512.FusedMultiplyAdd(e0, Unscaled(ref x1, i), a10);
            a20 = V512.FusedMultiplyAdd(e0, Unscaled(ref x2, i), a20);
            a30 = V512.FusedMultiplyAdd(e0, Unscaled(ref x3, i), a30);
        }

        results[0] = Dot<F16ScaledLoad>.ScalarTail(ref w, ref x0, i, k, V512.Sum((a00 + a01) + (a02 + a03)));
        results[1] = Dot<F16ScaledLoad>.ScalarTail(ref w, ref x1, i, k, V512.Sum((a10 + a11) + (a12 + a13)));
        results[2] = Dot<F16ScaledLoad>.ScalarTail(ref w, ref x2, i, k, V512.Sum((a20 + a21) + (a22 + a23)));
        results[3] = Dot<F16ScaledLoad>.ScalarTail(ref w, ref x3, i, k, V512.Sum((a30 + a31) + (a32 + a33)));
    }

    /// <summary><see cref="FourTokens512"/> for two tokens on 256-bit vectors (<see cref="DotTokens{TW}"/>'s pairs).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void TwoTokens256(ref byte w, ref float x0, nint k, Span<float> results)
    {
        ref ushort halves = ref Unsafe.As<byte, ushort>(ref w);
        ref float x1 = ref Unsafe.Add(ref x0, k);
        Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector256<float> a10 = default, a11 = default, a12 = default, a13 = default;
        var exponent = V256.Create((ushort)0x7C00);
        nint i = 0;
        for (; i <= k - (4 * Lanes256); i += 4 * Lanes256)
        {
            Vector256<ushort> exponents = V256.Min(V256.LoadUnsafe(ref halves, (nuint)i) & exponent, V256.LoadUnsafe(ref halves, (nuint)(i + (2 * Lanes256))) & exponent);
            if (V256.EqualsAny(exponents, Vector256<ushort>.Zero))
            {
                Vector256<float> e0 = Exact256(ref halves, i), e1 = Exact256(ref halves, i + Lanes256);
                Vector256<float> e2 = Exact256(ref halves, i + (2 * Lanes256)), e3 = Exact256(ref halves, i + (3 * Lanes256));
                a00 = V256.FusedMultiplyAdd(e0, Unscaled256(ref x0, i), a00);
                a01 = V256.FusedMultiplyAdd(e1, Unscaled256(ref x0, i + Lanes256), a01);
                a02 = V256.FusedMultiplyAdd(e2, Unscaled256(ref x0, i + (2 * Lanes256)), a02);
                a03 = V256.FusedMultiplyAdd(e3, Unscaled256(ref x0, i + (3 * Lanes256)), a03);
                a10 = V256.FusedMultiplyAdd(e0, Unscaled256(ref x1, i), a10);
                a11 = V256.FusedMultiplyAdd(e1, Unscaled256(ref x1, i + Lanes256), a11);
                a12 = V256.FusedMultiplyAdd(e2, Unscaled256(ref x1, i + (2 * Lanes256)), a12);
                a13 = V256.FusedMultiplyAdd(e3, Unscaled256(ref x1, i + (3 * Lanes256)), a13);
                continue;
            }

            Vector256<float> w0 = F16ScaledLoad.Load256(ref w, i), w1 = F16ScaledLoad.Load256(ref w, i + Lanes256);
            Vector256<float> w2 = F16ScaledLoad.Load256(ref w, i + (2 * Lanes256)), w3 = F16ScaledLoad.Load256(ref w, i + (3 * Lanes256));
            a00 = V256.FusedMultiplyAdd(w0, V256.LoadUnsafe(ref x0, (nuint)i), a00);
            a01 = V256.FusedMultiplyAdd(w1, V256.LoadUnsafe(ref x0, (nuint)(i + Lanes256)), a01);
            a02 = V256.FusedMultiplyAdd(w2, V256.LoadUnsafe(ref x0, (nuint)(i + (2 * Lanes256))), a02);
            a03 = V256.FusedMultiplyAdd(w3, V256.LoadUnsafe(ref x0, (nuint)(i + (3 * Lanes256))), a03);
            a10 = V256.FusedMultiplyAdd(w0, V256.LoadUnsafe(ref x1, (nuint)i), a10);
            a11 = V256.FusedMultiplyAdd(w1, V256.LoadUnsafe(ref x1, (nuint)(i + Lanes256)), a11);
            a12 = V256.FusedMultiplyAdd(w2, V256.LoadUnsafe(ref x1, (nuint)(i + (2 * Lanes256))), a12);
            a13 = V256.FusedMultiplyAdd(w3, V256.LoadUnsafe(ref x1, (nuint)(i + (3 * Lanes256))), a13);
        }

        for (; i <= k - Lanes256; i += Lanes256)
        {
            Vector256<float> e0 = Exact256(ref halves, i);
            a00 = V256.FusedMultiplyAdd(e0, Unscaled256(ref x0, i), a00);
            a10 = V256.FusedMultiplyAdd(e0, Unscaled256(ref x1, i), a10);
        }

        results[0] = Dot<F16ScaledLoad>.ScalarTail(ref w, ref x0, i, k, V256.Sum((a00 + a01) + (a02 + a03)));
        results[1] = Dot<F16ScaledLoad>.ScalarTail(ref w, ref x1, i, k, V256.Sum((a10 + a11) + (a12 + a13)));
    }
}
