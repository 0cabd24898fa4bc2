using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// The activations of many tokens transposed for <see cref="OuterProductTile"/>: blocks of <see cref="Lanes"/> tokens, each
/// <c>block[k][t]</c>, so a column's activations for the block are one vector. Columns are padded with zeros to a whole
/// quad (as <see cref="F32Panel"/>'s), and the last block's lanes past the tokens are zero: a leftover from an earlier
/// step could be a subnormal, which costs Intel cores a microcode assist in every multiply-add it meets.
/// </summary>
internal static class TokenBlocks
{
    /// <summary>Tokens in a block: one vector of f32 lanes (16 on the 512-bit path, else 8).</summary>
    public static int Lanes(KernelPath path) => path == KernelPath.Vector512 ? 16 : 8;

    /// <summary>Blocks of <paramref name="tokens"/> tokens.</summary>
    public static int Count(KernelPath path, int tokens) => (tokens + Lanes(path) - 1) / Lanes(path);

    /// <summary>Floats of one block of rows of <paramref name="columns"/> values.</summary>
    public static int BlockFloats(KernelPath path, int columns) => F32Panel.ColumnQuads(columns) * 4 * Lanes(path);

    /// <summary>
    /// Writes tokens [<paramref name="first"/>, <paramref name="end"/>) of <paramref name="x"/> (<paramref name="columns"/>
    /// values each) into their blocks in <paramref name="blocks"/>; the caller covers whole blocks, or the padding lanes of
    /// the last block stay as they were (<see cref="ClearPadding"/> zeroes them).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Write(KernelPath path, ReadOnlySpan<float> x, int columns, int first, int end, Span<float> blocks)
    {
        int lanes = Lanes(path), padded = F32Panel.ColumnQuads(columns) * 4, blockFloats = BlockFloats(path, columns);
        if (first < 0 || end < first || x.Length < (long)end * columns || blocks.Length < (long)Count(path, end) * blockFloats)
        {
            throw new ArgumentException($"tokens {first} to {end} of {columns} values need {end * columns} floats and {Count(path, end) * blockFloats} of blocks; got {x.Length} and {blocks.Length}");
        }

        ref float source = ref MemoryMarshal.GetReference(x);
        ref float target = ref MemoryMarshal.GetReference(blocks);
        if ((path == KernelPath.Vector512 && Avx512F.IsSupported) || (path == KernelPath.Vector256 && Avx.IsSupported))
        {
            // Whole blocks, a square of tokens by as many columns at a time, through a transpose in registers: element by
            // element the strided stores took 3.7% of a 16-sequence BF16 decode step.
            for (; first % lanes == 0 && first + lanes <= end; first += lanes)
            {
                ref float block = ref Unsafe.Add(ref target, (nint)(first / lanes) * blockFloats);
                ref float rows = ref Unsafe.Add(ref source, (nint)first * columns);
                int i = 0;
                for (; i + lanes <= columns; i += lanes)
                {
                    if (lanes == 16)
                    {
                        Transpose16x16.Run(ref Unsafe.Add(ref rows, i), columns, ref Unsafe.Add(ref block, (nint)i * lanes), lanes);
                    }
                    else
                    {
                        Transpose8x8.Run(ref Unsafe.Add(ref rows, i), columns, ref Unsafe.Add(ref block, (nint)i * lanes), lanes);
                    }
                }

                for (; i < padded; i++)
                {
                    for (int t = 0; t < lanes; t++)
                    {
                        Unsafe.Add(ref block, ((nint)i * lanes) + t) = i < columns ? Unsafe.Add(ref rows, ((nint)t * columns) + i) : 0f;
                    }
                }
            }
        }

        for (int t = first; t < end; t++)
        {
            ref float from = ref Unsafe.Add(ref source, (nint)t * columns);
            ref float to = ref Unsafe.Add(ref target, ((nint)(t / lanes) * blockFloats) + (t % lanes));
            int i = 0;
            for (; i < columns; i++)
            {
                Unsafe.Add(ref to, (nint)i * lanes) = Unsafe.Add(ref from, i);
            }

            for (; i < padded; i++)
            {
                Unsafe.Add(ref to, (nint)i * lanes) = 0f;
            }
        }
    }

    /// <summary>Zeroes the lanes of the last block past <paramref name="tokens"/> tokens.</summary>
    public static void ClearPadding(KernelPath path, int columns, int tokens, Span<float> blocks)
    {
        int lanes = Lanes(path), padded = F32Panel.ColumnQuads(columns) * 4, used = tokens % lanes;
        if (used == 0)
        {
            return;
        }

        Span<float> last = blocks.Slice((tokens / lanes) * BlockFloats(path, columns), BlockFloats(path, columns));
        for (int i = 0; i < padded; i++)
        {
            last.Slice((i * lanes) + used, lanes - used).Clear();
        }
    }
}
