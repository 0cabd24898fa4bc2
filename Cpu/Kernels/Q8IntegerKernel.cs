using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using QwenSharp.Formats;
using QwenSharp.Numerics;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Q8_0 and Q4_0 weights (and IQ4_NL's, Q4_0's layout with a table: <see cref="Iq4NlRows"/>) against activations quantized as
/// Q8_0 (<see cref="Q8Activations"/>), as ggml's vec_dot_q8_0_q8_0 and vec_dot_q4_0_q8_0: per block of 32 the signed weight codes (Q4_0's nibbles less 8) times the
/// activation codes, summed exactly in integers (the sign moved onto the activations so vpmaddubsw can multiply
/// |w| by them, then vpmaddwd sums pairs to 32 bits), then one float multiply-add by the two scales into float vectors
/// summed once per row. Against the kernel that widened Q8_0 codes to f32, this does half the work per block, and is
/// then light enough that the hardware prefetchers alone left it waiting on memory: one thread streamed a 151936 × 896
/// Q8_0 matrix at 10.5 GB/s without <see cref="Prefetch"/> and 21.5 with it (Zen 4).
/// </summary>
/// <remarks>
/// Q4_0's codes go in unsigned (0..15) and its offset of 8 comes from the activations (<see cref="Q8Row.Offsets"/>, the
/// product's starting lanes), which saves the subtraction and the sign moves. The 512-bit path runs the 256-bit kernel,
/// with AVX-VNNI's vpdpbusd (one instruction for vpmaddubsw, vpmaddwd and the add) where the CPU has it: a block is 32
/// codes, so a 64-byte product would need two blocks' codes joined and their scales spread, and Zen 4 runs 512-bit
/// integer work as two 256-bit halves anyway. The 256-bit path keeps vpmaddubsw/vpmaddwd, so one machine tests both.
/// </remarks>
internal static class Q8IntegerKernel
{
    private const int Values = Q8Activations.BlockValues;
    private const int Q8_0Bytes = 34;
    private const int Q4_0Bytes = 18;

    /// <summary>Rows per block of a many-token product (a multiple of four): 64 rows of a 7B model's 3584 values are 126 KB of Q4_0.</summary>
    private const int GemmRowBlock = 64;

    /// <summary>One row's dot product with one token's activations (the tests' entry; the model calls <see cref="DotRows"/>).</summary>
    public static float Dot(KernelPath path, DType type, ReadOnlySpan<byte> row, Q8Row x)
    {
        Span<float> result = stackalloc float[1];
        DotRows(path, type, row, 1, x, result);
        return result[0];
    }

    /// <summary><paramref name="count"/> consecutive rows dotted with one token's activations into <paramref name="results"/>.</summary>
    public static unsafe void DotRows(KernelPath path, DType type, ReadOnlySpan<byte> rows, int count, Q8Row x, Span<float> results)
    {
        int blocks = x.Codes.Length / Values;
        int rowBytes = blocks * (type == DType.Q8_0 ? Q8_0Bytes : Q4_0Bytes);
        if (type is not (DType.Q8_0 or DType.Q4_0 or DType.IQ4_NL) || rows.Length < (long)count * rowBytes || results.Length < count)
        {
            throw new ArgumentException($"{count} {type} rows of {blocks} blocks need {(long)count * rowBytes} bytes and {count} results; got {rows.Length} and {results.Length}");
        }

        RowOperands operands = Operands(x, blocks);
        bool vnni = ByteDots.Vnni(path);

        // Pinned, so that Q4_0's block load can be a pointer's broadcast (BroadcastVector128ToVector256); the weights are
        // usually the mapped file, which never moves.
        fixed (byte* pinned = rows)
        {
            Run(path, type, ref *pinned, rowBytes, count, operands, vnni, ref MemoryMarshal.GetReference(results));
        }
    }

    private static void Run(KernelPath path, DType type, ref byte w, int rowBytes, int count, scoped in RowOperands operands, bool vnni, ref float y)
    {
        if (path == KernelPath.Scalar || !Avx2.IsSupported || !Fma.IsSupported)
        {
            for (int r = 0; r < count; r++)
            {
                Unsafe.Add(ref y, r) = Scalar(type, ref Unsafe.Add(ref w, r * rowBytes), operands);
            }
        }
        else if (Prefetch.InDecode(type))
        {
            RunVector<WithPrefetch>(path, type, ref w, rowBytes, count, operands, vnni, ref y);
        }
        else
        {
            RunVector<WithoutPrefetch>(path, type, ref w, rowBytes, count, operands, vnni, ref y);
        }
    }

    /// <summary><see cref="Run"/>'s vector kernels, prefetching or not.</summary>
    private static void RunVector<TPrefetch>(KernelPath path, DType type, ref byte w, int rowBytes, int count, scoped in RowOperands operands, bool vnni, ref float y)
        where TPrefetch : struct, IPrefetchChoice
    {
        if (type == DType.Q8_0)
        {
            if (RowsApart.PayQ8_0(path))
            {
                if (vnni)
                {
                    RowGroups.RunPaired<Row<Q8_0Block<Vnni>, TPrefetch>>(ref w, rowBytes, count, operands, ref y);
                }
                else
                {
                    RowGroups.RunPaired<Row<Q8_0Block<PairSums>, TPrefetch>>(ref w, rowBytes, count, operands, ref y);
                }
            }
            else if (vnni)
            {
                RowGroups.Run<Row<Q8_0Block<Vnni>, TPrefetch>>(ref w, rowBytes, count, operands, ref y);
            }
            else
            {
                RowGroups.Run<Row<Q8_0Block<PairSums>, TPrefetch>>(ref w, rowBytes, count, operands, ref y);
            }
        }
        else if (type == DType.IQ4_NL)
        {
            if (vnni)
            {
                Rows<Iq4NlBlock<Vnni>, TPrefetch>(ref w, rowBytes, count, operands, ref y);
            }
            else
            {
                Rows<Iq4NlBlock<PairSums>, TPrefetch>(ref w, rowBytes, count, operands, ref y);
            }
        }
        else if (vnni)
        {
            Rows<Q4_0Block<Vnni>, TPrefetch>(ref w, rowBytes, count, operands, ref y);
        }
        else
        {
            Rows<Q4_0Block<PairSums>, TPrefetch>(ref w, rowBytes, count, operands, ref y);
        }
    }

