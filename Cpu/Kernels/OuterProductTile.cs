using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using V256 = System.Runtime.Intrinsics.Vector256;
using V512 = System.Runtime.Intrinsics.Vector512;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// The inner block of an f32 matrix product when many tokens share the weights (prefill, a big batch's decode step): all
/// <see cref="Rows"/> rows of an <see cref="F32Panel"/> against <see cref="Tokens"/> tokens (one block of
/// <see cref="TokenBlocks"/> on the 512-bit path, two of 8 on the 256-bit one), as outer products. A vector holds one row's
/// sums for the 16 or 8 tokens of a block; at each column the block's activations are one vector load and each row's weight
/// is broadcast into a multiply-add, so 16 multiply-adds take 1 vector load and 16 scalar loads, all from L1 (a 64-byte
/// line of the panel or of the activations serves 16 of them).
/// </summary>
/// <remarks>
/// It replaced a 4 × 4 tile of dot products (<see cref="GemmTile"/>, still the attention's), whose 8 vector loads per 16
/// multiply-adds came from L2 once a panel outgrew L1, and which reduced its 16 accumulators across lanes at the end.
/// Measured on one Intel Xeon core (Emerald Rapids; its peak is ~93 G multiply-adds/s), BF16 products through
/// <see cref="MatMul.Rows{TW}"/>, G multiply-adds/s, 4 × 4 tiles → these: 16 tokens × 896 × 896 13.5 → 40, 4864 × 896
/// 17.8 → 26-31, 896 × 4864 20.2 → 29-31; 128 tokens × 896 × 896 29 → 67-71; 512 × 4864 × 896 28 → 40-58 (noisy). Qwen2.5-0.5B's
/// shape on both cores: a 16-sequence decode step 62-73 → 93-96 tokens/s, a 512-token prefill 126-129 → 181-197. Both
/// operands are laid out so that every load is a constant offset from one of two pointers: 16 row pointers would not fit
/// in registers. Each sum runs along k in order in one lane, added into the tile's running sum every <see cref="ColumnBlock"/>
/// columns (so rounding grows with the block, not with k); the scalar reference makes the same operations in the same
/// order, so every path gives the same bits.
/// <para>
/// AVX2 has 16 vector registers, so the 256-bit path cannot hold 16 rows' sums. It first took half a panel against one
/// block (8 accumulators, each 4 dependent multiply-adds per column quad: barely enough chains to cover the multiply-add's
/// latency on two ports). It now takes 6 rows (6, 6, then 4: <see cref="Vector256Pair{TRows}"/>) against two blocks: 12
/// accumulators, and one broadcast serves two multiply-adds, as in BLIS's 6 × 16 AVX2 kernel. Measured on the Xeon with
/// AVX-512 hidden, 16 rows × 64 tokens × 896 and 16 × 512 × 4864 (activations from L2 and L3), G multiply-adds × 2/s
/// (max and 75th percentile of 30 alternating runs): 72/66 → 79/75 and 63/59 → 72/68. A loop over single columns
/// instead of column quads gained half as much: its address arithmetic took as many instructions as its multiply-adds.
/// Qwen2.5-0.5B's Q8_0 pp512 prefill on one core, median of 8 alternating runs: 58 → 64 tokens/s, which took it from
/// 0.91-0.97x llama.cpp's avx2 build to 1.06-1.07x (1.12-1.20x on two cores).
/// </para>
/// </remarks>
internal static class OuterProductTile
{
    /// <summary>Weight rows in a tile: a panel's.</summary>
    public const int Rows = F32Panel.Rows;

    /// <summary>Tokens a tile covers, and the stride of its sums: a 512-bit block, or two blocks of 8 lanes.</summary>
    public const int Tokens = 16;

    /// <summary>Columns summed in registers before their sums are added into the running sums.</summary>
    public const int ColumnBlock = 256;

    /// <summary>Blocks of <see cref="TokenBlocks"/> in a whole tile on <paramref name="path"/>: 1 of 16 lanes, else 2 of 8.</summary>
    public static int Blocks(KernelPath path) => Tokens / TokenBlocks.Lanes(path);

