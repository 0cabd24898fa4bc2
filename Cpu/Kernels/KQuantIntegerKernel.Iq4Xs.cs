using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using QwenSharp.Numerics;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// IQ4_XS rows (<see cref="Iq4XsBlocks"/>) against Q8_K activations, as ggml's vec_dot_iq4_xs_q8_K: per 32-value sub-block
/// the 4-bit indices become their table values by one in-lane byte shuffle (vpshufb, the 16 values in each 128-bit
/// lane), their products with the activation codes are summed in integers (the weights' signs moved onto the
/// activations, as for Q8_0: both are signed, and the Q8_K codes stay within ±127, so |w| × ±x pairs fit 16 bits), then
/// weighted by the sub-block's scale less 32 (vpmaddwd) into 32-bit lanes for the super-block, and one float multiply-add
/// by d × the activations' scale. The integers are exact; only the float additions' order differs from the scalar
/// reference.
/// </summary>
internal static partial class KQuantIntegerKernel
{
    private const int Iq4XsBytes = Iq4XsBlocks.BlockBytes;

    private readonly struct Iq4XsRow<TScales> : IRowKernel
        where TScales : struct, IIq4XsScales
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<float> Partial(ref byte w, scoped in RowOperands operands) => Iq4XsPartial<TScales>(ref w, operands);
    }

    /// <summary>How the 32-byte kernel unpacks a super-block's scales (<see cref="Iq4XsScales"/>): a type argument, so its loop has no test.</summary>
    private interface IIq4XsScales
    {
        /// <summary>Eight 16-bit words ls_s - 32 in both 128-bit lanes.</summary>
        static abstract Vector256<byte> Unpack(uint scalesLow, uint scalesHigh);
    }

    /// <summary>By two bit deposits (BMI2's pdep), where that is one fast instruction.</summary>
    private readonly struct BitDepositScales : IIq4XsScales
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Unpack(uint scalesLow, uint scalesHigh)
        {
            Vector128<short> words = Iq4XsScaleWords(scalesLow, scalesHigh);
            return Vector256.Create(words, words).AsByte();
        }
    }

    /// <summary>By vector shifts and a pack (AMD before Zen 3 runs pdep in microcode, hundreds of cycles).</summary>
    private readonly struct ShiftedScales : IIq4XsScales
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Unpack(uint scalesLow, uint scalesHigh) => Iq4XsScales(scalesLow, scalesHigh);
    }

    /// <summary>
    /// Whether the 32-byte IQ4_XS kernel unpacks scales by bit deposits: BMI2 where pdep is fast (not AMD before family
    /// 19h). From L2 on Zen 5: 20.6-21.2 GB/s against 18.3 by shifts. Tests set either answer on their own thread (the
    /// deposits only where the CPU has BMI2).
    /// </summary>
    internal static bool DepositsScales => Bmi2.X64.IsSupported && ThreadOverride<ScaleDepositSwitch>.Or(!(CpuIdentity.IsAmd && CpuIdentity.Family < 0x19));

    /// <summary>Until disposed, this thread's IQ4_XS kernels take <paramref name="deposit"/> as <see cref="DepositsScales"/>' answer (for tests).</summary>
    internal static ThreadOverride<ScaleDepositSwitch>.Scope AssumeScaleDeposit(bool deposit) => ThreadOverride<ScaleDepositSwitch>.Set(deposit);

    /// <summary>Names <see cref="DepositsScales"/>' <see cref="ThreadOverride{TSwitch}"/>.</summary>
    internal readonly struct ScaleDepositSwitch
    {
    }

    private readonly struct Iq4XsWideRow : IRowKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<float> Partial(ref byte w, scoped in RowOperands operands) => Iq4XsPartialWide(ref w, operands);
    }

    /// <summary>One IQ4_XS row's dot product, four partial sums (the rows must be pinned: the 16-byte broadcasts load from pointers).</summary>
    /// <remarks>
    /// The eight scales are unpacked once a super-block into eight 16-bit words (<typeparamref name="TScales"/>), and each
    /// sub-block's reaches its vpmaddwd by one in-lane byte shuffle with a constant index: unpacked by scalar shifts and
    /// masks per sub-block and broadcast, they took more instructions than the product itself (1536-wide rows from L2 on
    /// Zen 5: 14 GB/s).
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector128<float> Iq4XsPartial<TScales>(ref byte w, scoped in RowOperands operands)
        where TScales : struct, IIq4XsScales
    {
        ref float half = ref operands.HalfTable;
        ref sbyte q8 = ref operands.Codes;
        ref float xd = ref operands.Scales;
        byte* block = (byte*)Unsafe.AsPointer(ref w);
        var nibbles = new Iq4XsNibbles(Vector256.Create(Vector128.Create(Iq4XsBlocks.NonLinearValues)), Vector256.Create(0u, 0, 0, 0, 4, 4, 4, 4), Vector256.Create((byte)0x0F));
        Vector256<float> acc = default;
        for (int b = 0; b < operands.Blocks; b++)
        {
            Prefetch.Ahead(ref *block, 3);
            Vector256<byte> scales = TScales.Unpack(Unsafe.ReadUnaligned<uint>(block + 4), Unsafe.ReadUnaligned<ushort>(block + 2));
            byte* qs = block + 8;

            // Two chains of sub-blocks, so that consecutive vpmaddwd-adds do not wait on each other.
            Vector256<int> even = Iq4XsSubBlock(qs, ref q8, scales, 0, nibbles) + Iq4XsSubBlock(qs, ref q8, scales, 2, nibbles);
            Vector256<int> odd = Iq4XsSubBlock(qs, ref q8, scales, 1, nibbles) + Iq4XsSubBlock(qs, ref q8, scales, 3, nibbles);
            even += Iq4XsSubBlock(qs, ref q8, scales, 4, nibbles) + Iq4XsSubBlock(qs, ref q8, scales, 6, nibbles);
            odd += Iq4XsSubBlock(qs, ref q8, scales, 5, nibbles) + Iq4XsSubBlock(qs, ref q8, scales, 7, nibbles);
            acc = Fma.MultiplyAdd(Vector256.Create(RowOperands.Half(ref half, ref *block) * xd), Avx.ConvertToVector256Single(even + odd), acc);
            block += Iq4XsBytes;
            q8 = ref Unsafe.Add(ref q8, Values);
            xd = ref Unsafe.Add(ref xd, 1);
        }

        return acc.GetLower() + acc.GetUpper();
    }

    /// <summary>The table and the constants that turn a sub-block's 16 bytes into its 32 table values, made once before a loop.</summary>
    private readonly struct Iq4XsNibbles(Vector256<sbyte> values, Vector256<uint> highDown, Vector256<byte> low4)
    {
        /// <summary>The 16 table values in each 128-bit lane (for vpshufb).</summary>
        public readonly Vector256<sbyte> Values = values;

        /// <summary>Shift counts: 0 for the lower four 32-bit lanes, 4 for the upper four (their high nibbles down).</summary>
        public readonly Vector256<uint> HighDown = highDown;

        public readonly Vector256<byte> Low4 = low4;
    }

    /// <summary>
    /// A super-block's eight scales less 32 (ls_s - 32, as <see cref="Iq4XsBlocks.SubBlockScale"/>) as 16-bit words s, in both
    /// 128-bit lanes: scales_l's nibble s (bits 4s..4s + 3 of its 32 bits) and scales_h's bits 2s, 2s + 1 above it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Iq4XsScales(uint scalesLow, uint scalesHigh)
    {
        Vector256<uint> low = Avx2.ShiftRightLogicalVariable(Vector256.Create(scalesLow), Vector256.Create(0u, 4, 8, 12, 16, 20, 24, 28)) & Vector256.Create(0x0Fu);
        Vector256<uint> high = Avx2.ShiftRightLogicalVariable(Vector256.Create(scalesHigh), Vector256.Create(0u, 2, 4, 6, 8, 10, 12, 14)) & Vector256.Create(3u);
        Vector256<int> scales = (low | (high << 4)).AsInt32() - Vector256.Create(32);
        Vector128<short> words = Sse2.PackSignedSaturate(scales.GetLower(), scales.GetUpper());
        return Vector256.Create(words, words).AsByte();
    }

    /// <summary>
    /// Sub-block <paramref name="s"/>'s 16 bytes (broadcast to both lanes; the upper lane's 32-bit words shifted down by 4 so
    /// its bytes' low bits are the high nibbles: values 16-31) against its 32 activation codes, times its scale (word s of
    /// <paramref name="scales"/>, spread by a byte shuffle), in eight 32-bit lanes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector256<int> Iq4XsSubBlock(byte* qs, ref sbyte q8, Vector256<byte> scales, int s, Iq4XsNibbles nibbles)
    {
        Vector256<byte> indexes = Avx2.ShiftRightLogicalVariable(Avx2.BroadcastVector128ToVector256(qs + (16 * s)).AsUInt32(), nibbles.HighDown).AsByte() & nibbles.Low4;
        Vector256<sbyte> w = Avx2.Shuffle(nibbles.Values, indexes.AsSByte());
        Vector256<short> pairs = Avx2.MultiplyAddAdjacent(Avx2.Abs(w), Avx2.Sign(Vector256.LoadUnsafe(ref q8, (nuint)(32 * s)), w));
        Vector256<short> scale = Avx2.Shuffle(scales, Vector256.Create((ushort)((2 * s) | (((2 * s) + 1) << 8))).AsByte()).AsInt16();
        return Avx2.MultiplyAddAdjacent(pairs, scale);
    }

    /// <summary>
    /// <see cref="Iq4XsPartial"/> as 64-byte products, where <see cref="VectorUnits.Wide"/>: two sub-blocks a step, their 32
    /// bytes spread by one vpermq to the 128-bit lanes (s, s, s + 1, s + 1) and split by one GFNI transform (low nibbles in
    /// lanes 0 and 2, high nibbles moved down in 1 and 3), against the two sub-blocks' 64 activation codes as they lie. The
    /// table gives each index's magnitude (AVX-512 has no vpsignb): the activations are negated where the index is below
    /// 8 (the table's negative half) by one masked blend. The same integers in the same lanes' order of sub-blocks as the
    /// 32-byte kernel's, added pairwise.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector128<float> Iq4XsPartialWide(ref byte w, scoped in RowOperands operands)
    {
        ref float half = ref operands.HalfTable;
        ref sbyte q8 = ref operands.Codes;
        ref float xd = ref operands.Scales;
        byte* block = (byte*)Unsafe.AsPointer(ref w);
        Vector512<byte> magnitudes = Vector512.Create(Vector128.Abs(Vector128.Create(Iq4XsBlocks.NonLinearValues)).AsByte());
        Vector512<ulong> spread = Vector512.Create(0ul, 1, 0, 1, 2, 3, 2, 3);
        Vector512<byte> split = Vector512.Create(Vector256.Create(Vector128.Create(LowNibble), Vector128.Create(HighNibbleDown))).AsByte();
        Vector512<byte> pick0 = Iq4XsScalePair(0), pick2 = Iq4XsScalePair(2), pick4 = Iq4XsScalePair(4), pick6 = Iq4XsScalePair(6);
        Vector512<float> acc = default;
        for (int b = 0; b < operands.Blocks; b++)
        {
            Prefetch.Ahead(ref *block, 3);
            Vector512<byte> scales = Iq4XsScalesWide(Unsafe.ReadUnaligned<uint>(block + 4), Unsafe.ReadUnaligned<ushort>(block + 2));
            byte* qs = block + 8;
            Vector512<int> first = Iq4XsPairWide(qs, ref q8, scales, 0, pick0, magnitudes, spread, split) + Iq4XsPairWide(qs, ref q8, scales, 4, pick4, magnitudes, spread, split);
            Vector512<int> second = Iq4XsPairWide(qs, ref q8, scales, 2, pick2, magnitudes, spread, split) + Iq4XsPairWide(qs, ref q8, scales, 6, pick6, magnitudes, spread, split);
            acc = Avx512F.FusedMultiplyAdd(Vector512.Create(RowOperands.Half(ref half, ref *block) * xd), Avx512F.ConvertToVector512Single(first + second), acc);
            block += Iq4XsBytes;
            q8 = ref Unsafe.Add(ref q8, Values);
            xd = ref Unsafe.Add(ref xd, 1);
        }

        Vector256<float> sums = acc.GetLower() + acc.GetUpper();
        return sums.GetLower() + sums.GetUpper();
    }

    /// <summary>
    /// <see cref="Iq4XsScales"/> for the 64-byte kernel, in every 128-bit lane: the eight 6-bit scales as bytes of one 64-bit
    /// word by two bit deposits (scales_l's nibbles into the bytes' low nibbles, scales_h's pairs of bits above them), less
    /// 32 and widened to words in one register. By vector shifts, a pack and lane inserts (a long chain a super-block) the
    /// kernel ran at 22 GB/s from L2 against 33 with the scales left out (Zen 5).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Iq4XsScalesWide(uint scalesLow, uint scalesHigh)
    {
        Vector512<int> lane = Iq4XsScaleWords(scalesLow, scalesHigh).ToVector256Unsafe().ToVector512Unsafe().AsInt32();
        return Avx512F.Shuffle4x128(lane, lane, 0).AsByte();
    }

    /// <summary>The eight scales less 32 as 16-bit words, by two bit deposits (scales_l's nibbles into eight bytes' low nibbles, scales_h's pairs of bits above them).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<short> Iq4XsScaleWords(uint scalesLow, uint scalesHigh)
    {
        ulong packed = Bmi2.X64.ParallelBitDeposit(scalesLow, 0x0F0F0F0F0F0F0F0Ful) | Bmi2.X64.ParallelBitDeposit(scalesHigh, 0x3030303030303030ul);
        return Sse41.ConvertToVector128Int16(Vector128.CreateScalarUnsafe(packed).AsSByte() - Vector128.Create((sbyte)32));
    }

    /// <summary>Sub-blocks <paramref name="s"/> and <paramref name="s"/> + 1 against their 64 activation codes, times their scales, in sixteen 32-bit lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector512<int> Iq4XsPairWide(byte* qs, ref sbyte q8, Vector512<byte> scales, int s, Vector512<byte> pick, Vector512<byte> magnitudes,
        Vector512<ulong> spread, Vector512<byte> split)
    {
        Vector512<byte> packed = Avx512F.PermuteVar8x64(Vector256.Load(qs + (16 * s)).ToVector512Unsafe().AsUInt64(), spread).AsByte();
        Vector512<byte> indexes = Gfni.V512.GaloisFieldAffineTransform(packed, split, 0);
        Vector512<sbyte> x = Vector512.LoadUnsafe(ref q8, (nuint)(32 * s));
        Vector512<sbyte> signed = Vector512.ConditionalSelect(Vector512.LessThan(indexes, Vector512.Create((byte)8)).AsSByte(), -x, x);
        Vector512<short> pairs = Avx512BW.MultiplyAddAdjacent(Avx512BW.Shuffle(magnitudes, indexes), signed);
        return Avx512BW.MultiplyAddAdjacent(pairs, Avx512BW.Shuffle(scales, pick).AsInt16());
    }

    /// <summary>
    /// vpshufb indexes that spread word <paramref name="s"/> of <see cref="Iq4XsScalesWide"/>'s scales over lanes 0 and 1 and
    /// word <paramref name="s"/> + 1 over lanes 2 and 3 (made before the loop: built inside it, each took four instructions).
    /// </summary>
    private static Vector512<byte> Iq4XsScalePair(int s)
    {
        Vector256<byte> first = Vector256.Create((ushort)((2 * s) | (((2 * s) + 1) << 8))).AsByte();
        Vector256<byte> second = Vector256.Create((ushort)(((2 * s) + 2) | (((2 * s) + 3) << 8))).AsByte();
        return Avx512F.InsertVector256(first.ToVector512Unsafe(), second, 1);
    }

    /// <summary>The reference: per super-block Σ_s (ls_s - 32) × Σ_j value × x in integers, then (d × the activations' scale) × that.</summary>
    private static float Iq4XsScalar(ref byte w, scoped in RowOperands operands)
    {
        float total = 0;
        for (int b = 0; b < operands.Blocks; b++)
        {
            ReadOnlySpan<byte> block = System.Runtime.InteropServices.MemoryMarshal.CreateReadOnlySpan(ref Unsafe.Add(ref w, b * Iq4XsBytes), Iq4XsBytes);
            int sum = 0;
            for (int s = 0; s < 8; s++)
            {
                int subBlock = 0;
                for (int j = 0; j < 32; j++)
                {
                    subBlock += Iq4XsBlocks.Code(block, (32 * s) + j) * Unsafe.Add(ref operands.Codes, (b * Values) + (32 * s) + j);
                }

                sum += Iq4XsBlocks.SubBlockScale(block, s) * subBlock;
            }

            total += RowOperands.Half(ref operands.HalfTable, ref Unsafe.Add(ref w, b * Iq4XsBytes)) * Unsafe.Add(ref operands.Scales, b) * sum;
        }

        return total;
    }
}
