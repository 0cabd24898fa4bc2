using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// The minimums' share of a product with Q4_1 or Q5_1 weights. A value of such a block is q × d + m; the CPU multiplies
/// the codes q with scale d as a Q8_0 matrix (<c>LegacyQuantBlocks.SplitMinimums</c>), and each row then takes
/// Σ_b m[b] × Σ_{i in b} x[i] here, as ggml's vec_dot_q4_1_q8_1 and vec_dot_q5_1_q8_1 add m × (the activation block's
/// sum) per block. Where the codes meet the activations rounded to 8 bits (Q8_0, <see cref="Q8Activations"/>), the block
/// sums are those of the rounded activations too (scale × Σ codes, as ggml's q8_1 sum): the product is then Σ w × x̂ for the
/// stored weights w = q × d + m, whose rounding error Σ w × (x̂ - x) is that of Q8_0 or Q4_0. Sums of the f32 activations
/// instead left Σ q × d × (x̂ - x), with q × d all of one sign and up to twice |w|: twice the error against llama.cpp's
/// logits (tiny-qwen2 in Q4_1 and Q5_1, against the same numbers in f32). Where the codes meet f32 activations (Q8_0's
/// float panels), the sums are of the f32 values. (Q2_K, d × sc × q - dmin × m per 16 values, was split the same way into
/// a Q6_K matrix and a minimum per 16 values, 274 bytes a super-block against the file's 84; it now runs as stored:
/// KQuantIntegerKernel.Q2K.)
/// </summary>
/// <remarks>
/// The minimums lie in groups of 16 rows (<see cref="Index"/>), so a chunk of rows reads them in one run and a group's
/// running sums stay in registers over the blocks. Laid out block by block for the whole matrix (<c>[block][row]</c>),
/// each chunk read a short stretch in each of cols / 32 places, and a Q5_K_M Qwen2.5-0.5B (its 896-wide matrices in
/// Q5_1) decoded at 1.48-1.89x llama.cpp's speed against 1.94-2.18x when those matrices were requantized to Q8_0 (lossy);
/// in groups, 1.72-1.92x against 1.79-2.23x, prefill of 512 tokens 4.29-4.64x against 4.24-4.99x (2 threads, Zen 5, 3
/// alternating runs of 3 rounds each: bench/results).
/// </remarks>
internal static class BlockMinimums
{
    /// <summary>Values per block of Q4_1 and Q5_1, whose sums <see cref="BlockSums(ReadOnlySpan{float}, int, int, int, Span{float})"/> and <see cref="BlockSums(Q8Row, Span{float})"/> take.</summary>
    public const int BlockValues = 32;

    /// <summary>
    /// The sums of every 32-value block of tokens [<paramref name="first"/>, <paramref name="end"/>) of
    /// <paramref name="x"/> (rows of <paramref name="cols"/>) into <paramref name="sums"/> (<c>[token][block]</c>). The
    /// same order on every path: four 8-lane partial sums added pairwise, then across their lanes.
    /// </summary>
    public static void BlockSums(ReadOnlySpan<float> x, int cols, int first, int end, Span<float> sums)
    {
        int blocks = cols / BlockValues;
        for (int t = first; t < end; t++)
        {
            for (int b = 0; b < blocks; b++)
            {
                ref float block = ref Unsafe.AsRef(in x[(t * cols) + (b * BlockValues)]);
                Vector256<float> sum = (Vector256.LoadUnsafe(ref block) + Vector256.LoadUnsafe(ref block, 8))
                    + (Vector256.LoadUnsafe(ref block, 16) + Vector256.LoadUnsafe(ref block, 24));
                sums[(t * blocks) + b] = Vector256.Sum(sum);
            }
        }
    }

    /// <summary>
    /// The sums of every block of one token's 8-bit activations as their codes stand for them: scale × Σ codes (exact:
    /// the codes' sum is an integer of at most 4064 in size).
    /// </summary>
    public static void BlockSums(Q8Row row, Span<float> sums)
    {
        for (int b = 0; b < row.Scales.Length; b++)
        {
            int sum = 0;
            foreach (sbyte code in row.Codes.Slice(b * BlockValues, BlockValues))
            {
                sum += code;
            }

            sums[b] = row.Scales[b] * sum;
        }
    }