    /// <summary>
    /// sums[n × <see cref="Tokens"/> + t] = Σ_k panel row n × token t, over <paramref name="columnQuads"/> × 4 columns, for
    /// every row n &lt; <see cref="Rows"/> and token t of the <paramref name="blocks"/> blocks (at most
    /// <see cref="Blocks"/>(<paramref name="path"/>)) of <see cref="TokenBlocks"/> that <paramref name="tokens"/> starts with;
    /// the sums of the tokens past them are left as they were. <paramref name="panel"/> is an <see cref="F32Panel"/>.
    /// <paramref name="next"/> (the stored rows of the next panel, or empty) is prefetched a little at each column quad: a
    /// panel's 16 rows are read at once, in runs too short for the hardware prefetchers (a 4864 × 896 BF16 product of 16
    /// tokens waited on them for most of its time).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Run(KernelPath path, ReadOnlySpan<float> panel, ReadOnlySpan<float> tokens, int blocks, int columnQuads, Span<float> sums, ReadOnlySpan<byte> next = default)
    {
        int lanes = TokenBlocks.Lanes(path), blockFloats = columnQuads * 4 * lanes;
        if (blocks < 1 || blocks > Blocks(path) || panel.Length < columnQuads * 4 * Rows || tokens.Length < blocks * blockFloats || sums.Length < Rows * Tokens)
        {
            throw new ArgumentException($"a tile of {blocks} blocks of {lanes} tokens (at most {Blocks(path)}) by {columnQuads * 4} columns needs {columnQuads * 4 * Rows} panel floats, {blocks * blockFloats} token floats and {Rows * Tokens} sums; got {panel.Length}, {tokens.Length} and {sums.Length}");
        }

        ref float w = ref MemoryMarshal.GetReference(panel);
        ref float x = ref MemoryMarshal.GetReference(tokens);
        ref float s = ref MemoryMarshal.GetReference(sums);
        ref byte ahead = ref MemoryMarshal.GetReference(next);
        int linesPerQuad = columnQuads == 0 ? 0 : (next.Length + (64 * columnQuads) - 1) / (64 * columnQuads);
        switch (path)
        {
            case KernelPath.Vector512:
                Vector512(ref w, ref x, columnQuads, ref s, ref ahead, linesPerQuad);
                break;
            case KernelPath.Vector256 when blocks == 2:
                Vector256Pair<SixRows>(ref w, ref x, blockFloats, columnQuads, ref s, ref ahead, linesPerQuad);
                Vector256Pair<SixRows>(ref Unsafe.Add(ref w, 6 * 4), ref x, blockFloats, columnQuads, ref Unsafe.Add(ref s, 6 * Tokens), ref ahead, 0);
                Vector256Pair<FourRows>(ref Unsafe.Add(ref w, 12 * 4), ref x, blockFloats, columnQuads, ref Unsafe.Add(ref s, 12 * Tokens), ref ahead, 0);
                break;
            case KernelPath.Vector256:
                Vector256Half(ref w, ref x, columnQuads, ref s, ref ahead, linesPerQuad);
                Vector256Half(ref Unsafe.Add(ref w, 8 * 4), ref x, columnQuads, ref Unsafe.Add(ref s, 8 * Tokens), ref ahead, 0);
                break;
            default:
                for (int b = 0; b < blocks; b++)
                {
                    Reference(ref w, ref Unsafe.Add(ref x, b * blockFloats), columnQuads, lanes, ref Unsafe.Add(ref s, b * lanes));
                }

                break;
        }
    }

    /// <summary>
    /// The plain loops the vector tiles are checked against, in their order of operations: one block of
    /// <paramref name="lanes"/> tokens, row n's sum for token t at sums[n × <see cref="Tokens"/> + t].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Reference(ref float panel, ref float tokens, int columnQuads, int lanes, ref float sums)
    {
        int columns = columnQuads * 4;
        for (int n = 0; n < Rows; n++)
        {
            for (int t = 0; t < lanes; t++)
            {
                float sum = 0;
                for (int from = 0; from < columns; from += ColumnBlock)
                {
                    float block = 0;
                    for (int i = from; i < Math.Min(from + ColumnBlock, columns); i++)
                    {
                        float weight = Unsafe.Add(ref panel, (i / 4 * 4 * Rows) + (n * 4) + (i % 4));
                        block = MathF.FusedMultiplyAdd(Unsafe.Add(ref tokens, (i * lanes) + t), weight, block);
                    }

                    sum += block;
                }

                Unsafe.Add(ref sums, (n * Tokens) + t) = sum;
            }
        }
    }

