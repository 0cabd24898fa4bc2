using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using QwenSharp.Formats;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// The rotation llama.cpp gives a quantized KV cache (its <c>attn_rot_k</c> and <c>attn_rot_v</c>, on by default since
/// April 2026): each head's keys and queries, and its values, are multiplied by an orthonormal Walsh-Hadamard matrix H
/// (Sylvester's, H[i][j] = (-1)^popcount(i &amp; j) / sqrt(n), so H = Hᵀ and H·H = I) before the keys and values are
/// stored, and each head's output by H again after attention. Scores are unchanged, (Hq)·(Hk) = q·k, and the output is
/// Σ p_j H v_j = H o; but one large element of a head no longer sets the scale of its whole block of 32 codes: it is spread
/// over n elements. Keys rotate in blocks of the largest power of two that divides the head (64 or 128 for Qwen2's 64 and
/// 128), values in blocks of 64; heads that are not a multiple of 64 do not rotate, as in llama.cpp.
/// </summary>
internal static class KvRotation
{
    /// <summary>Values of a value rotation block, and the smallest block of either.</summary>
    public const int ValueBlock = 64;

    /// <summary>Whether a cache of <paramref name="type"/> rotates heads of <paramref name="headDim"/> values: q8_0 and whole multiples of 64.</summary>
    public static bool Applies(DType type, int headDim) => type == DType.Q8_0 && headDim % ValueBlock == 0;

    /// <summary>The key rotation block for heads of <paramref name="headDim"/> (a multiple of 64): the largest power of two that divides it.</summary>
    public static int KeyBlock(int headDim) => headDim & -headDim;

    /// <summary>
    /// Multiplies each consecutive <paramref name="n"/> values of <paramref name="x"/> (a power of two) by H_n in place: the
    /// fast Walsh-Hadamard transform (log2 n rounds of sums and differences of pairs), then 1/sqrt(n). The scalar reference is
    /// the matrix product, in the tests.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Rotate(Span<float> x, int n)
    {
        if (n < 2 || (n & (n - 1)) != 0 || x.Length % n != 0)
        {
            throw new ArgumentException($"{x.Length} values do not rotate in blocks of {n}");
        }

        float scale = 1 / MathF.Sqrt(n);
        ref float start = ref MemoryMarshal.GetReference(x);
        for (int b = 0; b < x.Length; b += n)
        {
            ref float block = ref Unsafe.Add(ref start, b);
            for (int h = 1; h < n; h *= 2)
            {
                for (int i = 0; i < n; i += 2 * h)
                {
                    for (int j = i; j < i + h; j++)
                    {
                        float a = Unsafe.Add(ref block, j), c = Unsafe.Add(ref block, j + h);
                        Unsafe.Add(ref block, j) = a + c;
                        Unsafe.Add(ref block, j + h) = a - c;
                    }
                }
            }

            for (int i = 0; i < n; i++)
            {
                Unsafe.Add(ref block, i) *= scale;
            }
        }
    }
}
