using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using V256 = System.Runtime.Intrinsics.Vector256;
using V512 = System.Runtime.Intrinsics.Vector512;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// A tile of 4 tokens by 4 rows of keys, y[t, n] = x[t] · w[n], both operands f32 and contiguous along k: the attention's
/// scores over a segment (<see cref="Jobs.SegmentAttentionJob"/>). The linear layers' f32 panels had it until the
/// outer-product tiles (<see cref="OuterProductTile"/>), which keep both operands in L1. Each weight vector loaded
/// serves 4 tokens and each activation vector 4 rows, so the loop does 16 FMAs per 8 loads and is bound by
/// FMA throughput, not by memory. 16 accumulators + 4 + 1 operands fit AVX-512's 32 registers; AVX2 has 16,
/// so its tile is 4 × 2, run twice.
/// </summary>
internal static class GemmTile
{
    public const int Tokens = 4;
    public const int Rows = 4;

    /// <summary>y[t * yStride + n] = Σ_k x[t * xStride + k] * w[n * wStride + k], for t, n &lt; 4.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(KernelPath path, ref float x, nint xStride, ref float w, nint wStride, int k, ref float y, nint yStride)
    {
        switch (path)
        {
            case KernelPath.Vector512:
                Vector512(ref x, xStride, ref w, wStride, k, ref y, yStride);
                break;
            case KernelPath.Vector256:
                Vector256Half(ref x, xStride, ref w, wStride, k, ref y, yStride);
                Vector256Half(ref x, xStride, ref Unsafe.Add(ref w, 2 * wStride), wStride, k, ref Unsafe.Add(ref y, 2), yStride);
                break;
            default:
                Reference(ref x, xStride, ref w, wStride, k, ref y, yStride, Tokens, Rows);
                break;
        }
    }