    /// <summary>16 rows × 16 tokens: 16 accumulators, 4 activation vectors (a column quad) and a broadcast.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Vector512(ref float panel, ref float tokens, int columnQuads, ref float sums, ref byte next, int linesPerQuad)
    {
        for (int n = 0; n < Rows; n++)
        {
            V512.StoreUnsafe(Vector512<float>.Zero, ref sums, (nuint)(n * Tokens));
        }

        for (int from = 0; from < columnQuads; from += ColumnBlock / 4)
        {
            int end = Math.Min(from + (ColumnBlock / 4), columnQuads);
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
            Vector512<float> a8 = default, a9 = default, a10 = default, a11 = default, a12 = default, a13 = default, a14 = default, a15 = default;
            for (int q = from; q < end; q++)
            {
                Prefetch.Lines(ref next, q * linesPerQuad, (q + 1) * linesPerQuad);
                ref float x = ref Unsafe.Add(ref tokens, q * 4 * 16);
                ref float w = ref Unsafe.Add(ref panel, q * 4 * Rows);
                Vector512<float> x0 = V512.LoadUnsafe(ref x), x1 = V512.LoadUnsafe(ref x, 16), x2 = V512.LoadUnsafe(ref x, 32), x3 = V512.LoadUnsafe(ref x, 48);
                a0 = Quad(a0, x0, x1, x2, x3, ref w);
                a1 = Quad(a1, x0, x1, x2, x3, ref Unsafe.Add(ref w, 4));
                a2 = Quad(a2, x0, x1, x2, x3, ref Unsafe.Add(ref w, 8));
                a3 = Quad(a3, x0, x1, x2, x3, ref Unsafe.Add(ref w, 12));
                a4 = Quad(a4, x0, x1, x2, x3, ref Unsafe.Add(ref w, 16));
                a5 = Quad(a5, x0, x1, x2, x3, ref Unsafe.Add(ref w, 20));
                a6 = Quad(a6, x0, x1, x2, x3, ref Unsafe.Add(ref w, 24));
                a7 = Quad(a7, x0, x1, x2, x3, ref Unsafe.Add(ref w, 28));
                a8 = Quad(a8, x0, x1, x2, x3, ref Unsafe.Add(ref w, 32));
                a9 = Quad(a9, x0, x1, x2, x3, ref Unsafe.Add(ref w, 36));
                a10 = Quad(a10, x0, x1, x2, x3, ref Unsafe.Add(ref w, 40));
                a11 = Quad(a11, x0, x1, x2, x3, ref Unsafe.Add(ref w, 44));
                a12 = Quad(a12, x0, x1, x2, x3, ref Unsafe.Add(ref w, 48));
                a13 = Quad(a13, x0, x1, x2, x3, ref Unsafe.Add(ref w, 52));
                a14 = Quad(a14, x0, x1, x2, x3, ref Unsafe.Add(ref w, 56));
                a15 = Quad(a15, x0, x1, x2, x3, ref Unsafe.Add(ref w, 60));
            }

            Accumulate(ref sums, 0, a0); Accumulate(ref sums, 1, a1); Accumulate(ref sums, 2, a2); Accumulate(ref sums, 3, a3);
            Accumulate(ref sums, 4, a4); Accumulate(ref sums, 5, a5); Accumulate(ref sums, 6, a6); Accumulate(ref sums, 7, a7);
            Accumulate(ref sums, 8, a8); Accumulate(ref sums, 9, a9); Accumulate(ref sums, 10, a10); Accumulate(ref sums, 11, a11);
            Accumulate(ref sums, 12, a12); Accumulate(ref sums, 13, a13); Accumulate(ref sums, 14, a14); Accumulate(ref sums, 15, a15);
        }
    }