    /// <summary>Rows whose minimums lie together, block after block (<see cref="Index"/>).</summary>
    public const int GroupRows = 16;

    /// <summary>
    /// Where row <paramref name="row"/>'s minimum of block <paramref name="block"/> lies among a matrix's (of
    /// <paramref name="blocks"/> blocks a row): groups of <see cref="GroupRows"/> rows one after another, within a group
    /// block after block, each block's for the group's rows together (<c>[row / 16][block][row % 16]</c>; the last group
    /// padded to 16). A chunk of rows then reads its minimums in one run, and a group's block is one 64-byte vector.
    /// </summary>
    public static long Index(int row, int block, int blocks) => ((long)(row / GroupRows) * GroupRows * blocks) + (block * GroupRows) + (row % GroupRows);

    /// <summary>Floats a matrix of <paramref name="rows"/> rows of <paramref name="blocks"/> blocks takes (<see cref="Index"/>).</summary>
    public static long Floats(int rows, int blocks) => (long)(rows + GroupRows - 1) / GroupRows * GroupRows * blocks;

    /// <summary>
    /// y[t × rows + r] += Σ_b minimum(r, b) × sums[t × blocks + b] for rows [<paramref name="start"/>, <paramref name="end"/>)
    /// and every token, each row's blocks in order by fused multiply-adds (so every path gives <see cref="KernelPath.Scalar"/>'s
    /// bits); a whole group of rows at once in vectors held across the blocks.
    /// </summary>
    public static unsafe void Add(KernelPath path, float* minimums, int rows, int blocks, ReadOnlySpan<float> sums, int tokens, Span<float> y, int start, int end)
    {
        if (start < 0 || end > rows || start > end || sums.Length < tokens * blocks || y.Length < ((tokens - 1) * rows) + end)
        {
            throw new ArgumentException($"block minimums of rows {start}..{end} of {rows}, {blocks} blocks, {tokens} tokens: {sums.Length} sums, {y.Length} results");
        }

        bool wide = path == KernelPath.Vector512 && Vector512.IsHardwareAccelerated;
        bool vector = wide || (path != KernelPath.Scalar && Fma.IsSupported);
        for (int t = 0; t < tokens; t++)
        {
            ref float yt = ref Unsafe.Add(ref MemoryMarshal.GetReference(y), t * rows);
            ref float s = ref Unsafe.AsRef(in sums[t * blocks]);
            int r = start;
            while (r < end)
            {
                float* group = minimums + Index(r - (r % GroupRows), 0, blocks);
                if (vector && r % GroupRows == 0 && r + GroupRows <= end)
                {
                    if (wide)
                    {
                        Vector512<float> acc = Vector512.LoadUnsafe(ref yt, (nuint)r);
                        for (int b = 0; b < blocks; b++)
                        {
                            acc = Vector512.FusedMultiplyAdd(Vector512.Load(group + (b * GroupRows)), Vector512.Create(Unsafe.Add(ref s, b)), acc);
                        }

                        acc.StoreUnsafe(ref yt, (nuint)r);
                    }
                    else
                    {
                        Vector256<float> lo = Vector256.LoadUnsafe(ref yt, (nuint)r), hi = Vector256.LoadUnsafe(ref yt, (nuint)(r + 8));
                        for (int b = 0; b < blocks; b++)
                        {
                            Vector256<float> sum = Vector256.Create(Unsafe.Add(ref s, b));
                            lo = Vector256.FusedMultiplyAdd(Vector256.Load(group + (b * GroupRows)), sum, lo);
                            hi = Vector256.FusedMultiplyAdd(Vector256.Load(group + (b * GroupRows) + 8), sum, hi);
                        }

                        lo.StoreUnsafe(ref yt, (nuint)r);
                        hi.StoreUnsafe(ref yt, (nuint)(r + 8));
                    }

                    r += GroupRows;
                    continue;
                }

                // A row alone (the scalar path, and rows outside whole groups): the same multiply-adds in the same order.
                float value = Unsafe.Add(ref yt, r);
                for (int b = 0; b < blocks; b++)
                {
                    value = MathF.FusedMultiplyAdd(group[(b * GroupRows) + (r % GroupRows)], Unsafe.Add(ref s, b), value);
                }

                Unsafe.Add(ref yt, r) = value;
                r++;
            }
        }
    }
}
