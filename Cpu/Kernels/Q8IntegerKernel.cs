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
        var operands = new RowOperands(ref MemoryMarshal.GetReference(x.Codes), ref MemoryMarshal.GetReference(x.Scales), ref none,
            ref MemoryMarshal.GetReference(x.Offsets), blocks);
        bool vnni = path == KernelPath.Vector512 && AvxVnni.IsSupported;
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
            if (vnni)
            {
                RowGroups.Run<Row<Q8_0Block<Vnni>>>(ref w, rowBytes, count, operands, ref y);
            }
            else
            {
                RowGroups.Run<Row<Q8_0Block<PairSums>>>(ref w, rowBytes, count, operands, ref y);
            }
        }
        else if (vnni)
        {
            RowGroups.Run<Row<Q4_0Block<Vnni>>>(ref w, rowBytes, count, operands, ref y);
        }
        else
        {
            RowGroups.Run<Row<Q4_0Block<PairSums>>>(ref w, rowBytes, count, operands, ref y);
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

    /// <summary>
    /// A row's blocks with two accumulators taking turns, so consecutive blocks' multiply-adds do not wait on each
    /// other (a block is only a few instructions). The references walk forward instead of being recomputed from the
    /// block number: the JIT's index arithmetic and reloads of the operands were a third of the loop.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Partial<TBlock>(ref byte w, scoped in RowOperands x)
        where TBlock : IBlockProduct
    {
        ref float half = ref x.HalfTable;
        ref float scale = ref x.Scales;
        ref sbyte codes = ref x.Codes;
        ref int offsets = ref x.Offsets;
        ref byte block = ref w;
        Vector256<float> acc0 = default, acc1 = default;
        int b = 0;
        for (; b + 1 < x.Blocks; b += 2)
        {
            ref byte second = ref Unsafe.Add(ref block, TBlock.Bytes);
            Prefetch.Ahead(ref block);    // two blocks are 36 or 68 bytes: a line ahead per pair keeps up
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TBlock.Product(ref block, ref codes, ref offsets)),
                Vector256.Create(RowOperands.Half(ref half, ref block) * scale), acc0);
            acc1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TBlock.Product(ref second, ref Unsafe.Add(ref codes, Values), ref Unsafe.Add(ref offsets, 8))),
                Vector256.Create(RowOperands.Half(ref half, ref second) * Unsafe.Add(ref scale, 1)), acc1);
            block = ref Unsafe.Add(ref block, 2 * TBlock.Bytes);
            codes = ref Unsafe.Add(ref codes, 2 * Values);
            offsets = ref Unsafe.Add(ref offsets, 16);
            scale = ref Unsafe.Add(ref scale, 2);
        }

        if (b < x.Blocks)
        {
            acc0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(TBlock.Product(ref block, ref codes, ref offsets)),
                Vector256.Create(RowOperands.Half(ref half, ref block) * scale), acc0);
        }

        Vector256<float> acc = acc0 + acc1;
        return acc.GetLower() + acc.GetUpper();
    }

    /// <summary>Unsigned bytes times signed bytes, every 4 summed into eight 32-bit lanes added to <c>addend</c>.</summary>
    private interface IDot
    {
        static abstract Vector256<int> Dot(Vector256<int> addend, Vector256<byte> unsigned, Vector256<sbyte> signed);
    }

    /// <summary>vpmaddubsw to 16-bit pairs, vpmaddwd by ones to 32 bits (AVX2).</summary>
    private readonly struct PairSums : IDot
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Dot(Vector256<int> addend, Vector256<byte> unsigned, Vector256<sbyte> signed) =>
            addend + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(unsigned, signed), Vector256.Create((short)1));
    }

    /// <summary>AVX-VNNI's vpdpbusd: the same in one instruction.</summary>
    private readonly struct Vnni : IDot
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Dot(Vector256<int> addend, Vector256<byte> unsigned, Vector256<sbyte> signed) =>
            AvxVnni.MultiplyWideningAndAdd(addend, unsigned, signed);
    }

    /// <summary>One weight type's block: its size, and Σ w × x over it in eight 32-bit lanes.</summary>
    private interface IBlockProduct
    {
        static abstract int Bytes { get; }

        /// <summary>The block at <paramref name="block"/> against the activations' block at <paramref name="codes"/> (and its offsets).</summary>
        static abstract Vector256<int> Product(ref byte block, ref sbyte codes, ref int offsets);
    }

    /// <summary>Q8_0: |w| times x with w's sign (vpsignb), so the unsigned-by-signed product gives w × x.</summary>
    private readonly struct Q8_0Block<TDot> : IBlockProduct
        where TDot : IDot
    {
        public static int Bytes => Q8_0Bytes;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Product(ref byte block, ref sbyte codes, ref int offsets)
        {
            Vector256<sbyte> w = Vector256.LoadUnsafe(ref Unsafe.As<byte, sbyte>(ref Unsafe.Add(ref block, 2)));
            Vector256<sbyte> activations = Vector256.LoadUnsafe(ref codes);
            return TDot.Dot(Vector256<int>.Zero, Avx2.Abs(w), Avx2.Sign(activations, w));
        }
    }

    /// <summary>Q4_0: the 16 bytes' low nibbles then their high nibbles (values 0-15, then 16-31) as stored (0..15),
    /// the product started from the activations' -8 × Σ lanes.</summary>
    private readonly struct Q4_0Block<TDot> : IBlockProduct
        where TDot : IDot
    {
        public static int Bytes => Q4_0Bytes;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<int> Product(ref byte block, ref sbyte codes, ref int offsets)
        {
            Vector128<byte> packed = Vector128.LoadUnsafe(ref Unsafe.Add(ref block, 2));
            Vector256<byte> nibbles = Vector256.Create(packed, Vector128.ShiftRightLogical(packed.AsUInt16(), 4).AsByte()) & Vector256.Create((byte)0x0F);
            return TDot.Dot(Vector256.LoadUnsafe(ref offsets), nibbles, Vector256.LoadUnsafe(ref codes));
        }
    }

    private readonly struct Row<TBlock> : IRowKernel
        where TBlock : IBlockProduct
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<float> Partial(ref byte row, scoped in RowOperands x) => Partial<TBlock>(ref row, x);
    }
}