    /// <summary>8 rows (half a panel, whose rows are 4 floats apart in a quad) × one block of 8 tokens: a tile's last odd block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Vector256Half(ref float panel, ref float tokens, int columnQuads, ref float sums, ref byte next, int linesPerQuad)
    {
        for (int n = 0; n < 8; n++)
        {
            V256.StoreUnsafe(Vector256<float>.Zero, ref sums, (nuint)(n * Tokens));
        }

        for (int from = 0; from < columnQuads; from += ColumnBlock / 4)
        {
            int end = Math.Min(from + (ColumnBlock / 4), columnQuads);
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
            for (int q = from; q < end; q++)
            {
                Prefetch.Lines(ref next, q * linesPerQuad, (q + 1) * linesPerQuad);
                ref float x = ref Unsafe.Add(ref tokens, q * 4 * 8);
                ref float w = ref Unsafe.Add(ref panel, q * 4 * Rows);
                Vector256<float> x0 = V256.LoadUnsafe(ref x), x1 = V256.LoadUnsafe(ref x, 8), x2 = V256.LoadUnsafe(ref x, 16), x3 = V256.LoadUnsafe(ref x, 24);
                a0 = Quad(a0, x0, x1, x2, x3, ref w);
                a1 = Quad(a1, x0, x1, x2, x3, ref Unsafe.Add(ref w, 4));
                a2 = Quad(a2, x0, x1, x2, x3, ref Unsafe.Add(ref w, 8));
                a3 = Quad(a3, x0, x1, x2, x3, ref Unsafe.Add(ref w, 12));
                a4 = Quad(a4, x0, x1, x2, x3, ref Unsafe.Add(ref w, 16));
                a5 = Quad(a5, x0, x1, x2, x3, ref Unsafe.Add(ref w, 20));
                a6 = Quad(a6, x0, x1, x2, x3, ref Unsafe.Add(ref w, 24));
                a7 = Quad(a7, x0, x1, x2, x3, ref Unsafe.Add(ref w, 28));
            }

            Accumulate(ref sums, 0, a0); Accumulate(ref sums, 1, a1); Accumulate(ref sums, 2, a2); Accumulate(ref sums, 3, a3);
            Accumulate(ref sums, 4, a4); Accumulate(ref sums, 5, a5); Accumulate(ref sums, 6, a6); Accumulate(ref sums, 7, a7);
        }
    }

