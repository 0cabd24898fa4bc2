using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Q5_0 weights stored as pairs of blocks (<see cref="Q5_0Pairs"/>) against activations quantized as Q8_0
/// (<see cref="Q8Activations"/>), as ggml's vec_dot_q5_0_q8_0: per block of 32 the codes (0..31, their offset of 16 taken
/// from the activations) times the activation codes, summed exactly in integers, then one float multiply-add by the two
/// scales. Q8IntegerKernel's Q4_0 loop with a fifth bit: each block's nibbles split by one affine transform (low nibbles
/// in the lower 16 bytes, high ones shifted down in the upper), its fifth bits put in place by another from the pair's 8
/// bytes, the two or-ed: codes 0..31 in order, for vpdpbusd (or vpmaddubsw and vpmaddwd).
/// </summary>
/// <remarks>
/// Four rows a quarter of the product apart at once, as Q4_0's (each walks its own quarter in order: four streams the
/// hardware prefetchers follow), sharing each block's activation codes, offsets and scale; a line a pair ahead prefetched
/// in each (<see cref="Prefetch"/>).
/// </remarks>
internal static class Q5_0PairKernel
{
    private const int Values = Q8Activations.BlockValues;

    /// <summary>Low nibbles kept (lanes 0-1) or high nibbles shifted down (lanes 2-3), as GF(2) affine matrices.</summary>
    private const ulong LowNibbles = 0x0102040800000000, HighNibbles = 0x1020408000000000;

    /// <summary>One row's dot product with one token's activations (the tests' entry; the model calls <see cref="DotRows"/>).</summary>
    public static float Dot(KernelPath path, ReadOnlySpan<byte> row, Q8Row x, bool offset = true)
    {
        Span<float> result = stackalloc float[1];
        DotRows(path, row, 1, x, result, offset);
        return result[0];
    }

    /// <summary>
    /// <paramref name="count"/> consecutive rows of pairs dotted with one token's activations into <paramref name="results"/>:
    /// Q5_0's codes less 16 where <paramref name="offset"/>, else the codes as they are (a Q5_1 matrix's, whose minimums
    /// <see cref="BlockMinimums"/> adds).
    /// </summary>
    public static unsafe void DotRows(KernelPath path, ReadOnlySpan<byte> rows, int count, Q8Row x, Span<float> results, bool offset = true)
    {
        int blocks = x.Codes.Length / Values;
        long rowBytes = (long)blocks / 2 * Q5_0Pairs.PairBytes;
        if (!Q5_0Pairs.Fits(x.Codes.Length) || rows.Length < count * rowBytes || results.Length < count || count < 0)
        {
            throw new ArgumentException($"{count} Q5_0 rows of {blocks} blocks in pairs need {count * rowBytes} bytes and {count} results; got {rows.Length} and {results.Length}");
        }

        var operands = new RowOperands(ref MemoryMarshal.GetReference(x.Codes), ref MemoryMarshal.GetReference(x.Scales), ref Unsafe.NullRef<short>(),
            ref MemoryMarshal.GetReference(x.Offsets), blocks);
        ref float y = ref MemoryMarshal.GetReference(results);
        fixed (byte* pinned = rows)
        {
            if (!Q5_0Pairs.HasKernel(path))
            {
                for (int r = 0; r < count; r++)
                {
                    Unsafe.Add(ref y, r) = Scalar(new ReadOnlySpan<byte>(pinned + (r * rowBytes), (int)rowBytes), operands, offset ? 16 : 0);
                }
            }
            else if (ByteDots.Vnni(path))
            {
                if (offset)
                {
                    Rows<Vnni, LessSixteen>(pinned, (int)rowBytes, count, operands, ref y);
                }
                else
                {
                    Rows<Vnni, AsStored>(pinned, (int)rowBytes, count, operands, ref y);
                }
            }
            else if (offset)
            {
                Rows<PairSums, LessSixteen>(pinned, (int)rowBytes, count, operands, ref y);
            }
            else
            {
                Rows<PairSums, AsStored>(pinned, (int)rowBytes, count, operands, ref y);
            }
        }
    }

    /// <summary>The reference: Σ_b d_w d_x Σ_j (code_j − <paramref name="offset"/>) x_j, block by block in order.</summary>
    private static float Scalar(ReadOnlySpan<byte> row, scoped in RowOperands x, int offset)
    {
        float total = 0;
        for (int b = 0; b < x.Blocks; b++)
        {
            ReadOnlySpan<byte> pair = row.Slice(b / 2 * Q5_0Pairs.PairBytes, Q5_0Pairs.PairBytes);
            int sumi = 0;
            for (int j = 0; j < Values; j++)
            {
                sumi += (Q5_0Pairs.Code(pair, (b % 2 * Values) + j) - offset) * Unsafe.Add(ref x.Codes, (b * Values) + j);
            }

            total += Unsafe.Add(ref x.HalfTable, Q5_0Pairs.Scale(pair, b % 2)) * Unsafe.Add(ref x.Scales, b) * sumi;
        }

        return total;
    }