    /// <summary>Any tile up to 4 × 4 with plain loops; the reference for the SIMD tiles.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Reference(ref float x, nint xStride, ref float w, nint wStride, int k, ref float y, nint yStride, int tokens, int rows)
    {
        for (int t = 0; t < tokens; t++)
        {
            for (int n = 0; n < rows; n++)
            {
                float sum = 0;
                for (nint i = 0; i < k; i++)
                {
                    sum += Unsafe.Add(ref x, (t * xStride) + i) * Unsafe.Add(ref w, (n * wStride) + i);
                }

                Unsafe.Add(ref y, (t * yStride) + n) = sum;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Vector512(ref float x, nint xStride, ref float w, nint wStride, int k, ref float y, nint yStride)
    {
        ref float x0 = ref x, x1 = ref Unsafe.Add(ref x, xStride), x2 = ref Unsafe.Add(ref x, 2 * xStride), x3 = ref Unsafe.Add(ref x, 3 * xStride);
        ref float w0 = ref w, w1 = ref Unsafe.Add(ref w, wStride), w2 = ref Unsafe.Add(ref w, 2 * wStride), w3 = ref Unsafe.Add(ref w, 3 * wStride);
        Vector512<float> c00 = default, c01 = default, c02 = default, c03 = default;
        Vector512<float> c10 = default, c11 = default, c12 = default, c13 = default;
        Vector512<float> c20 = default, c21 = default, c22 = default, c23 = default;
        Vector512<float> c30 = default, c31 = default, c32 = default, c33 = default;
        nint i = 0;
        for (; i <= k - Vector512<float>.Count; i += Vector512<float>.Count)
        {
            Vector512<float> a0 = V512.LoadUnsafe(ref x0, (nuint)i), a1 = V512.LoadUnsafe(ref x1, (nuint)i);
            Vector512<float> a2 = V512.LoadUnsafe(ref x2, (nuint)i), a3 = V512.LoadUnsafe(ref x3, (nuint)i);
            Vector512<float> b = V512.LoadUnsafe(ref w0, (nuint)i);
            c00 = V512.FusedMultiplyAdd(a0, b, c00); c10 = V512.FusedMultiplyAdd(a1, b, c10);
            c20 = V512.FusedMultiplyAdd(a2, b, c20); c30 = V512.FusedMultiplyAdd(a3, b, c30);
            b = V512.LoadUnsafe(ref w1, (nuint)i);
            c01 = V512.FusedMultiplyAdd(a0, b, c01); c11 = V512.FusedMultiplyAdd(a1, b, c11);
            c21 = V512.FusedMultiplyAdd(a2, b, c21); c31 = V512.FusedMultiplyAdd(a3, b, c31);
            b = V512.LoadUnsafe(ref w2, (nuint)i);
            c02 = V512.FusedMultiplyAdd(a0, b, c02); c12 = V512.FusedMultiplyAdd(a1, b, c12);
            c22 = V512.FusedMultiplyAdd(a2, b, c22); c32 = V512.FusedMultiplyAdd(a3, b, c32);
            b = V512.LoadUnsafe(ref w3, (nuint)i);
            c03 = V512.FusedMultiplyAdd(a0, b, c03); c13 = V512.FusedMultiplyAdd(a1, b, c13);
            c23 = V512.FusedMultiplyAdd(a2, b, c23); c33 = V512.FusedMultiplyAdd(a3, b, c33);
        }

        ref float y0 = ref y, y1 = ref Unsafe.Add(ref y, yStride), y2 = ref Unsafe.Add(ref y, 2 * yStride), y3 = ref Unsafe.Add(ref y, 3 * yStride);
        y0 = Finish(V512.Sum(c00), ref x0, ref w0, i, k); Unsafe.Add(ref y0, 1) = Finish(V512.Sum(c01), ref x0, ref w1, i, k);
        Unsafe.Add(ref y0, 2) = Finish(V512.Sum(c02), ref x0, ref w2, i, k); Unsafe.Add(ref y0, 3) = Finish(V512.Sum(c03), ref x0, ref w3, i, k);
        y1 = Finish(V512.Sum(c10), ref x1, ref w0, i, k); Unsafe.Add(ref y1, 1) = Finish(V512.Sum(c11), ref x1, ref w1, i, k);
        Unsafe.Add(ref y1, 2) = Finish(V512.Sum(c12), ref x1, ref w2, i, k); Unsafe.Add(ref y1, 3) = Finish(V512.Sum(c13), ref x1, ref w3, i, k);
        y2 = Finish(V512.Sum(c20), ref x2, ref w0, i, k); Unsafe.Add(ref y2, 1) = Finish(V512.Sum(c21), ref x2, ref w1, i, k);
        Unsafe.Add(ref y2, 2) = Finish(V512.Sum(c22), ref x2, ref w2, i, k); Unsafe.Add(ref y2, 3) = Finish(V512.Sum(c23), ref x2, ref w3, i, k);
        y3 = Finish(V512.Sum(c30), ref x3, ref w0, i, k); Unsafe.Add(ref y3, 1) = Finish(V512.Sum(c31), ref x3, ref w1, i, k);
        Unsafe.Add(ref y3, 2) = Finish(V512.Sum(c32), ref x3, ref w2, i, k); Unsafe.Add(ref y3, 3) = Finish(V512.Sum(c33), ref x3, ref w3, i, k);
    }

    /// <summary>Half of a 4 × 4 tile with 256-bit vectors: 4 tokens × 2 rows, 8 accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Vector256Half(ref float x, nint xStride, ref float w, nint wStride, int k, ref float y, nint yStride)
    {
        ref float x0 = ref x, x1 = ref Unsafe.Add(ref x, xStride), x2 = ref Unsafe.Add(ref x, 2 * xStride), x3 = ref Unsafe.Add(ref x, 3 * xStride);
        ref float w0 = ref w, w1 = ref Unsafe.Add(ref w, wStride);
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default;
        Vector256<float> c20 = default, c21 = default, c30 = default, c31 = default;
        nint i = 0;
        for (; i <= k - Vector256<float>.Count; i += Vector256<float>.Count)
        {
            Vector256<float> a0 = V256.LoadUnsafe(ref x0, (nuint)i), a1 = V256.LoadUnsafe(ref x1, (nuint)i);
            Vector256<float> a2 = V256.LoadUnsafe(ref x2, (nuint)i), a3 = V256.LoadUnsafe(ref x3, (nuint)i);
            Vector256<float> b0 = V256.LoadUnsafe(ref w0, (nuint)i), b1 = V256.LoadUnsafe(ref w1, (nuint)i);
            c00 = V256.FusedMultiplyAdd(a0, b0, c00); c01 = V256.FusedMultiplyAdd(a0, b1, c01);
            c10 = V256.FusedMultiplyAdd(a1, b0, c10); c11 = V256.FusedMultiplyAdd(a1, b1, c11);
            c20 = V256.FusedMultiplyAdd(a2, b0, c20); c21 = V256.FusedMultiplyAdd(a2, b1, c21);
            c30 = V256.FusedMultiplyAdd(a3, b0, c30); c31 = V256.FusedMultiplyAdd(a3, b1, c31);
        }

        ref float y0 = ref y, y1 = ref Unsafe.Add(ref y, yStride), y2 = ref Unsafe.Add(ref y, 2 * yStride), y3 = ref Unsafe.Add(ref y, 3 * yStride);
        y0 = Finish(V256.Sum(c00), ref x0, ref w0, i, k); Unsafe.Add(ref y0, 1) = Finish(V256.Sum(c01), ref x0, ref w1, i, k);
        y1 = Finish(V256.Sum(c10), ref x1, ref w0, i, k); Unsafe.Add(ref y1, 1) = Finish(V256.Sum(c11), ref x1, ref w1, i, k);
        y2 = Finish(V256.Sum(c20), ref x2, ref w0, i, k); Unsafe.Add(ref y2, 1) = Finish(V256.Sum(c21), ref x2, ref w1, i, k);
        y3 = Finish(V256.Sum(c30), ref x3, ref w0, i, k); Unsafe.Add(ref y3, 1) = Finish(V256.Sum(c31), ref x3, ref w1, i, k);
    }

    /// <summary>Adds the elements past the last whole vector.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Finish(float sum, ref float x, ref float w, nint from, int k)
    {
        for (nint i = from; i < k; i++)
        {
            sum += Unsafe.Add(ref x, i) * Unsafe.Add(ref w, i);
        }

        return sum;
    }
}