    /// <summary>
    /// 6 rows (<see cref="SixRows"/>; or the panel's last 4) × two blocks of 8 tokens (<paramref name="tokens"/> and
    /// <paramref name="blockFloats"/> after it): 12 accumulators, two activation vectors a column and a broadcast, 15 of
    /// AVX2's 16 registers; each row's weight feeds both blocks. The JIT compiles one body per row count, without the branch.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Vector256Pair<TRows>(ref float panel, ref float tokens, int blockFloats, int columnQuads, ref float sums, ref byte next, int linesPerQuad)
        where TRows : struct, IRowCount
    {
        for (int n = 0; n < TRows.Count; n++)
        {
            V256.StoreUnsafe(Vector256<float>.Zero, ref sums, (nuint)(n * Tokens));
            V256.StoreUnsafe(Vector256<float>.Zero, ref sums, (nuint)((n * Tokens) + 8));
        }

        ref float second = ref Unsafe.Add(ref tokens, blockFloats);
        for (int from = 0; from < columnQuads; from += ColumnBlock / 4)
        {
            int end = Math.Min(from + (ColumnBlock / 4), columnQuads);
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default;
            Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default, b4 = default, b5 = default;
            for (int q = from; q < end; q++)
            {
                Prefetch.Lines(ref next, q * linesPerQuad, (q + 1) * linesPerQuad);
                ref float x = ref Unsafe.Add(ref tokens, q * 4 * 8);
                ref float y = ref Unsafe.Add(ref second, q * 4 * 8);
                ref float w = ref Unsafe.Add(ref panel, q * 4 * Rows);
                Vector256<float> u, v, c;
                u = V256.LoadUnsafe(ref x, 0); v = V256.LoadUnsafe(ref y, 0);
                c = V256.Create(Unsafe.Add(ref w, 0)); a0 = V256.FusedMultiplyAdd(u, c, a0); b0 = V256.FusedMultiplyAdd(v, c, b0);
                c = V256.Create(Unsafe.Add(ref w, 4)); a1 = V256.FusedMultiplyAdd(u, c, a1); b1 = V256.FusedMultiplyAdd(v, c, b1);
                c = V256.Create(Unsafe.Add(ref w, 8)); a2 = V256.FusedMultiplyAdd(u, c, a2); b2 = V256.FusedMultiplyAdd(v, c, b2);
                c = V256.Create(Unsafe.Add(ref w, 12)); a3 = V256.FusedMultiplyAdd(u, c, a3); b3 = V256.FusedMultiplyAdd(v, c, b3);
                if (TRows.Count == 6)
                {
                    c = V256.Create(Unsafe.Add(ref w, 16)); a4 = V256.FusedMultiplyAdd(u, c, a4); b4 = V256.FusedMultiplyAdd(v, c, b4);
                    c = V256.Create(Unsafe.Add(ref w, 20)); a5 = V256.FusedMultiplyAdd(u, c, a5); b5 = V256.FusedMultiplyAdd(v, c, b5);
                }

                u = V256.LoadUnsafe(ref x, 8); v = V256.LoadUnsafe(ref y, 8);
                c = V256.Create(Unsafe.Add(ref w, 1)); a0 = V256.FusedMultiplyAdd(u, c, a0); b0 = V256.FusedMultiplyAdd(v, c, b0);
                c = V256.Create(Unsafe.Add(ref w, 5)); a1 = V256.FusedMultiplyAdd(u, c, a1); b1 = V256.FusedMultiplyAdd(v, c, b1);
                c = V256.Create(Unsafe.Add(ref w, 9)); a2 = V256.FusedMultiplyAdd(u, c, a2); b2 = V256.FusedMultiplyAdd(v, c, b2);
                c = V256.Create(Unsafe.Add(ref w, 13)); a3 = V256.FusedMultiplyAdd(u, c, a3); b3 = V256.FusedMultiplyAdd(v, c, b3);
                if (TRows.Count == 6)
                {
                    c = V256.Create(Unsafe.Add(ref w, 17)); a4 = V256.FusedMultiplyAdd(u, c, a4); b4 = V256.FusedMultiplyAdd(v, c, b4);
                    c = V256.Create(Unsafe.Add(ref w, 21)); a5 = V256.FusedMultiplyAdd(u, c, a5); b5 = V256.FusedMultiplyAdd(v, c, b5);
                }

                u = V256.LoadUnsafe(ref x, 16); v = V256.LoadUnsafe(ref y, 16);
                c = V256.Create(Unsafe.Add(ref w, 2)); a0 = V256.FusedMultiplyAdd(u, c, a0); b0 = V256.FusedMultiplyAdd(v, c, b0);
                c = V256.Create(Unsafe.Add(ref w, 6)); a1 = V256.FusedMultiplyAdd(u, c, a1); b1 = V256.FusedMultiplyAdd(v, c, b1);
                c = V256.Create(Unsafe.Add(ref w, 10)); a2 = V256.FusedMultiplyAdd(u, c, a2); b2 = V256.FusedMultiplyAdd(v, c, b2);
                c = V256.Create(Unsafe.Add(ref w, 14)); a3 = V256.FusedMultiplyAdd(u, c, a3); b3 = V256.FusedMultiplyAdd(v, c, b3);
                if (TRows.Count == 6)
                {
                    c = V256.Create(Unsafe.Add(ref w, 18)); a4 = V256.FusedMultiplyAdd(u, c, a4); b4 = V256.FusedMultiplyAdd(v, c, b4);
                    c = V256.Create(Unsafe.Add(ref w, 22)); a5 = V256.FusedMultiplyAdd(u, c, a5); b5 = V256.FusedMultiplyAdd(v, c, b5);
                }

                u = V256.LoadUnsafe(ref x, 24); v = V256.LoadUnsafe(ref y, 24);
                c = V256.Create(Unsafe.Add(ref w, 3)); a0 = V256.FusedMultiplyAdd(u, c, a0); b0 = V256.FusedMultiplyAdd(v, c, b0);
                c = V256.Create(Unsafe.Add(ref w, 7)); a1 = V256.FusedMultiplyAdd(u, c, a1); b1 = V256.FusedMultiplyAdd(v, c, b1);
                c = V256.Create(Unsafe.Add(ref w, 11)); a2 = V256.FusedMultiplyAdd(u, c, a2); b2 = V256.FusedMultiplyAdd(v, c, b2);
                c = V256.Create(Unsafe.Add(ref w, 15)); a3 = V256.FusedMultiplyAdd(u, c, a3); b3 = V256.FusedMultiplyAdd(v, c, b3);
                if (TRows.Count == 6)
                {
                    c = V256.Create(Unsafe.Add(ref w, 19)); a4 = V256.FusedMultiplyAdd(u, c, a4); b4 = V256.FusedMultiplyAdd(v, c, b4);
                    c = V256.Create(Unsafe.Add(ref w, 23)); a5 = V256.FusedMultiplyAdd(u, c, a5); b5 = V256.FusedMultiplyAdd(v, c, b5);
                }
            }

            Accumulate(ref sums, 0, a0, b0); Accumulate(ref sums, 1, a1, b1); Accumulate(ref sums, 2, a2, b2); Accumulate(ref sums, 3, a3, b3);
            if (TRows.Count == 6)
            {
                Accumulate(ref sums, 4, a4, b4); Accumulate(ref sums, 5, a5, b5);
            }
        }
    }

