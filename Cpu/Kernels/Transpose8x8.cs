using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using V256 = System.Runtime.Intrinsics.Vector256;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// <see cref="Transpose16x16"/> for the 256-bit path: an 8 × 8 block of f32 transposed in AVX registers (pairs of rows
/// interleaved by 32 bits, then by 64, then 128-bit halves exchanged; 24 shuffles for 64 values).
/// </summary>
internal static class Transpose8x8
{
    /// <summary>
    /// target[c × <paramref name="targetStride"/> + r] = source[r × <paramref name="sourceStride"/> + c] for r, c &lt; 8.
    /// The caller checks the bounds and <see cref="Avx.IsSupported"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Run(ref float source, nint sourceStride, ref float target, nint targetStride)
    {
        Span<Vector256<float>> u = stackalloc Vector256<float>[8];
        for (int group = 0; group < 8; group += 4)
        {
            Vector256<float> r0 = V256.LoadUnsafe(ref source, (nuint)(group * sourceStride)), r1 = V256.LoadUnsafe(ref source, (nuint)((group + 1) * sourceStride));
            Vector256<float> r2 = V256.LoadUnsafe(ref source, (nuint)((group + 2) * sourceStride)), r3 = V256.LoadUnsafe(ref source, (nuint)((group + 3) * sourceStride));
            Vector256<double> t0 = Avx.UnpackLow(r0, r1).AsDouble(), t1 = Avx.UnpackHigh(r0, r1).AsDouble();
            Vector256<double> t2 = Avx.UnpackLow(r2, r3).AsDouble(), t3 = Avx.UnpackHigh(r2, r3).AsDouble();
            u[group] = Avx.UnpackLow(t0, t2).AsSingle();        // half H: column 4H of the group's four rows
            u[group + 1] = Avx.UnpackHigh(t0, t2).AsSingle();   // column 4H + 1
            u[group + 2] = Avx.UnpackLow(t1, t3).AsSingle();    // column 4H + 2
            u[group + 3] = Avx.UnpackHigh(t1, t3).AsSingle();   // column 4H + 3
        }

        for (int j = 0; j < 4; j++)
        {
            // Column j is the low halves of rows 0-3 and 4-7, column 4 + j the high halves.
            Avx.Permute2x128(u[j], u[4 + j], 0x20).StoreUnsafe(ref target, (nuint)(j * targetStride));
            Avx.Permute2x128(u[j], u[4 + j], 0x31).StoreUnsafe(ref target, (nuint)((4 + j) * targetStride));
        }
    }
}