    /// <summary>
    /// Q8_0 rows against two tokens at once (a decode step of a few sequences): each row is read from memory once for both,
    /// and each token's sums are bit for bit <see cref="DotRows"/>'s (the same two accumulators per row, the same four-row
    /// horizontal sums). Dotting the rows once per token re-read them from L2 for every token after the first: one, two
    /// and four sequences of the 0.5B shape decoded 58, 76 and 86 tokens/s in all (2 threads).
    /// </summary>
    public static unsafe void DotRowsTwoTokens(KernelPath path, ReadOnlySpan<byte> rows, int count, Q8Row a, Q8Row b, Span<float> ya, Span<float> yb)
    {
        int blocks = a.Codes.Length / Values;
        int rowBytes = blocks * Q8_0Bytes;
        if (b.Codes.Length != a.Codes.Length || rows.Length < (long)count * rowBytes || ya.Length < count || yb.Length < count)
        {
            throw new ArgumentException($"{count} Q8_0 rows of {blocks} blocks against two tokens need {(long)count * rowBytes} bytes and {count} results each; got {rows.Length}, {ya.Length} and {yb.Length}");
        }

        if (path == KernelPath.Scalar || !Avx2.IsSupported || !Fma.IsSupported)
        {
            DotRows(path, DType.Q8_0, rows, count, a, ya);
            DotRows(path, DType.Q8_0, rows, count, b, yb);
            return;
        }

        RowOperands first = Operands(a, blocks), second = Operands(b, blocks);
        fixed (byte* pinned = rows)
        {
            if (ByteDots.Vnni(path))
            {
                RowsTwoTokens<Q8_0Block<Vnni>>(ref *pinned, rowBytes, count, first, second, ref MemoryMarshal.GetReference(ya), ref MemoryMarshal.GetReference(yb));
            }
            else
            {
                RowsTwoTokens<Q8_0Block<PairSums>>(ref *pinned, rowBytes, count, first, second, ref MemoryMarshal.GetReference(ya), ref MemoryMarshal.GetReference(yb));
            }
        }
    }

    /// <summary><see cref="RowGroups.Run{TKernel}"/> with <see cref="PartialTwoTokens{TBlock}"/>: four rows' sums share their vhaddps, per token.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowsTwoTokens<TBlock>(ref byte w, int rowBytes, int count, scoped in RowOperands a, scoped in RowOperands b, ref float ya, ref float yb)
        where TBlock : IBlockProduct
    {
        int r = 0;
        for (; r + 4 <= count; r += 4)
        {
            (Vector128<float> a0, Vector128<float> b0) = PartialTwoTokens<TBlock>(ref Unsafe.Add(ref w, r * rowBytes), a, b);
            (Vector128<float> a1, Vector128<float> b1) = PartialTwoTokens<TBlock>(ref Unsafe.Add(ref w, (r + 1) * rowBytes), a, b);
            (Vector128<float> a2, Vector128<float> b2) = PartialTwoTokens<TBlock>(ref Unsafe.Add(ref w, (r + 2) * rowBytes), a, b);
            (Vector128<float> a3, Vector128<float> b3) = PartialTwoTokens<TBlock>(ref Unsafe.Add(ref w, (r + 3) * rowBytes), a, b);
            Sse3.HorizontalAdd(Sse3.HorizontalAdd(a0, a1), Sse3.HorizontalAdd(a2, a3)).StoreUnsafe(ref ya, (nuint)r);
            Sse3.HorizontalAdd(Sse3.HorizontalAdd(b0, b1), Sse3.HorizontalAdd(b2, b3)).StoreUnsafe(ref yb, (nuint)r);
        }

        for (; r < count; r++)
        {
            (Vector128<float> last, Vector128<float> lastB) = PartialTwoTokens<TBlock>(ref Unsafe.Add(ref w, r * rowBytes), a, b);
            Unsafe.Add(ref ya, r) = Vector128.Sum(last);
            Unsafe.Add(ref yb, r) = Vector128.Sum(lastB);
        }
    }

