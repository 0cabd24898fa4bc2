using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using QwenSharp.Formats;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Q8_0 and Q4_0 weights against activations quantized as Q8_0 (<see cref="Q8Activations"/>), as ggml's
/// vec_dot_q8_0_q8_0 and vec_dot_q4_0_q8_0: per block of 32 the signed weight codes (Q4_0's nibbles less 8) times the
/// activation codes, summed exactly in integers (the sign moved onto the activations so vpmaddubsw can multiply
/// |w| by them, then vpmaddwd sums pairs to 32 bits), then one float multiply-add by the two scales into float vectors
/// summed once per row. Against the kernel that widened Q8_0 codes to f32, this does half the work per block, and is
/// then light enough that the hardware prefetchers alone left it waiting on memory: one thread streamed a 151936 × 896
/// Q8_0 matrix at 10.5 GB/s without <see cref="Prefetch"/> and 21.5 with it (Zen 4).
/// </summary>
/// <remarks>
/// The 512-bit path runs the 256-bit kernel: a block is 32 codes, so a 64-byte product would need two blocks'
/// codes joined and their two scales spread, and Zen 4 runs 512-bit integer work as two 256-bit halves anyway.
/// </remarks>
internal static class Q8IntegerKernel
{
    private const int Values = Q8Activations.BlockValues;
    private const int Q8_0Bytes = 34;
    private const int Q4_0Bytes = 18;

    /// <summary>One row's dot product with one token's activations (the tests' entry; the model calls <see cref="DotRows"/>).</summary>
    public static float Dot(KernelPath path, DType type, ReadOnlySpan<byte> row, Q8Row x)
    {
        Span<float> result = stackalloc float[1];
        DotRows(path, type, row, 1, x, result);
        return result[0];
    }

    /// <summary><paramref name="count"/> consecutive rows dotted with one token's activations into <paramref name="results"/>.</summary>
    public static void DotRows(KernelPath path, DType type, ReadOnlySpan<byte> rows, int count, Q8Row x, Span<float> results)
    {
        int blocks = x.Codes.Length / Values;
        int rowBytes = blocks * (type == DType.Q8_0 ? Q8_0Bytes : Q4_0Bytes);
        if (type is not (DType.Q8_0 or DType.Q4_0) || rows.Length < (long)count * rowBytes || results.Length < count)
        {
            throw new ArgumentException($"{count} {type} rows of {blocks} blocks need {(long)count * rowBytes} bytes and {count} results; got {rows.Length} and {results.Length}");
        }

        short none = 0;
        var operands = new RowOperands(ref MemoryMarshal.GetReference(x.Codes), ref MemoryMarshal.GetReference(x.Scales), ref none, blocks);
        ref byte w = ref MemoryMarshal.GetReference(rows);
        ref float y = ref MemoryMarshal.GetReference(results);
        if (path == KernelPath.Scalar || !Avx2.IsSupported || !Fma.IsSupported)
        {
            for (int r = 0; r < count; r++)
            {
                Unsafe.Add(ref y, r) = Scalar(type, ref Unsafe.Add(ref w, r * rowBytes), operands);
            }
        }
        else if (type == DType.Q8_0)
        {
            RowGroups.Run<Q8_0Row>(ref w, rowBytes, count, operands, ref y);
        }
        else
        {
            RowGroups.Run<Q4_0Row>(ref w, rowBytes, count, operands, ref y);
        }
    }

    /// <summary>Weight code j of a block: Q8_0's int8, or Q4_0's nibble less 8 (low nibbles are values 0-15, high 16-31).</summary>
    private static int Code(DType type, ref byte block, int j)
    {
        if (type == DType.Q8_0)
        {
            return (sbyte)Unsafe.Add(ref block, 2 + j);
        }

        byte packed = Unsafe.Add(ref block, 2 + (j % 16));
        return (j < 16 ? packed & 0xF : packed >> 4) - 8;
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

    /// <summary>Σ w × x over one block, in eight 32-bit lanes: |w| times x with w's sign, pairs to 16 bits, then to 32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> BlockProduct(Vector256<sbyte> w, ref sbyte x, int b)
    {
        Vector256<sbyte> activations = Vector256.LoadUnsafe(ref x, (nuint)(b * Values));
        Vector256<short> pairs = Avx2.MultiplyAddAdjacent(Avx2.Abs(w), Avx2.Sign(activations, w));
        return Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(pairs, Vector256.Create((short)1)));
    }

