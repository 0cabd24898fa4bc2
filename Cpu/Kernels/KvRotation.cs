using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using QwenSharp.Backend;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// The CPU's half of <see cref="KvCacheRotation"/>: the orthonormal Walsh-Hadamard transform that rotates a quantized
/// (q8_0, q4_0) cache's keys, values, queries and outputs.
/// </summary>
internal static class KvRotation
{
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