    /// <summary><see cref="Partial{TBlock}"/> for two tokens, each in its order; the row's blocks are read (and prefetched) once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector128<float> A, Vector128<float> B) PartialTwoTokens<TBlock>(ref byte w, scoped in RowOperands a, scoped in RowOperands b)
        where TBlock : IBlockProduct
    {
        ref float half = ref a.HalfTable;
        ref float scaleA = ref a.Scales, scaleB = ref b.Scales;
        ref sbyte codesA = ref a.Codes, codesB = ref b.Codes;
        ref byte block = ref w;
        NibbleSplit split = NibbleSplit.Create();
        Vector256<float> a0 = default, a1 = default, b0 = default, b1 = default;
        int k = 0;
        for (; k + 1 < a.Blocks; k += 2)
        {
            ref byte second = ref Unsafe.Add(ref block, TBlock.Bytes);
            PrefetchPair<TBlock>(ref block);
            float h0 = RowOperands.Half(ref half, ref block), h1 = RowOperands.Half(ref half, ref second);
            a0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TBlock.Product(ref block, Vector256.LoadUnsafe(ref codesA), default, split)), Vector256.Create(h0 * scaleA), a0);
            b0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TBlock.Product(ref block, Vector256.LoadUnsafe(ref codesB), default, split)), Vector256.Create(h0 * scaleB), b0);
            a1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TBlock.Product(ref second, Vector256.LoadUnsafe(ref Unsafe.Add(ref codesA, Values)), default, split)),
                Vector256.Create(h1 * Unsafe.Add(ref scaleA, 1)), a1);
            b1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TBlock.Product(ref second, Vector256.LoadUnsafe(ref Unsafe.Add(ref codesB, Values)), default, split)),
                Vector256.Create(h1 * Unsafe.Add(ref scaleB, 1)), b1);
            block = ref Unsafe.Add(ref block, 2 * TBlock.Bytes);
            codesA = ref Unsafe.Add(ref codesA, 2 * Values);
            codesB = ref Unsafe.Add(ref codesB, 2 * Values);
            scaleA = ref Unsafe.Add(ref scaleA, 2);
            scaleB = ref Unsafe.Add(ref scaleB, 2);
        }

        if (k < a.Blocks)
        {
            float h = RowOperands.Half(ref half, ref block);
            a0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TBlock.Product(ref block, Vector256.LoadUnsafe(ref codesA), default, split)), Vector256.Create(h * scaleA), a0);
            b0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TBlock.Product(ref block, Vector256.LoadUnsafe(ref codesB), default, split)), Vector256.Create(h * scaleB), b0);
        }

        Vector256<float> sumA = a0 + a1, sumB = b0 + b1;
        return (sumA.GetLower() + sumA.GetUpper(), sumB.GetLower() + sumB.GetUpper());
    }

    /// <summary>
    /// <see cref="Partial{TBlock}"/> of the rows at <paramref name="w"/> and <paramref name="apart"/> bytes on
    /// (<see cref="RowsApart"/>), each block's activation codes, offsets and scale loaded once for both; each row keeps its
    /// two accumulators and their order, so its sum is Partial's bit for bit. On Zen 5, Q8_0 rows from L2 took 0.66 ns a
    /// block against 0.77 row by row, and a Q8_0 Qwen2.5-0.5B decoded 58.4-63.1 tokens/s on one thread against 49.5-56.3
    /// (6 alternating pairs, each pair won; two threads alike, 95-102 either way: there the memory is the limit).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector128<float> First, Vector128<float> Second) TwoRowsPartial<TBlock, TPrefetch>(ref byte w, nint apart, scoped in RowOperands x)
        where TBlock : IBlockProduct
        where TPrefetch : struct, IPrefetchChoice
    {
        ref float half = ref x.HalfTable;
        ref float scale = ref x.Scales;
        ref sbyte codes = ref x.Codes;
        ref int offsets = ref x.Offsets;
        ref byte block = ref w;
        NibbleSplit split = NibbleSplit.Create();
        Vector256<float> a0 = default, a1 = default, b0 = default, b1 = default;
        int k = 0;
        for (; k + 1 < x.Blocks; k += 2)
        {
            ref byte second = ref Unsafe.Add(ref block, TBlock.Bytes);
            ref byte other = ref Unsafe.Add(ref block, apart);
            ref byte otherSecond = ref Unsafe.Add(ref second, apart);
            if (TPrefetch.Ahead)
            {
                PrefetchPair<TBlock>(ref block);
                PrefetchPair<TBlock>(ref other);
            }

            Vector256<sbyte> codes0 = Vector256.LoadUnsafe(ref codes), codes1 = Vector256.LoadUnsafe(ref Unsafe.Add(ref codes, Values));
            Vector256<int> start0 = Start<TBlock>(ref offsets, split), start1 = Start<TBlock>(ref Unsafe.Add(ref offsets, 8), split);
            float scale0 = scale, scale1 = Unsafe.Add(ref scale, 1);
            a0 = Accumulate<TBlock>(ref block, codes0, start0, scale0, ref half, split, a0);
            b0 = Accumulate<TBlock>(ref other, codes0, start0, scale0, ref half, split, b0);
            a1 = Accumulate<TBlock>(ref second, codes1, start1, scale1, ref half, split, a1);
            b1 = Accumulate<TBlock>(ref otherSecond, codes1, start1, scale1, ref half, split, b1);
            block = ref Unsafe.Add(ref block, 2 * TBlock.Bytes);
            codes = ref Unsafe.Add(ref codes, 2 * Values);
            offsets = ref Unsafe.Add(ref offsets, 16);
            scale = ref Unsafe.Add(ref scale, 2);
        }

        if (k < x.Blocks)
        {
            ref byte other = ref Unsafe.Add(ref block, apart);
            Vector256<sbyte> codes0 = Vector256.LoadUnsafe(ref codes);
            Vector256<int> start0 = Start<TBlock>(ref offsets, split);
            a0 = Accumulate<TBlock>(ref block, codes0, start0, scale, ref half, split, a0);
            b0 = Accumulate<TBlock>(ref other, codes0, start0, scale, ref half, split, b0);
        }

        Vector256<float> sumsA = TBlock.Unscaled(a0 + a1, split), sumsB = TBlock.Unscaled(b0 + b1, split);
        return (sumsA.GetLower() + sumsA.GetUpper(), sumsB.GetLower() + sumsB.GetUpper());
    }

    /// <summary>
    /// Weight code j of a block: Q8_0's int8, Q4_0's nibble less 8, or IQ4_NL's nibble's value in its table (low nibbles are
    /// values 0-15, high 16-31).
    /// </summary>
    private static int Code(DType type, ref byte block, int j)
    {
        if (type == DType.Q8_0)
        {
            return (sbyte)Unsafe.Add(ref block, 2 + j);
        }

        byte packed = Unsafe.Add(ref block, 2 + (j % 16));
        int nibble = j < 16 ? packed & 0xF : packed >> 4;
        return type == DType.IQ4_NL ? Iq4XsBlocks.NonLinearValues[nibble] : nibble - 8;
    }

    /// <summary>The reference: Σ_b d_w d_x Σ_j w_j x_j, block by block in order.</summary>
    private static float Scalar(DType type, ref byte w, scoped in RowOperands x)
    {
        int blockBytes = type == DType.Q8_0 ? Q8_0Bytes : Q4_0Bytes;
        float total = 0;
        for (int b = 0; b < x.Blocks; b++)
        {
            ref byte block = ref Unsafe.Add(ref w, b * blockBytes);
            int sumi = 0;
            for (int j = 0; j < Values; j++)
            {
                sumi += Code(type, ref block, j) * Unsafe.Add(ref x.Codes, (b * Values) + j);
            }

            total += RowOperands.Half(ref x.HalfTable, ref block) * Unsafe.Add(ref x.Scales, b) * sumi;
        }

        return total;
    }

    /// <summary>
    /// Q4_0 rows against the Q8_0 activations of a few tokens (a small batch's decode step): y[t × yStride + r] for every
    /// token t and row r. Four rows and two tokens at a time (<see cref="FourRowsTwoTokens"/>): each block's nibbles are
    /// split once for two tokens, and each token's sums are bit for bit <see cref="DotRows"/>'s, so a token's result does not
    /// depend on how many others share the step. A prefill multiplies integer panels instead (<see cref="QuantPanel"/>):
    /// this kernel's float work per row, block and token (convert, scale, accumulate) made it 0.89x llama.cpp's pp128 on
    /// one thread, where the panels apply a block's scale to eight rows at once (1.15x).
    /// </summary>
    public static unsafe void GemmRows(KernelPath path, ReadOnlySpan<byte> rows, int count, Q8Activations x, int tokens, Span<float> y, int yStride)
    {
        int blocks = x.Cols / Values;
        int rowBytes = blocks * Q4_0Bytes;
        if (rows.Length < (long)count * rowBytes || y.Length < ((long)(tokens - 1) * yStride) + count)
        {
            throw new ArgumentException($"{count} Q4_0 rows of {blocks} blocks need {(long)count * rowBytes} bytes; got {rows.Length}, and {y.Length} results for {tokens} tokens");
        }

        bool vnni = ByteDots.Vnni(path);
        int t = 0;
        if (path != KernelPath.Scalar && Avx2.IsSupported && Fma.IsSupported)
        {
            // Rows a quarter of the product apart, as DotRows reads them, in blocks that stay in L2 while every pair of
            // tokens passes over them (16 rows of each quarter; a 7B model's rows are 2 KB).
            int pairs = tokens / 2;
            int quarter = count / 4;
            fixed (byte* pinned = rows)
            {
                for (int r0 = 0; r0 < quarter; r0 += GemmRowBlock / 4)
                {
                    int n = Math.Min(GemmRowBlock / 4, quarter - r0);
                    for (int p = 0; p < pairs; p++)
                    {
                        RowOperands a = Operands(x.Row(2 * p), blocks), b = Operands(x.Row((2 * p) + 1), blocks);
                        ref float ya = ref y[2 * p * yStride], yb = ref y[((2 * p) + 1) * yStride];
                        if (vnni)
                        {
                            TwoTokens<Vnni>(ref *pinned, rowBytes, quarter, r0, n, a, b, ref ya, ref yb);
                        }
                        else
                        {
                            TwoTokens<PairSums>(ref *pinned, rowBytes, quarter, r0, n, a, b, ref ya, ref yb);
                        }
                    }
                }

                for (int p = 0; p < pairs; p++)
                {
                    RowOperands a = Operands(x.Row(2 * p), blocks), b = Operands(x.Row((2 * p) + 1), blocks);
                    ref float ya = ref y[2 * p * yStride], yb = ref y[((2 * p) + 1) * yStride];
                    for (int r = 4 * quarter; r < count; r++)
                    {
                        ref byte row = ref Unsafe.Add(ref *pinned, (nint)r * rowBytes);
                        Unsafe.Add(ref ya, r) = vnni ? FourRows<Q4_0Block<Vnni>, WithPrefetch>(ref row, 0, a).ToScalar() : FourRows<Q4_0Block<PairSums>, WithPrefetch>(ref row, 0, a).ToScalar();
                        Unsafe.Add(ref yb, r) = vnni ? FourRows<Q4_0Block<Vnni>, WithPrefetch>(ref row, 0, b).ToScalar() : FourRows<Q4_0Block<PairSums>, WithPrefetch>(ref row, 0, b).ToScalar();
                    }
                }
            }

            t = 2 * pairs;
        }

        for (; t < tokens; t++)
        {
            DotRows(path, DType.Q4_0, rows, count, x.Row(t), y.Slice(t * yStride, count));
        }
    }

    /// <summary>One token's Q8_0 activations as the kernels read them (no code sums: Q8_0 and Q4_0 use none).</summary>
    private static RowOperands Operands(Q8Row x, int blocks)
    {
        ref short none = ref Unsafe.NullRef<short>();
        return new RowOperands(ref MemoryMarshal.GetReference(x.Codes), ref MemoryMarshal.GetReference(x.Scales), ref none,
            ref MemoryMarshal.GetReference(x.Offsets), blocks);
    }

    /// <summary>Rows <paramref name="first"/> to <paramref name="first"/> + <paramref name="count"/> of each quarter against two tokens.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TwoTokens<TDot>(ref byte w, int rowBytes, int quarter, int first, int count, scoped in RowOperands a, scoped in RowOperands b, ref float ya, ref float yb)
        where TDot : IByteDot
    {
        for (int r = first; r < first + count; r++)
        {
            (Vector128<float> sumsA, Vector128<float> sumsB) = FourRowsTwoTokens<TDot>(ref Unsafe.Add(ref w, (nint)r * rowBytes), (nint)quarter * rowBytes, a, b);
            StoreQuarters(sumsA, ref ya, r, quarter);
            StoreQuarters(sumsB, ref yb, r, quarter);
        }
    }

    /// <summary>Four rows' sums (<see cref="FourRows{TBlock}"/> over rows a quarter apart) to rows r, r + q, r + 2q and r + 3q.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void StoreQuarters(Vector128<float> sums, ref float y, int r, int quarter)
    {
        Unsafe.Add(ref y, r) = sums.ToScalar();
        Unsafe.Add(ref y, r + quarter) = sums.GetElement(1);
        Unsafe.Add(ref y, r + (2 * quarter)) = sums.GetElement(2);
        Unsafe.Add(ref y, r + (3 * quarter)) = sums.GetElement(3);
    }

    /// <summary>
    /// <see cref="FourRows{TBlock}"/> for two tokens at once, each token's arithmetic in FourRows' order. The first pair of
    /// tokens reads the rows from memory, so they are prefetched as FourRows prefetches them: without, a decode step of two
    /// Q4_0 sequences ran at 64 tokens/s in all against one sequence's 80 (0.5B shape, 2 threads).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe (Vector128<float>, Vector128<float>) FourRowsTwoTokens<TDot>(ref byte w, nint stride, scoped in RowOperands a, scoped in RowOperands b)
        where TDot : IByteDot
    {
        ref float half = ref a.HalfTable;
        ref float scaleA = ref a.Scales, scaleB = ref b.Scales;
        ref sbyte codesA = ref a.Codes, codesB = ref b.Codes;
        ref int offsetsA = ref a.Offsets, offsetsB = ref b.Offsets;
        ref byte row = ref w;
        nint stride3 = 3 * stride;
        NibbleSplit split = NibbleSplit.Create();
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        Vector256<float> b0 = default, b1 = default, b2 = default, b3 = default;
        for (int k = 0; k < a.Blocks; k++)
        {
            if ((k & 1) == 0)
            {
                PrefetchFourRows((byte*)Unsafe.AsPointer(ref row), stride);    // as FourRows: the first pair of tokens reads the rows from memory
            }

            Vector256<sbyte> xa = Vector256.LoadUnsafe(ref codesA), xb = Vector256.LoadUnsafe(ref codesB);
            Vector256<int> oa = Q4_0Block<TDot>.Offsets(Vector256.LoadUnsafe(ref offsetsA), split), ob = Q4_0Block<TDot>.Offsets(Vector256.LoadUnsafe(ref offsetsB), split);
            Vector256<float> sa = Vector256.Create(scaleA), sb = Vector256.Create(scaleB);
            ref byte r1 = ref Unsafe.Add(ref row, stride);
            ref byte r2 = ref Unsafe.Add(ref row, 2 * stride);
            ref byte r3 = ref Unsafe.Add(ref row, stride3);
            Vector256<byte> n0 = Q4_0Block<TDot>.Nibbles(ref row, split), n1 = Q4_0Block<TDot>.Nibbles(ref r1, split);
            Vector256<byte> n2 = Q4_0Block<TDot>.Nibbles(ref r2, split), n3 = Q4_0Block<TDot>.Nibbles(ref r3, split);
            Vector256<float> h0 = Vector256.Create(RowOperands.Half(ref half, ref row)), h1 = Vector256.Create(RowOperands.Half(ref half, ref r1));
            Vector256<float> h2 = Vector256.Create(RowOperands.Half(ref half, ref r2)), h3 = Vector256.Create(RowOperands.Half(ref half, ref r3));
            a0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TDot.Dot(oa, n0, xa)) * h0, sa, a0);
            b0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TDot.Dot(ob, n0, xb)) * h0, sb, b0);
            a1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TDot.Dot(oa, n1, xa)) * h1, sa, a1);
            b1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TDot.Dot(ob, n1, xb)) * h1, sb, b1);
            a2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TDot.Dot(oa, n2, xa)) * h2, sa, a2);
            b2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TDot.Dot(ob, n2, xb)) * h2, sb, b2);
            a3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TDot.Dot(oa, n3, xa)) * h3, sa, a3);
            b3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TDot.Dot(ob, n3, xb)) * h3, sb, b3);
            row = ref Unsafe.Add(ref row, Q4_0Bytes);
            codesA = ref Unsafe.Add(ref codesA, Values);
            codesB = ref Unsafe.Add(ref codesB, Values);
            offsetsA = ref Unsafe.Add(ref offsetsA, 8);
            offsetsB = ref Unsafe.Add(ref offsetsB, 8);
            scaleA = ref Unsafe.Add(ref scaleA, 1);
            scaleB = ref Unsafe.Add(ref scaleB, 1);
        }

        return (Sum4(Q4_0Block<TDot>.Unscaled(a0, split), Q4_0Block<TDot>.Unscaled(a1, split), Q4_0Block<TDot>.Unscaled(a2, split), Q4_0Block<TDot>.Unscaled(a3, split)),
            Sum4(Q4_0Block<TDot>.Unscaled(b0, split), Q4_0Block<TDot>.Unscaled(b1, split), Q4_0Block<TDot>.Unscaled(b2, split), Q4_0Block<TDot>.Unscaled(b3, split)));
    }

    /// <summary>Four rows' accumulators to their four sums, in <see cref="FourRows{TBlock}"/>'s order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector128<float> Sum4(Vector256<float> acc0, Vector256<float> acc1, Vector256<float> acc2, Vector256<float> acc3)
    {
        Vector128<float> s0 = acc0.GetLower() + acc0.GetUpper(), s1 = acc1.GetLower() + acc1.GetUpper();
        Vector128<float> s2 = acc2.GetLower() + acc2.GetUpper(), s3 = acc3.GetLower() + acc3.GetUpper();
        return Sse3.HorizontalAdd(Sse3.HorizontalAdd(s0, s1), Sse3.HorizontalAdd(s2, s3));
    }

    /// <summary>
    /// Q4_0's rows four at a time, block by block: the four rows share each block's activation codes, offsets and scale,
    /// loaded once, and their four multiply-add chains are independent. Row by row, a block loaded its activations
    /// again for every row, and with the f16 scale's product, the nibble split and the pointer updates a block took
    /// 2.9-3.3 cycles from L2 on Zen 4; four rows at once take about 2 (9 instructions a row-block with VNNI). Decode of
    /// a Q4_0 Qwen2.5-0.5B went from 87 to 103 tokens/s on 2 threads, 52 to 56 on one. Q8_0 stays row by row
    /// (<see cref="Partial{TBlock}"/>): its blocks are twice the bytes for the same work, so it streams at the memory's
    /// pace either way, and four rows at once streamed slower there (22-31 against 29-31 GB/s on one core). (On Zen 5 it
    /// goes in pairs half the range apart, <see cref="TwoRowsPartial{TBlock}"/>.)
    /// The four rows are a quarter of the product apart, so each walks its quarter's bytes in order: four streams the
    /// hardware prefetchers follow. Four neighbouring rows (504 bytes each in the 0.5B model) made the memory's order
    /// jump back and forth inside every 2 KB, and one core streamed the 4864 × 896 matrices at 16-17 GB/s against 23-26
    /// in quarters, the LM head (151936 × 896) at 17-18 against 27-28, and two cores that LM head at 35-39 against 55
    /// (Zen 4, read bound 32 and 60 GB/s; memory-hot, both orders run alike).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows<TBlock, TPrefetch>(ref byte w, int rowBytes, int count, scoped in RowOperands x, ref float y)
        where TBlock : IBlockProduct
        where TPrefetch : struct, IPrefetchChoice
    {
        int quarter = count / 4;
        for (int r = 0; r < quarter; r++)
        {
            StoreQuarters(FourRows<TBlock, TPrefetch>(ref Unsafe.Add(ref w, (nint)r * rowBytes), (nint)quarter * rowBytes, x), ref y, r, quarter);
        }

        for (int r = 4 * quarter; r < count; r++)
        {
            Unsafe.Add(ref y, r) = FourRows<TBlock, TPrefetch>(ref Unsafe.Add(ref w, r * rowBytes), 0, x).ToScalar();
        }
    }

    /// <summary>
    /// Rows at <paramref name="w"/> + 0, 1, 2, 3 × <paramref name="stride"/> bytes dotted with the activations, their sums
    /// in the four lanes (a stride of 0 runs one row four times, for the last rows of a product). The rows must be pinned.
    /// </summary>
    /// <remarks>
    /// Two blocks a pass, the weights through a pointer and the loop ended by it: a block a pass kept a test and branch for
    /// every other block's prefetch, recomputed each prefetch's address in two instructions and reloaded two spilled loop
    /// values, about 50 instructions a block for four rows, now about 38, and the arithmetic is the same in the same order.
    /// On Zen 5 (where this loop, not memory, was the limit: one core reads 30-38 GB/s), 812 rows of 896 from L2 ran at 34-35
    /// GB/s against 28.7, and the Q4_0 Qwen2.5-0.5B decoded 78-83 tokens/s on one thread against 71-74 (alternating builds).
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector128<float> FourRows<TBlock, TPrefetch>(ref byte w, nint stride, scoped in RowOperands x)
        where TBlock : IBlockProduct
        where TPrefetch : struct, IPrefetchChoice
    {
        ref float half = ref x.HalfTable;
        ref float scale = ref x.Scales;
        ref sbyte codes = ref x.Codes;
        ref int offsets = ref x.Offsets;
        byte* row = (byte*)Unsafe.AsPointer(ref w);
        byte* pairsEnd = row + ((nint)(x.Blocks & ~1) * TBlock.Bytes);
        NibbleSplit split = NibbleSplit.Create();
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        while (row < pairsEnd)
        {
            if (TPrefetch.Ahead)
            {
                PrefetchFourRows(row, stride);
            }

            FourRowsBlock<TBlock>(row, stride, ref codes, ref offsets, scale, ref half, split, ref acc0, ref acc1, ref acc2, ref acc3);
            FourRowsBlock<TBlock>(row + TBlock.Bytes, stride, ref Unsafe.Add(ref codes, Values), ref Unsafe.Add(ref offsets, 8), Unsafe.Add(ref scale, 1), ref half, split,
                ref acc0, ref acc1, ref acc2, ref acc3);
            row += 2 * TBlock.Bytes;
            codes = ref Unsafe.Add(ref codes, 2 * Values);
            offsets = ref Unsafe.Add(ref offsets, 16);
            scale = ref Unsafe.Add(ref scale, 2);
        }

        if ((x.Blocks & 1) != 0)
        {
            FourRowsBlock<TBlock>(row, stride, ref codes, ref offsets, scale, ref half, split, ref acc0, ref acc1, ref acc2, ref acc3);
        }

        return Sum4(TBlock.Unscaled(acc0, split), TBlock.Unscaled(acc1, split), TBlock.Unscaled(acc2, split), TBlock.Unscaled(acc3, split));
    }

    /// <summary>
    /// One block of the four rows at <paramref name="row"/> + 0, 1, 2, 3 × <paramref name="stride"/> into their accumulators.
    /// Each row's product is scaled by its own f16 scale (a broadcast from the table) and multiply-added with the
    /// activations' scale, shared by the four rows: no scalar product per row.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void FourRowsBlock<TBlock>(byte* row, nint stride, ref sbyte codes, ref int offsets, float scale, ref float half, NibbleSplit split,
        ref Vector256<float> acc0, ref Vector256<float> acc1, ref Vector256<float> acc2, ref Vector256<float> acc3)
        where TBlock : IBlockProduct
    {
        Vector256<sbyte> activations = Vector256.LoadUnsafe(ref codes);
        Vector256<int> start = TBlock.UsesOffsets ? TBlock.Offsets(Vector256.LoadUnsafe(ref offsets), split) : default;
        Vector256<float> s = Vector256.Create(scale);
        byte* r1 = row + stride, r2 = row + (2 * stride), r3 = row + (3 * stride);
        acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TBlock.Product(ref *row, activations, start, split)) * Vector256.Create(RowOperands.Half(ref half, ref *row)), s, acc0);
        acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TBlock.Product(ref *r1, activations, start, split)) * Vector256.Create(RowOperands.Half(ref half, ref *r1)), s, acc1);
        acc2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TBlock.Product(ref *r2, activations, start, split)) * Vector256.Create(RowOperands.Half(ref half, ref *r2)), s, acc2);
        acc3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TBlock.Product(ref *r3, activations, start, split)) * Vector256.Create(RowOperands.Half(ref half, ref *r3)), s, acc3);
    }

    /// <summary>
    /// The lines of two blocks ahead: one for Q4_0's 36 bytes; two for Q8_0's 68, where one a pair skipped every 17th line
    /// (the next pair's prefetch lands 68 bytes on), which then came from memory when the kernel reached it. A Q8_0 kernel
    /// over 512 MiB, in ratio to a plain vector sum over as many bytes timed beside it, on one core of the 2-core Xeon:
    /// 0.87 against 0.83 (medians of 8 alternating runs of 7 trials each).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchPair<TBlock>(ref byte block)
        where TBlock : IBlockProduct
    {
        Prefetch.Ahead(ref block);
        if (2 * TBlock.Bytes > 64)
        {
            Prefetch.Ahead(ref Unsafe.Add(ref block, 64));
        }
    }

    /// <summary>
    /// A line ahead in each of four rows <paramref name="stride"/> bytes apart. Two Q4_0 blocks of a row are 36 bytes, so once
    /// every other block keeps up. (A single prefetch walking the four rows' stretch of memory measured alike, but falls
    /// behind on long rows.)
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe void PrefetchFourRows(byte* row, nint stride)
    {
        Prefetch.Ahead(ref *row);
        Prefetch.Ahead(ref row[stride]);
        Prefetch.Ahead(ref row[2 * stride]);
        Prefetch.Ahead(ref row[3 * stride]);
    }

    /// <summary>
    /// A row's blocks with two accumulators taking turns, so consecutive blocks' multiply-adds do not wait on each
    /// other (a block is only a few instructions). The references walk forward instead of being recomputed from the
    /// block number: the JIT's index arithmetic and reloads of the operands were a third of the loop.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Partial<TBlock, TPrefetch>(ref byte w, scoped in RowOperands x)
        where TBlock : IBlockProduct
        where TPrefetch : struct, IPrefetchChoice
    {
        ref float half = ref x.HalfTable;
        ref float scale = ref x.Scales;
        ref sbyte codes = ref x.Codes;
        ref int offsets = ref x.Offsets;
        ref byte block = ref w;
        NibbleSplit split = NibbleSplit.Create();
        Vector256<float> acc0 = default, acc1 = default;
        int b = 0;
        for (; b + 1 < x.Blocks; b += 2)
        {
            ref byte second = ref Unsafe.Add(ref block, TBlock.Bytes);
            if (TPrefetch.Ahead)
            {
                PrefetchPair<TBlock>(ref block);
            }

            acc0 = Accumulate<TBlock>(ref block, Vector256.LoadUnsafe(ref codes), Start<TBlock>(ref offsets, split), scale, ref half, split, acc0);
            acc1 = Accumulate<TBlock>(ref second, Vector256.LoadUnsafe(ref Unsafe.Add(ref codes, Values)), Start<TBlock>(ref Unsafe.Add(ref offsets, 8), split),
                Unsafe.Add(ref scale, 1), ref half, split, acc1);
            block = ref Unsafe.Add(ref block, 2 * TBlock.Bytes);
            codes = ref Unsafe.Add(ref codes, 2 * Values);
            offsets = ref Unsafe.Add(ref offsets, 16);
            scale = ref Unsafe.Add(ref scale, 2);
        }

        if (b < x.Blocks)
        {
            acc0 = Accumulate<TBlock>(ref block, Vector256.LoadUnsafe(ref codes), Start<TBlock>(ref offsets, split), scale, ref half, split, acc0);
        }

        Vector256<float> acc = TBlock.Unscaled(acc0 + acc1, split);
        return acc.GetLower() + acc.GetUpper();
    }

    /// <summary>A block's product, as a float, times the weights' f16 scale × the activations' <paramref name="scale"/>, added to <paramref name="acc"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Accumulate<TBlock>(ref byte block, Vector256<sbyte> codes, Vector256<int> start, float scale, ref float half, NibbleSplit split,
        Vector256<float> acc)
        where TBlock : IBlockProduct =>
        Fma.MultiplyAdd(Avx.ConvertToVector256Single(TBlock.Product(ref block, codes, start, split)), Vector256.Create(RowOperands.Half(ref half, ref block) * scale), acc);

    /// <summary>Where a block's product starts: its activation offsets (Q4_0), else zero.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Start<TBlock>(ref int offsets, NibbleSplit split)
        where TBlock : IBlockProduct =>
        TBlock.UsesOffsets ? TBlock.Offsets(Vector256.LoadUnsafe(ref offsets), split) : default;

    /// <summary>One weight type's block: its size, and Σ w × x over it in eight 32-bit lanes.</summary>
    private interface IBlockProduct
    {
        static abstract int Bytes { get; }

        /// <summary>Whether the product starts from the activations' offsets (Q4_0's -8), else from zero.</summary>
        static abstract bool UsesOffsets { get; }

        /// <summary>The block at <paramref name="block"/> against a block of activation codes, started from <paramref name="start"/>.</summary>
        static abstract Vector256<int> Product(ref byte block, Vector256<sbyte> codes, Vector256<int> start, NibbleSplit split);

        /// <summary>A block's activation offsets (<see cref="Q8Row.Offsets"/>) as <see cref="Product"/> starts from them.</summary>
        static abstract Vector256<int> Offsets(Vector256<int> offsets, NibbleSplit split);

        /// <summary>A row's accumulated lanes as the true sums (undoing what <see cref="Product"/> scaled).</summary>
        static abstract Vector256<float> Unscaled(Vector256<float> sums, NibbleSplit split);
    }

    /// <summary>Q8_0: |w| times x with w's sign (vpsignb), so the unsigned-by-signed product gives w × x.</summary>
    private readonly struct Q8_0Block<TDot> : IBlockProduct
        where TDot : IByteDot
    {
        public static int Bytes => Q8_0Bytes;

        public static bool UsesOffsets => false;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Product(ref byte block, Vector256<sbyte> codes, Vector256<int> start, NibbleSplit split)
        {
            Vector256<sbyte> w = Vector256.LoadUnsafe(ref Unsafe.As<byte, sbyte>(ref Unsafe.Add(ref block, 2)));
            return TDot.Dot(start, Avx2.Abs(w), Avx2.Sign(codes, w));
        }

        public static Vector256<int> Offsets(Vector256<int> offsets, NibbleSplit split) => default;

        public static Vector256<float> Unscaled(Vector256<float> sums, NibbleSplit split) => sums;
    }

    /// <summary>
    /// Q4_0: the 16 bytes' low nibbles then their high nibbles (values 0-15, then 16-31) as stored (0..15), the product
    /// started from the activations' -8 × Σ lanes. With a dot that takes whole bytes (vpdpbusd), the high nibbles are
    /// multiplied where they are, as 16 × their value, against offsets × 16 in the upper lanes, and the row's sums are
    /// scaled back once at its end: a mask instead of a shift and a mask per row and block, and the same sums bit for bit
    /// (the upper lanes' integers, their floats and every rounding of their accumulation are 16 times the true ones, a
    /// power of two, and integer sums stay below 2^18). On the 2-core Xeon (Emerald Rapids, AVX-VNNI): 256 rows of 896 from
    /// L2 16.6 against 15.9 GB/s (medians of 8, alternating builds), and the Q4_0 Qwen2.5-0.5B decoded 30.8 against 29.5
    /// tokens/s on one thread (medians of 6).
    /// </summary>
    private readonly struct Q4_0Block<TDot> : IBlockProduct
        where TDot : IByteDot
    {
        public static int Bytes => Q4_0Bytes;

        public static bool UsesOffsets => true;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Product(ref byte block, Vector256<sbyte> codes, Vector256<int> start, NibbleSplit split) =>
            TDot.Dot(start, Nibbles(ref block, split), codes);

        /// <summary>
        /// The block's 32 codes as unsigned bytes, values 0-31 in order: 0..15, or with whole bytes the upper 16 as 16 × (0..15).
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static unsafe Vector256<byte> Nibbles(ref byte block, NibbleSplit split)
        {
            // The 16 bytes in both halves (one broadcast load). Whole bytes: the low nibbles kept in the lower half, the high
            // nibbles in place in the upper. Else the upper half's 32-bit lanes shifted right by 4 (a byte's high nibble
            // to its low bits; what the shift brings in from the next byte lands in the high bits), low nibbles kept. (The
            // rows are pinned: see DotRows and GemmRows.)
            Vector256<uint> packed = Avx2.BroadcastVector128ToVector256((byte*)Unsafe.AsPointer(ref Unsafe.Add(ref block, 2))).AsUInt32();
            return TDot.TakesWholeBytes ? packed.AsByte() & split.InPlace : Avx2.ShiftRightLogicalVariable(packed, split.Shifts).AsByte() & split.Low;
        }

        /// <summary>The offsets, × 16 in the upper lanes where the high nibbles are multiplied in place.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Offsets(Vector256<int> offsets, NibbleSplit split) =>
            TDot.TakesWholeBytes ? Avx2.ShiftLeftLogicalVariable(offsets, split.Shifts) : offsets;

        /// <summary>The upper lanes / 16 where the high nibbles were multiplied in place (exact: a power of two).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Unscaled(Vector256<float> sums, NibbleSplit split) => TDot.TakesWholeBytes ? sums * split.Unscale : sums;
    }

    /// <summary>
    /// IQ4_NL: Q4_0's layout (an f16 scale, 16 bytes of nibbles), each nibble an index into a table of 16 int8 values
    /// (<see cref="Iq4XsBlocks.NonLinearValues"/>), looked up by one vpshufb per block. With vpdpbusd the table + 128 goes in
    /// as unsigned bytes (1..241, which it multiplies exactly) and the product starts from the activations' -128 × Σ lanes
    /// (Q4_0's offsets × 16); vpmaddubsw's 16-bit pairs would saturate there, so without it the values' signs move onto the
    /// activations, as Q8_0's do.
    /// </summary>
    private readonly struct Iq4NlBlock<TDot> : IBlockProduct
        where TDot : IByteDot
    {
        public static int Bytes => Q4_0Bytes;

        public static bool UsesOffsets => TDot.TakesWholeBytes;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static unsafe Vector256<int> Product(ref byte block, Vector256<sbyte> codes, Vector256<int> start, NibbleSplit split)
        {
            Vector256<uint> packed = Avx2.BroadcastVector128ToVector256((byte*)Unsafe.AsPointer(ref Unsafe.Add(ref block, 2))).AsUInt32();
            Vector256<sbyte> nibbles = (Avx2.ShiftRightLogicalVariable(packed, split.Shifts).AsByte() & split.Low).AsSByte();
            if (TDot.TakesWholeBytes)
            {
                return TDot.Dot(start, Avx2.Shuffle(split.NonLinearUnsigned, nibbles).AsByte(), codes);
            }

            Vector256<sbyte> w = Avx2.Shuffle(split.NonLinear, nibbles);
            return TDot.Dot(start, Avx2.Abs(w), Avx2.Sign(codes, w));
        }

        /// <summary>-128 × Σ lanes: Q4_0's offsets (-8 × Σ) × 16.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Offsets(Vector256<int> offsets, NibbleSplit split) => offsets << 4;

        public static Vector256<float> Unscaled(Vector256<float> sums, NibbleSplit split) => sums;
    }

    private readonly struct Row<TBlock, TPrefetch> : IRowPairKernel
        where TBlock : IBlockProduct
        where TPrefetch : struct, IPrefetchChoice
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<float> Partial(ref byte row, scoped in RowOperands x) => Partial<TBlock, TPrefetch>(ref row, x);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static (Vector128<float> First, Vector128<float> Second) PartialPair(ref byte row, nint apart, scoped in RowOperands x) =>
            TwoRowsPartial<TBlock, TPrefetch>(ref row, apart, x);
    }

    /// <summary>Q4_0's constants for splitting 16 bytes of nibbles, made once before a loop (the JIT reloaded them per block).</summary>
    private readonly struct NibbleSplit
    {
        /// <summary>Shift counts: 0 for the lower four 32-bit lanes, 4 for the upper four.</summary>
        public readonly Vector256<uint> Shifts;

        public readonly Vector256<byte> Low;

        /// <summary>Low nibbles in the lower 16 bytes, high nibbles in the upper 16 (kept in place).</summary>
        public readonly Vector256<byte> InPlace;

        /// <summary>1 for the lower four lanes, 1/16 for the upper four.</summary>
        public readonly Vector256<float> Unscale;

        /// <summary>IQ4_NL's table of 16 values in each 128-bit lane (for vpshufb), as int8 and + 128 as unsigned bytes (1..241).</summary>
        public readonly Vector256<sbyte> NonLinear, NonLinearUnsigned;

        private NibbleSplit(Vector256<uint> shifts, Vector256<byte> low, Vector256<byte> inPlace, Vector256<float> unscale, Vector256<sbyte> nonLinear)
        {
            Shifts = shifts;
            Low = low;
            InPlace = inPlace;
            Unscale = unscale;
            NonLinear = nonLinear;
            NonLinearUnsigned = nonLinear ^ Vector256.Create(sbyte.MinValue);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static NibbleSplit Create() => new(Vector256.Create(0u, 0, 0, 0, 4, 4, 4, 4), Vector256.Create((byte)0x0F),
            Vector256.Create(Vector128.Create((byte)0x0F), Vector128.Create((byte)0xF0)), Vector256.Create(1f, 1, 1, 1, 1f / 16, 1f / 16, 1f / 16, 1f / 16),
            Vector256.Create(Vector128.Create(Iq4XsBlocks.NonLinearValues)));
    }
}
