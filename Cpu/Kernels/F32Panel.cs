using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// <see cref="Rows"/> weight rows converted to f32 for <see cref="OuterProductTile"/>, by quads of columns:
/// <c>panel[q][row][j]</c> is row's column 4q + j, so the 16 rows' weights of a column quad are one 256-byte run and a tile
/// reads each of them at a constant offset from one pointer. Columns are padded with zeros to a whole quad, and rows past
/// those given are zero.
/// </summary>
/// <remarks>
/// Tried and dropped (same bits, one process, alternating): slabs of 64 columns with the rows 256 bytes apart, widened with
/// no shuffles, made 16-token products 4-17% faster but prefill-sized ones 1-7% slower, the tile then reading 16 streams
/// that cross a page every slab; slabs of 16 columns (rows a line apart) were 5-25% slower everywhere.
/// </remarks>
internal static class F32Panel
{
    /// <summary>Rows in a panel.</summary>
    public const int Rows = 16;

    /// <summary>Column quads of a row of <paramref name="columns"/> values.</summary>
    public static int ColumnQuads(int columns) => (columns + 3) / 4;

    /// <summary>Floats a panel of <paramref name="columns"/> columns takes.</summary>
    public static int Floats(int columns) => ColumnQuads(columns) * 4 * Rows;

    /// <summary>
    /// Converts <paramref name="count"/> (at most <see cref="Rows"/>) rows of <paramref name="columns"/> stored values,
    /// <paramref name="rowBytes"/> apart in <paramref name="rows"/>, into <paramref name="panel"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Fill<TW>(KernelPath path, ReadOnlySpan<byte> rows, int rowBytes, int count, int columns, Span<float> panel)
        where TW : struct, IWeightLoad
    {
        int quads = ColumnQuads(columns);
        if (count is < 0 or > Rows || rowBytes < (long)columns * TW.ElementSize || (count > 0 && rows.Length < ((long)(count - 1) * rowBytes) + ((long)columns * TW.ElementSize))
            || panel.Length < Floats(columns))
        {
            throw new ArgumentException($"a panel of {count} rows of {columns} values {rowBytes} bytes apart needs {count * rowBytes} bytes and {Floats(columns)} floats; got {rows.Length} and {panel.Length}");
        }

        // Column by column across the rows, four rows at a time: their 16 (8) values transposed by 128-bit lanes are whole
        // 64-byte runs of the panel (32 on the 256-bit path), each written at once while in L1. Row by row, with a 16-byte
        // store per quad, the same conversion ran at half the speed from L2.
        ref byte source = ref MemoryMarshal.GetReference(rows);
        ref float target = ref MemoryMarshal.GetReference(panel);
        int i = 0;
        if (path == KernelPath.Vector512 && Avx512F.IsSupported)
        {
            for (; i <= columns - 16; i += 16)
            {
                ref float at = ref Unsafe.Add(ref target, i * Rows);
                for (int n = 0; n < Rows; n += 4)
                {
                    Vector512<float> v0 = Row512<TW>(ref source, rowBytes, count, n, i), v1 = Row512<TW>(ref source, rowBytes, count, n + 1, i);
                    Vector512<float> v2 = Row512<TW>(ref source, rowBytes, count, n + 2, i), v3 = Row512<TW>(ref source, rowBytes, count, n + 3, i);
                    Vector512<float> t0 = Avx512F.Shuffle4x128(v0, v1, 0x44), t1 = Avx512F.Shuffle4x128(v0, v1, 0xEE);
                    Vector512<float> t2 = Avx512F.Shuffle4x128(v2, v3, 0x44), t3 = Avx512F.Shuffle4x128(v2, v3, 0xEE);
                    Avx512F.Shuffle4x128(t0, t2, 0x88).StoreUnsafe(ref at, (nuint)(n * 4));
                    Avx512F.Shuffle4x128(t0, t2, 0xDD).StoreUnsafe(ref at, (nuint)((n * 4) + (4 * Rows)));
                    Avx512F.Shuffle4x128(t1, t3, 0x88).StoreUnsafe(ref at, (nuint)((n * 4) + (8 * Rows)));
                    Avx512F.Shuffle4x128(t1, t3, 0xDD).StoreUnsafe(ref at, (nuint)((n * 4) + (12 * Rows)));
                }
            }
        }
        else if (path == KernelPath.Vector256 && Avx.IsSupported)
        {
            for (; i <= columns - 8; i += 8)
            {
                ref float at = ref Unsafe.Add(ref target, i * Rows);
                for (int n = 0; n < Rows; n += 2)
                {
                    Vector256<float> v0 = Row256<TW>(ref source, rowBytes, count, n, i), v1 = Row256<TW>(ref source, rowBytes, count, n + 1, i);
                    Avx.Permute2x128(v0, v1, 0x20).StoreUnsafe(ref at, (nuint)(n * 4));
                    Avx.Permute2x128(v0, v1, 0x31).StoreUnsafe(ref at, (nuint)((n * 4) + (4 * Rows)));
                }
            }
        }

        for (; i < quads * 4; i++)
        {
            for (int n = 0; n < Rows; n++)
            {
                Unsafe.Add(ref target, (i / 4 * 4 * Rows) + (n * 4) + (i % 4)) =
                    n < count && i < columns ? TW.LoadScalar(ref Unsafe.Add(ref source, (nint)n * rowBytes), i) : 0f;
            }
        }
    }

    /// <summary>Row <paramref name="n"/>'s 16 values from column <paramref name="i"/>, or zeros past the <paramref name="count"/> rows given.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Row512<TW>(ref byte rows, int rowBytes, int count, int n, int i)
        where TW : struct, IWeightLoad =>
        n < count ? TW.Load512(ref Unsafe.Add(ref rows, (nint)n * rowBytes), i) : Vector512<float>.Zero;

    /// <summary><see cref="Row512{TW}"/> for 8 values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Row256<TW>(ref byte rows, int rowBytes, int count, int n, int i)
        where TW : struct, IWeightLoad =>
        n < count ? TW.Load256(ref Unsafe.Add(ref rows, (nint)n * rowBytes), i) : Vector256<float>.Zero;
}
