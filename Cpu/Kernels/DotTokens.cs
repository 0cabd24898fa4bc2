using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using V256 = System.Runtime.Intrinsics.Vector256;
using V512 = System.Runtime.Intrinsics.Vector512;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// One stored weight row against a few tokens' activations (a decode step of a small batch): each weight
/// vector is loaded and converted once and serves every token of the group, so a batch of 4 costs little
/// more weight traffic than one token. Each token's sum runs in exactly <see cref="Dot{TW}"/>'s order (the
/// same four accumulators over the same chunks, the same reduction and scalar tail), so a token gets the
/// bit-identical result it gets alone: a sequence's logits do not depend on what else is in the batch.
/// </summary>
internal static class DotTokens<TW>
    where TW : struct, IWeightLoad
{
    /// <summary>Tokens per pass: 4 × 4 accumulators + 4 weight vectors + 1 activation fit AVX-512's 32 registers; AVX2's 16 hold 2 tokens.</summary>
    public static int GroupSize(KernelPath path) => path == KernelPath.Vector512 ? 4 : path == KernelPath.Vector256 ? 2 : 1;

    /// <summary>
    /// results[t] = row · x[t * k .. (t + 1) * k] for t &lt; <paramref name="tokens"/>, in groups of
    /// <see cref="GroupSize"/> (the row stays in L1 between groups), then on the 512-bit path two left over in one pass, the
    /// rest one token at a time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(KernelPath path, ReadOnlySpan<byte> row, ReadOnlySpan<float> x, int k, int tokens, Span<float> results)
    {
        if (row.Length < (long)k * TW.ElementSize || x.Length < (long)k * tokens || results.Length < tokens)
        {
            throw new ArgumentException($"DotTokens: a row of {row.Length} bytes, {x.Length} activations and {results.Length} results do not fit {tokens} tokens of {k}");
        }

        int group = GroupSize(path);
        int t = 0;
        ref float xr = ref MemoryMarshal.GetReference(x);
        for (; t + group <= tokens && group > 1; t += group)
        {
            if (group == 4)
            {
                Vector512Four(ref MemoryMarshal.GetReference(row), ref Unsafe.Add(ref xr, t * k), k, results.Slice(t, 4));
            }
            else
            {
                Vector256Two(ref MemoryMarshal.GetReference(row), ref Unsafe.Add(ref xr, t * k), k, results.Slice(t, 2));
            }
        }

        if (group == 4 && t + 2 <= tokens)
        {
            // Two left over (a batch of 2, 6 or 7): one pass for both, not one each.
            Vector512Two(ref MemoryMarshal.GetReference(row), ref Unsafe.Add(ref xr, t * k), k, results.Slice(t, 2));
            t += 2;
        }

        for (; t < tokens; t++)
        {
            results[t] = Dot<TW>.Run(path, row, x.Slice(t * k, k));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Vector512Four(ref byte w, ref float x0, nint k, Span<float> results)
    {
        ref float x1 = ref Unsafe.Add(ref x0, k), x2 = ref Unsafe.Add(ref x0, 2 * k), x3 = ref Unsafe.Add(ref x0, 3 * k);
        const int lanes = 16;    // Vector512<float>.Count; a constant, so i + lanes folds into the loads' addresses (a local left an lea per load)
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default;
        Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default;
        Vector512<float> a30 = default, a31 = default, a32 = default, a33 = default;
        nint i = 0;
        for (; i <= k - (4 * lanes); i += 4 * lanes)
        {
            Prefetch.Ahead(ref Unsafe.Add(ref w, i * TW.ElementSize), TW.ElementSize * 4 * lanes / 64);
            if (typeof(TW) == typeof(F16ScaledLoad) && F16ExactGroups.HasSmall64(ref w, i))
            {
                // A zero or subnormal f16 here: read exactly, against the activations unscaled (see F16ExactGroups).
                Vector512<float> e0 = F16ExactGroups.Load512(ref w, i), e1 = F16ExactGroups.Load512(ref w, i + lanes);
                Vector512<float> e2 = F16ExactGroups.Load512(ref w, i + (2 * lanes)), e3 = F16ExactGroups.Load512(ref w, i + (3 * lanes));
                a00 = V512.FusedMultiplyAdd(e0, F16ExactGroups.Unscaled512(ref x0, i), a00);
                a01 = V512.FusedMultiplyAdd(e1, F16ExactGroups.Unscaled512(ref x0, i + lanes), a01);
                a02 = V512.FusedMultiplyAdd(e2, F16ExactGroups.Unscaled512(ref x0, i + (2 * lanes)), a02);
                a03 = V512.FusedMultiplyAdd(e3, F16ExactGroups.Unscaled512(ref x0, i + (3 * lanes)), a03);
                a10 = V512.FusedMultiplyAdd(e0, F16ExactGroups.Unscaled512(ref x1, i), a10);
                a11 = V512.FusedMultiplyAdd(e1, F16ExactGroups.Unscaled512(ref x1, i + lanes), a11);
                a12 = V512.FusedMultiplyAdd(e2, F16ExactGroups.Unscaled512(ref x1, i + (2 * lanes)), a12);
                a13 = V512.FusedMultiplyAdd(e3, F16ExactGroups.Unscaled512(ref x1, i + (3 * lanes)), a13);
                a20 = V512.FusedMultiplyAdd(e0, F16ExactGroups.Unscaled512(ref x2, i), a20);
                a21 = V512.FusedMultiplyAdd(e1, F16ExactGroups.Unscaled512(ref x2, i + lanes), a21);
                a22 = V512.FusedMultiplyAdd(e2, F16ExactGroups.Unscaled512(ref x2, i + (2 * lanes)), a22);
                a23 = V512.FusedMultiplyAdd(e3, F16ExactGroups.Unscaled512(ref x2, i + (3 * lanes)), a23);
                a30 = V512.FusedMultiplyAdd(e0, F16ExactGroups.Unscaled512(ref x3, i), a30);
                a31 = V512.FusedMultiplyAdd(e1, F16ExactGroups.Unscaled512(ref x3, i + lanes), a31);
                a32 = V512.FusedMultiplyAdd(e2, F16ExactGroups.Unscaled512(ref x3, i + (2 * lanes)), a32);
                a33 = V512.FusedMultiplyAdd(e3, F16ExactGroups.Unscaled512(ref x3, i + (3 * lanes)), a33);
                continue;
            }

            Vector512<float> w0 = TW.Load512(ref w, i), w1 = TW.Load512(ref w, i + lanes);
            Vector512<float> w2 = TW.Load512(ref w, i + (2 * lanes)), w3 = TW.Load512(ref w, i + (3 * lanes));
            a00 = V512.FusedMultiplyAdd(w0, V512.LoadUnsafe(ref x0, (nuint)i), a00);
            a01 = V512.FusedMultiplyAdd(w1, V512.LoadUnsafe(ref x0, (nuint)(i + lanes)), a01);
            a02 = V512.FusedMultiplyAdd(w2, V512.LoadUnsafe(ref x0, (nuint)(i + (2 * lanes))), a02);
            a03 = V512.FusedMultiplyAdd(w3, V512.LoadUnsafe(ref x0, (nuint)(i + (3 * lanes))), a03);
            a10 = V512.FusedMultiplyAdd(w0, V512.LoadUnsafe(ref x1, (nuint)i), a10);
            a11 = V512.FusedMultiplyAdd(w1, V512.LoadUnsafe(ref x1, (nuint)(i + lanes)), a11);
            a12 = V512.FusedMultiplyAdd(w2, V512.LoadUnsafe(ref x1, (nuint)(i + (2 * lanes))), a12);
            a13 = V512.FusedMultiplyAdd(w3, V512.LoadUnsafe(ref x1, (nuint)(i + (3 * lanes))), a13);
            a20 = V512.FusedMultiplyAdd(w0, V512.LoadUnsafe(ref x2, (nuint)i), a20);
            a21 = V512.FusedMultiplyAdd(w1, V512.LoadUnsafe(ref x2, (nuint)(i + lanes)), a21);
            a22 = V512.FusedMultiplyAdd(w2, V512.LoadUnsafe(ref x2, (nuint)(i + (2 * lanes))), a22);
            a23 = V512.FusedMultiplyAdd(w3, V512.LoadUnsafe(ref x2, (nuint)(i + (3 * lanes))), a23);
            a30 = V512.FusedMultiplyAdd(w0, V512.LoadUnsafe(ref x3, (nuint)i), a30);
            a31 = V512.FusedMultiplyAdd(w1, V512.LoadUnsafe(ref x3, (nuint)(i + lanes)), a31);
            a32 = V512.FusedMultiplyAdd(w2, V512.LoadUnsafe(ref x3, (nuint)(i + (2 * lanes))), a32);
            a33 = V512.FusedMultiplyAdd(w3, V512.LoadUnsafe(ref x3, (nuint)(i + (3 * lanes))), a33);
        }

        for (; i <= k - lanes; i += lanes)
        {
            Vector512<float> w0 = TW.Load512(ref w, i);
            a00 = V512.FusedMultiplyAdd(w0, V512.LoadUnsafe(ref x0, (nuint)i), a00);
            a10 = V512.FusedMultiplyAdd(w0, V512.LoadUnsafe(ref x1, (nuint)i), a10);
            a20 = V512.FusedMultiplyAdd(w0, V512.LoadUnsafe(ref x2, (nuint)i), a20);
            a30 = V512.FusedMultiplyAdd(w0, V512.LoadUnsafe(ref x3, (nuint)i), a30);
        }

        results[0] = Dot<TW>.ScalarTail(ref w, ref x0, i, k, V512.Sum((a00 + a01) + (a02 + a03)));
        results[1] = Dot<TW>.ScalarTail(ref w, ref x1, i, k, V512.Sum((a10 + a11) + (a12 + a13)));
        results[2] = Dot<TW>.ScalarTail(ref w, ref x2, i, k, V512.Sum((a20 + a21) + (a22 + a23)));
        results[3] = Dot<TW>.ScalarTail(ref w, ref x3, i, k, V512.Sum((a30 + a31) + (a32 + a33)));
    }

    /// <summary><see cref="Vector512Four"/> for two tokens.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Vector512Two(ref byte w, ref float x0, nint k, Span<float> results)
    {
        ref float x1 = ref Unsafe.Add(ref x0, k);
        const int lanes = 16;    // Vector512<float>.Count, as a constant (see Vector512Four)
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default;
        nint i = 0;
        for (; i <= k - (4 * lanes); i += 4 * lanes)
        {
            Prefetch.Ahead(ref Unsafe.Add(ref w, i * TW.ElementSize), TW.ElementSize * 4 * lanes / 64);
            if (typeof(TW) == typeof(F16ScaledLoad) && F16ExactGroups.HasSmall64(ref w, i))
            {
                Vector512<float> e0 = F16ExactGroups.Load512(ref w, i), e1 = F16ExactGroups.Load512(ref w, i + lanes);
                Vector512<float> e2 = F16ExactGroups.Load512(ref w, i + (2 * lanes)), e3 = F16ExactGroups.Load512(ref w, i + (3 * lanes));
                a00 = V512.FusedMultiplyAdd(e0, F16ExactGroups.Unscaled512(ref x0, i), a00);
                a01 = V512.FusedMultiplyAdd(e1, F16ExactGroups.Unscaled512(ref x0, i + lanes), a01);
                a02 = V512.FusedMultiplyAdd(e2, F16ExactGroups.Unscaled512(ref x0, i + (2 * lanes)), a02);
                a03 = V512.FusedMultiplyAdd(e3, F16ExactGroups.Unscaled512(ref x0, i + (3 * lanes)), a03);
                a10 = V512.FusedMultiplyAdd(e0, F16ExactGroups.Unscaled512(ref x1, i), a10);
                a11 = V512.FusedMultiplyAdd(e1, F16ExactGroups.Unscaled512(ref x1, i + lanes), a11);
                a12 = V512.FusedMultiplyAdd(e2, F16ExactGroups.Unscaled512(ref x1, i + (2 * lanes)), a12);
                a13 = V512.FusedMultiplyAdd(e3, F16ExactGroups.Unscaled512(ref x1, i + (3 * lanes)), a13);
                continue;
            }

            Vector512<float> w0 = TW.Load512(ref w, i), w1 = TW.Load512(ref w, i + lanes);
            Vector512<float> w2 = TW.Load512(ref w, i + (2 * lanes)), w3 = TW.Load512(ref w, i + (3 * lanes));
            a00 = V512.FusedMultiplyAdd(w0, V512.LoadUnsafe(ref x0, (nuint)i), a00);
            a01 = V512.FusedMultiplyAdd(w1, V512.LoadUnsafe(ref x0, (nuint)(i + lanes)), a01);
            a02 = V512.FusedMultiplyAdd(w2, V512.LoadUnsafe(ref x0, (nuint)(i + (2 * lanes))), a02);
            a03 = V512.FusedMultiplyAdd(w3, V512.LoadUnsafe(ref x0, (nuint)(i + (3 * lanes))), a03);
            a10 = V512.FusedMultiplyAdd(w0, V512.LoadUnsafe(ref x1, (nuint)i), a10);
            a11 = V512.FusedMultiplyAdd(w1, V512.LoadUnsafe(ref x1, (nuint)(i + lanes)), a11);
            a12 = V512.FusedMultiplyAdd(w2, V512.LoadUnsafe(ref x1, (nuint)(i + (2 * lanes))), a12);
            a13 = V512.FusedMultiplyAdd(w3, V512.LoadUnsafe(ref x1, (nuint)(i + (3 * lanes))), a13);
        }

        for (; i <= k - lanes; i += lanes)
        {
            Vector512<float> w0 = TW.Load512(ref w, i);
            a00 = V512.FusedMultiplyAdd(w0, V512.LoadUnsafe(ref x0, (nuint)i), a00);
            a10 = V512.FusedMultiplyAdd(w0, V512.LoadUnsafe(ref x1, (nuint)i), a10);
        }

        results[0] = Dot<TW>.ScalarTail(ref w, ref x0, i, k, V512.Sum((a00 + a01) + (a02 + a03)));
        results[1] = Dot<TW>.ScalarTail(ref w, ref x1, i, k, V512.Sum((a10 + a11) + (a12 + a13)));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Vector256Two(ref byte w, ref float x0, nint k, Span<float> results)
    {
        ref float x1 = ref Unsafe.Add(ref x0, k);
        const int lanes = 8;    // Vector256<float>.Count, as a constant (see Vector512)
        Vector256<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector256<float> a10 = default, a11 = default, a12 = default, a13 = default;
        nint i = 0;
        for (; i <= k - (4 * lanes); i += 4 * lanes)
        {
            Prefetch.Ahead(ref Unsafe.Add(ref w, i * TW.ElementSize), TW.ElementSize * 4 * lanes / 64);
            if (typeof(TW) == typeof(F16ScaledLoad) && F16ExactGroups.HasSmall32(ref w, i))
            {
                Vector256<float> e0 = F16ExactGroups.Load256(ref w, i), e1 = F16ExactGroups.Load256(ref w, i + lanes);
                Vector256<float> e2 = F16ExactGroups.Load256(ref w, i + (2 * lanes)), e3 = F16ExactGroups.Load256(ref w, i + (3 * lanes));
                a00 = V256.FusedMultiplyAdd(e0, F16ExactGroups.Unscaled256(ref x0, i), a00);
                a01 = V256.FusedMultiplyAdd(e1, F16ExactGroups.Unscaled256(ref x0, i + lanes), a01);
                a02 = V256.FusedMultiplyAdd(e2, F16ExactGroups.Unscaled256(ref x0, i + (2 * lanes)), a02);
                a03 = V256.FusedMultiplyAdd(e3, F16ExactGroups.Unscaled256(ref x0, i + (3 * lanes)), a03);
                a10 = V256.FusedMultiplyAdd(e0, F16ExactGroups.Unscaled256(ref x1, i), a10);
                a11 = V256.FusedMultiplyAdd(e1, F16ExactGroups.Unscaled256(ref x1, i + lanes), a11);
                a12 = V256.FusedMultiplyAdd(e2, F16ExactGroups.Unscaled256(ref x1, i + (2 * lanes)), a12);
                a13 = V256.FusedMultiplyAdd(e3, F16ExactGroups.Unscaled256(ref x1, i + (3 * lanes)), a13);
                continue;
            }

            Vector256<float> w0 = TW.Load256(ref w, i), w1 = TW.Load256(ref w, i + lanes);
            Vector256<float> w2 = TW.Load256(ref w, i + (2 * lanes)), w3 = TW.Load256(ref w, i + (3 * lanes));
            a00 = V256.FusedMultiplyAdd(w0, V256.LoadUnsafe(ref x0, (nuint)i), a00);
            a01 = V256.FusedMultiplyAdd(w1, V256.LoadUnsafe(ref x0, (nuint)(i + lanes)), a01);
            a02 = V256.FusedMultiplyAdd(w2, V256.LoadUnsafe(ref x0, (nuint)(i + (2 * lanes))), a02);
            a03 = V256.FusedMultiplyAdd(w3, V256.LoadUnsafe(ref x0, (nuint)(i + (3 * lanes))), a03);
            a10 = V256.FusedMultiplyAdd(w0, V256.LoadUnsafe(ref x1, (nuint)i), a10);
            a11 = V256.FusedMultiplyAdd(w1, V256.LoadUnsafe(ref x1, (nuint)(i + lanes)), a11);
            a12 = V256.FusedMultiplyAdd(w2, V256.LoadUnsafe(ref x1, (nuint)(i + (2 * lanes))), a12);
            a13 = V256.FusedMultiplyAdd(w3, V256.LoadUnsafe(ref x1, (nuint)(i + (3 * lanes))), a13);
        }

        for (; i <= k - lanes; i += lanes)
        {
            Vector256<float> w0 = TW.Load256(ref w, i);
            a00 = V256.FusedMultiplyAdd(w0, V256.LoadUnsafe(ref x0, (nuint)i), a00);
            a10 = V256.FusedMultiplyAdd(w0, V256.LoadUnsafe(ref x1, (nuint)i), a10);
        }

        results[0] = Dot<TW>.ScalarTail(ref w, ref x0, i, k, V256.Sum((a00 + a01) + (a02 + a03)));
        results[1] = Dot<TW>.ScalarTail(ref w, ref x1, i, k, V256.Sum((a10 + a11) + (a12 + a13)));
    }
}
