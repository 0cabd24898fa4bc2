using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using V256 = System.Runtime.Intrinsics.Vector256;
using V512 = System.Runtime.Intrinsics.Vector512;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Scaled dot-product attention of one query head over the cached keys and values of its sequence:
/// out = softmax(q · Kᵀ / sqrt(d)) · V over positions 0..length-1 (the causal mask is the range itself).
/// A head is short (8 to 128 floats), so the per-position dot product and the weighted sum of values are
/// inlined vector loops: a library call per position would cost more than the arithmetic.
/// </summary>
internal static class AttentionKernel
{
    /// <param name="query">[head_dim]</param>
    /// <param name="keys">The cache rows of one slot, [positions, kvDim]; the head's keys start at <paramref name="headOffset"/>.</param>
    /// <param name="values">Same layout as keys.</param>
    /// <param name="scores">Scratch of at least <paramref name="length"/> floats.</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Head(KernelPath path, ReadOnlySpan<float> query, ReadOnlySpan<float> keys, ReadOnlySpan<float> values,
        int kvDim, int headOffset, int length, float scale, Span<float> scores, Span<float> output)
    {
        int d = query.Length;
        if (length <= 0 || (long)(length - 1) * kvDim + headOffset + d > Math.Min(keys.Length, values.Length) || scores.Length < length || output.Length < d)
        {
            throw new ArgumentException($"attention over {length} positions does not fit the given buffers");
        }

        ref float q = ref MemoryMarshal.GetReference(query);
        ref float k = ref Unsafe.Add(ref MemoryMarshal.GetReference(keys), headOffset);
        ref float v = ref Unsafe.Add(ref MemoryMarshal.GetReference(values), headOffset);
        ref float o = ref MemoryMarshal.GetReference(output);
        scores = scores[..length];
        for (int j = 0; j < length; j++)
        {
            scores[j] = Dot(path, ref q, ref Unsafe.Add(ref k, (nint)j * kvDim), d) * scale;
        }

        SoftmaxKernel.InPlace(scores);
        output[..d].Clear();
        for (int j = 0; j < length; j++)
        {
            MultiplyAdd(path, ref Unsafe.Add(ref v, (nint)j * kvDim), scores[j], ref o, d);
        }
    }

    /// <summary>Σ a[i] b[i] over a head.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot(KernelPath path, ref float a, ref float b, int d)
    {
        float sum = 0;
        nint i = 0;
        if (path == KernelPath.Vector512)
        {
            Vector512<float> acc = default;
            for (; i <= d - 16; i += 16)
            {
                acc = V512.FusedMultiplyAdd(V512.LoadUnsafe(ref a, (nuint)i), V512.LoadUnsafe(ref b, (nuint)i), acc);
            }

            sum = V512.Sum(acc);
        }

        if (path != KernelPath.Scalar)
        {
            Vector256<float> acc = default;
            for (; i <= d - 8; i += 8)
            {
                acc = V256.FusedMultiplyAdd(V256.LoadUnsafe(ref a, (nuint)i), V256.LoadUnsafe(ref b, (nuint)i), acc);
            }

            sum += V256.Sum(acc);
        }

        for (; i < d; i++)
        {
            sum += Unsafe.Add(ref a, i) * Unsafe.Add(ref b, i);
        }

        return sum;
    }

    /// <summary>o[i] += weight · v[i] over a head.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MultiplyAdd(KernelPath path, ref float v, float weight, ref float o, int d)
    {
        nint i = 0;
        if (path == KernelPath.Vector512)
        {
            Vector512<float> w = V512.Create(weight);
            for (; i <= d - 16; i += 16)
            {
                V512.FusedMultiplyAdd(V512.LoadUnsafe(ref v, (nuint)i), w, V512.LoadUnsafe(ref o, (nuint)i)).StoreUnsafe(ref o, (nuint)i);
            }
        }

        if (path != KernelPath.Scalar)
        {
            Vector256<float> w = V256.Create(weight);
            for (; i <= d - 8; i += 8)
            {
                V256.FusedMultiplyAdd(V256.LoadUnsafe(ref v, (nuint)i), w, V256.LoadUnsafe(ref o, (nuint)i)).StoreUnsafe(ref o, (nuint)i);
            }
        }

        for (; i < d; i++)
        {
            Unsafe.Add(ref o, i) += weight * Unsafe.Add(ref v, i);
        }
    }
}
