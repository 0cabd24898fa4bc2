using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using V512 = System.Runtime.Intrinsics.Vector512;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// A 16 × 16 block of f32 transposed in AVX-512 registers: pairs of rows interleaved by 32 bits, then by 64 (each 128-bit
/// lane then holds one column of four rows), then 128-bit lanes gathered twice; 64 shuffles for 256 values. Used where an
/// outer-product tile's operands or results change between token-major and row-major (<see cref="TokenBlocks"/>,
/// <see cref="OuterProductTile.ByToken"/>).
/// </summary>
internal static class Transpose16x16
{
    /// <summary>
    /// target[c × <paramref name="targetStride"/> + r] = source[r × <paramref name="sourceStride"/> + c] for r, c &lt; 16.
    /// The caller checks the bounds and <see cref="Avx512F.IsSupported"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Run(ref float source, nint sourceStride, ref float target, nint targetStride)
    {
        Span<Vector512<float>> u = stackalloc Vector512<float>[16];
        for (int group = 0; group < 16; group += 4)
        {
            Vector512<float> r0 = V512.LoadUnsafe(ref source, (nuint)(group * sourceStride)), r1 = V512.LoadUnsafe(ref source, (nuint)((group + 1) * sourceStride));
            Vector512<float> r2 = V512.LoadUnsafe(ref source, (nuint)((group + 2) * sourceStride)), r3 = V512.LoadUnsafe(ref source, (nuint)((group + 3) * sourceStride));
            Vector512<double> t0 = Avx512F.UnpackLow(r0, r1).AsDouble(), t1 = Avx512F.UnpackHigh(r0, r1).AsDouble();
            Vector512<double> t2 = Avx512F.UnpackLow(r2, r3).AsDouble(), t3 = Avx512F.UnpackHigh(r2, r3).AsDouble();
            u[group] = Avx512F.UnpackLow(t0, t2).AsSingle();        // lane L: column 4L of the group's four rows
            u[group + 1] = Avx512F.UnpackHigh(t0, t2).AsSingle();   // column 4L + 1
            u[group + 2] = Avx512F.UnpackLow(t1, t3).AsSingle();    // column 4L + 2
            u[group + 3] = Avx512F.UnpackHigh(t1, t3).AsSingle();   // column 4L + 3
        }

        for (int j = 0; j < 4; j++)
        {
            // Lanes: columns j and 8 + j (0x88), 4 + j and 12 + j (0xDD), of rows 0-3 and 4-7 (v, w) or 8-11 and 12-15 (x, z).
            Vector512<float> v = Avx512F.Shuffle4x128(u[j], u[4 + j], 0x88), w = Avx512F.Shuffle4x128(u[j], u[4 + j], 0xDD);
            Vector512<float> x = Avx512F.Shuffle4x128(u[8 + j], u[12 + j], 0x88), z = Avx512F.Shuffle4x128(u[8 + j], u[12 + j], 0xDD);
            Avx512F.Shuffle4x128(v, x, 0x88).StoreUnsafe(ref target, (nuint)(j * targetStride));
            Avx512F.Shuffle4x128(v, x, 0xDD).StoreUnsafe(ref target, (nuint)((8 + j) * targetStride));
            Avx512F.Shuffle4x128(w, z, 0x88).StoreUnsafe(ref target, (nuint)((4 + j) * targetStride));
            Avx512F.Shuffle4x128(w, z, 0xDD).StoreUnsafe(ref target, (nuint)((12 + j) * targetStride));
        }
    }
}