    /// <summary>
    /// A row's blocks with two accumulators taking turns, so consecutive blocks' multiply-adds do not wait on each
    /// other (a block is only a few instructions). <paramref name="codes"/> gives a block's 32 signed codes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Partial<TBlock>(ref byte w, scoped in RowOperands x)
        where TBlock : IBlockCodes
    {
        ref float half = ref x.HalfTable;
        ref sbyte codes = ref x.Codes;
        ref float scales = ref x.Scales;
        Vector256<float> acc0 = default, acc1 = default;
        int b = 0;
        for (; b + 1 < x.Blocks; b += 2)
        {
            ref byte first = ref Unsafe.Add(ref w, b * TBlock.Bytes);
            ref byte second = ref Unsafe.Add(ref first, TBlock.Bytes);
            Prefetch.Ahead(ref first);    // two blocks are 36 or 68 bytes: a line ahead per pair keeps up
            acc0 = Fma.MultiplyAdd(BlockProduct(TBlock.Codes(ref first), ref codes, b),
                Vector256.Create(RowOperands.Half(ref half, ref first) * Unsafe.Add(ref scales, b)), acc0);
            acc1 = Fma.MultiplyAdd(BlockProduct(TBlock.Codes(ref second), ref codes, b + 1),
                Vector256.Create(RowOperands.Half(ref half, ref second) * Unsafe.Add(ref scales, b + 1)), acc1);
        }

        if (b < x.Blocks)
        {
            ref byte last = ref Unsafe.Add(ref w, b * TBlock.Bytes);
            acc0 = Fma.MultiplyAdd(BlockProduct(TBlock.Codes(ref last), ref codes, b),
                Vector256.Create(RowOperands.Half(ref half, ref last) * Unsafe.Add(ref scales, b)), acc0);
        }

        Vector256<float> acc = acc0 + acc1;
        return acc.GetLower() + acc.GetUpper();
    }

    /// <summary>How a weight type's block gives its 32 signed codes.</summary>
    private interface IBlockCodes
    {
        static abstract int Bytes { get; }

        static abstract Vector256<sbyte> Codes(ref byte block);
    }

    private readonly struct Q8_0Codes : IBlockCodes
    {
        public static int Bytes => Q8_0Bytes;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<sbyte> Codes(ref byte block) => Vector256.LoadUnsafe(ref Unsafe.As<byte, sbyte>(ref Unsafe.Add(ref block, 2)));
    }

    private readonly struct Q4_0Codes : IBlockCodes
    {
        public static int Bytes => Q4_0Bytes;

        /// <summary>The 16 bytes' low nibbles then their high nibbles (values 0-15, then 16-31), less 8.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<sbyte> Codes(ref byte block)
        {
            Vector128<byte> packed = Vector128.LoadUnsafe(ref Unsafe.Add(ref block, 2));
            Vector256<byte> nibbles = Vector256.Create(packed, Vector128.ShiftRightLogical(packed.AsUInt16(), 4).AsByte()) & Vector256.Create((byte)0x0F);
            return (nibbles - Vector256.Create((byte)8)).AsSByte();
        }
    }

    private readonly struct Q8_0Row : IRowKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<float> Partial(ref byte row, scoped in RowOperands x) => Partial<Q8_0Codes>(ref row, x);
    }

    private readonly struct Q4_0Row : IRowKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<float> Partial(ref byte row, scoped in RowOperands x) => Partial<Q4_0Codes>(ref row, x);
    }
}