    /// <summary>The rows four at a time, a quarter of them apart; the last count % 4 one at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void Rows<TDot, TCodes>(byte* w, int rowBytes, int count, scoped in RowOperands x, ref float y)
        where TDot : IByteDot
        where TCodes : struct, ICodeOffset
    {
        int quarter = count / 4;
        for (int r = 0; r < quarter; r++)
        {
            Q8IntegerKernel.StoreQuarters(FourRows<TDot, TCodes>(w + ((nint)r * rowBytes), (nint)quarter * rowBytes, x), ref y, r, quarter);
        }

        for (int r = 4 * quarter; r < count; r++)
        {
            Unsafe.Add(ref y, r) = FourRows<TDot, TCodes>(w + ((nint)r * rowBytes), 0, x).ToScalar();
        }
    }

    /// <summary>
    /// Rows at <paramref name="row"/> + 0, 1, 2, 3 × <paramref name="stride"/> bytes dotted with the activations, their sums in
    /// the four lanes (a stride of 0 runs one row four times). A pair of blocks a pass.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector128<float> FourRows<TDot, TCodes>(byte* row, nint stride, scoped in RowOperands x)
        where TDot : IByteDot
        where TCodes : struct, ICodeOffset
    {
        ref float half = ref x.HalfTable;
        ref float scale = ref x.Scales;
        ref sbyte codes = ref x.Codes;
        ref int offsets = ref x.Offsets;
        byte* end = row + ((nint)(x.Blocks / 2) * Q5_0Pairs.PairBytes);
        var split = Vector256.Create(LowNibbles, LowNibbles, HighNibbles, HighNibbles).AsByte();
        var fifthA = Vector256.Create(1UL << 24, 2UL << 24, 4UL << 24, 8UL << 24).AsByte();
        var fifthB = Vector256.Create(16UL << 24, 32UL << 24, 64UL << 24, 128UL << 24).AsByte();
        Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
        while (row < end)
        {
            Q8IntegerKernel.PrefetchFourRows(row, stride);

            // The pair's activations: codes, Q4_0's offsets (-8 × every 4 codes' sum) doubled for the offset of 16, scales.
            Vector256<sbyte> xa = Vector256.LoadUnsafe(ref codes), xb = Vector256.LoadUnsafe(ref codes, Values);
            Vector256<int> startA = TCodes.LessSixteen ? Vector256.LoadUnsafe(ref offsets) << 1 : default;
            Vector256<int> startB = TCodes.LessSixteen ? Vector256.LoadUnsafe(ref offsets, 8) << 1 : default;
            Vector256<float> sa = Vector256.Create(scale), sb = Vector256.Create(Unsafe.Add(ref scale, 1));
            acc0 = Pair<TDot>(row, xa, xb, startA, startB, sa, sb, ref half, split, fifthA, fifthB, acc0);
            acc1 = Pair<TDot>(row + stride, xa, xb, startA, startB, sa, sb, ref half, split, fifthA, fifthB, acc1);
            acc2 = Pair<TDot>(row + (2 * stride), xa, xb, startA, startB, sa, sb, ref half, split, fifthA, fifthB, acc2);
            acc3 = Pair<TDot>(row + (3 * stride), xa, xb, startA, startB, sa, sb, ref half, split, fifthA, fifthB, acc3);
            row += Q5_0Pairs.PairBytes;
            codes = ref Unsafe.Add(ref codes, 2 * Values);
            offsets = ref Unsafe.Add(ref offsets, 16);
            scale = ref Unsafe.Add(ref scale, 2);
        }

        return Q8IntegerKernel.Sum4(acc0, acc1, acc2, acc3);
    }

    /// <summary>One row's pair of blocks at <paramref name="pair"/> into its accumulator: each block's product × its f16 scale, multiply-added with the activations' scale.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector256<float> Pair<TDot>(byte* pair, Vector256<sbyte> xa, Vector256<sbyte> xb, Vector256<int> startA, Vector256<int> startB,
        Vector256<float> sa, Vector256<float> sb, ref float half, Vector256<byte> split, Vector256<byte> fifthA, Vector256<byte> fifthB, Vector256<float> acc)
        where TDot : IByteDot
    {
        Vector256<byte> fifths = Vector256.Create(*(ulong*)(pair + Q5_0Pairs.FifthBitsAt)).AsByte();
        Vector256<byte> codesA = Gfni.V256.GaloisFieldAffineTransform(Avx2.BroadcastVector128ToVector256(pair + 2), split, 0)
            | Gfni.V256.GaloisFieldAffineTransform(fifths, fifthA, 0);
        Vector256<byte> codesB = Gfni.V256.GaloisFieldAffineTransform(Avx2.BroadcastVector128ToVector256(pair + Q5_0Pairs.BlockBytes + 2), split, 0)
            | Gfni.V256.GaloisFieldAffineTransform(fifths, fifthB, 0);
        acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TDot.Dot(startA, codesA, xa)) * Vector256.Create(RowOperands.Half(ref half, ref *pair)), sa, acc);
        return Fma.MultiplyAdd(Avx.ConvertToVector256Single(TDot.Dot(startB, codesB, xb)) * Vector256.Create(RowOperands.Half(ref half, ref pair[Q5_0Pairs.BlockBytes])), sb, acc);
    }

    /// <summary>Whether the codes are Q5_0's (the value's code less 16) or taken as stored (Q5_1's, whose minimum is added apart).</summary>
    private interface ICodeOffset
    {
        static abstract bool LessSixteen { get; }
    }

    private readonly struct LessSixteen : ICodeOffset
    {
        static bool ICodeOffset.LessSixteen => true;
    }

    private readonly struct AsStored : ICodeOffset
    {
        static bool ICodeOffset.LessSixteen => false;
    }
}