    /// <summary>Rows a <see cref="Vector256Pair{TRows}"/> takes, known when the JIT compiles it.</summary>
    private interface IRowCount
    {
        static abstract int Count { get; }
    }

    private readonly struct SixRows : IRowCount
    {
        public static int Count => 6;
    }

    private readonly struct FourRows : IRowCount
    {
        public static int Count => 4;
    }

    /// <summary>
    /// The sums of <see cref="Run"/> ([row][token]) as byToken[token × <see cref="Rows"/> + row], so each token's results are a
    /// contiguous run to copy to its output row: a 16 × 16 transpose in registers (four 8 × 8 on the 256-bit path; 64 shuffles against
    /// the tile's thousands of multiply-adds; one element at a time, the copy took a tenth of a 896-wide prefill's products).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ByToken(KernelPath path, ReadOnlySpan<float> sums, Span<float> byToken)
    {
        if (sums.Length < Rows * Tokens || byToken.Length < Rows * Tokens)
        {
            throw new ArgumentException($"{Rows} rows of {Tokens} sums need {Rows * Tokens} floats each way; got {sums.Length} and {byToken.Length}");
        }

        ref float source = ref MemoryMarshal.GetReference(sums);
        ref float target = ref MemoryMarshal.GetReference(byToken);
        if (path == KernelPath.Vector512 && Avx512F.IsSupported)
        {
            Transpose16x16.Run(ref source, Tokens, ref target, Rows);
            return;
        }

        if (path == KernelPath.Vector256 && Avx.IsSupported)
        {
            // Rows 0-7 and 8-15 of tokens 0-7, then of tokens 8-15, each 8 × 8.
            for (int t = 0; t < Tokens; t += 8)
            {
                for (int n = 0; n < Rows; n += 8)
                {
                    Transpose8x8.Run(ref Unsafe.Add(ref source, (n * Tokens) + t), Tokens, ref Unsafe.Add(ref target, (t * Rows) + n), Rows);
                }
            }

            return;
        }

        for (int n = 0; n < Rows; n++)
        {
            for (int t = 0; t < Tokens; t++)
            {
                byToken[(t * Rows) + n] = sums[(n * Tokens) + t];
            }
        }
    }

    /// <summary>One row's four columns of a quad into its accumulator, in column order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Quad(Vector512<float> a, Vector512<float> x0, Vector512<float> x1, Vector512<float> x2, Vector512<float> x3, ref float w)
    {
        a = V512.FusedMultiplyAdd(x0, V512.Create(w), a);
        a = V512.FusedMultiplyAdd(x1, V512.Create(Unsafe.Add(ref w, 1)), a);
        a = V512.FusedMultiplyAdd(x2, V512.Create(Unsafe.Add(ref w, 2)), a);
        return V512.FusedMultiplyAdd(x3, V512.Create(Unsafe.Add(ref w, 3)), a);
    }

    /// <summary><see cref="Quad(Vector512{float}, Vector512{float}, Vector512{float}, Vector512{float}, Vector512{float}, ref float)"/> on 256-bit vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Quad(Vector256<float> a, Vector256<float> x0, Vector256<float> x1, Vector256<float> x2, Vector256<float> x3, ref float w)
    {
        a = V256.FusedMultiplyAdd(x0, V256.Create(w), a);
        a = V256.FusedMultiplyAdd(x1, V256.Create(Unsafe.Add(ref w, 1)), a);
        a = V256.FusedMultiplyAdd(x2, V256.Create(Unsafe.Add(ref w, 2)), a);
        return V256.FusedMultiplyAdd(x3, V256.Create(Unsafe.Add(ref w, 3)), a);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Accumulate(ref float sums, int row, Vector512<float> block) =>
        (V512.LoadUnsafe(ref sums, (nuint)(row * Tokens)) + block).StoreUnsafe(ref sums, (nuint)(row * Tokens));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Accumulate(ref float sums, int row, Vector256<float> block) =>
        (V256.LoadUnsafe(ref sums, (nuint)(row * Tokens)) + block).StoreUnsafe(ref sums, (nuint)(row * Tokens));

    /// <summary>Row <paramref name="row"/>'s sums for both blocks (tokens 0-7 and 8-15) plus <paramref name="first"/> and <paramref name="second"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Accumulate(ref float sums, int row, Vector256<float> first, Vector256<float> second)
    {
        Accumulate(ref sums, row, first);
        Accumulate(ref Unsafe.Add(ref sums, 8), row, second);
    }
}
