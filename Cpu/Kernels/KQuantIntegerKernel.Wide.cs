using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Q4_K and Q5_K as 64-byte products, where <see cref="VectorUnits.Wide"/>: each 64-value chunk's 32 bytes of nibbles
/// broadcast to both halves of a 512-bit register, and one GFNI affine transform with a different bit matrix per half
/// (<see cref="LowNibble"/> below, <see cref="HighNibbleDown"/> above) leaves sub-block 2c's codes in the lower half and
/// 2c + 1's in the upper, against the chunk's 64 activation codes as they lie. One vpmaddubsw, one vpshufb for the two
/// sub-blocks' scales and one vpmaddwd then do what the 256-bit kernel does in a mask, a transform, two vpmaddubsw, two
/// vpshufb and two vpdpwssd. The 32-bit lanes hold the same integers as that kernel's (lower and upper halves added), so
/// the results are the same bit for bit. On Zen 5 (AVX-VNNI and GFNI, four 512-bit pipes), one core from L2: Q4_K 4.1-4.3
/// ns a super-block against 5.4-5.6 (3.8 since its scales are spread by vpshufb, see <see cref="Q4KPartialWide"/>), Q5_K
/// 4.8-5.1 against 5.6-5.8; over 512 MiB from memory, in ratio to a plain sum timed beside it (<c>bench stream</c>), Q4_K
/// 85-92% against 70-82%, and Q6_K's 64-byte kernel 89-98% against the 32-byte VNNI one's 74-85% (alternating builds; a
/// host whose read rate swung from 20 to 39 GB/s). Q6_K then got the same
/// treatment (<see cref="Q6KPartialWide"/>): 4.0 ns a super-block from L2 against <see cref="Q6KHalf512"/>'s 5.4, the
/// same sums; a Q4_K_M 1.5B model on one thread decoded alike (26.5 against 27.2 tokens/s, medians of 4 alternating runs:
/// its Q6_K matrices already streamed at the memory's pace there).
/// </summary>
internal static partial class KQuantIntegerKernel
{
    /// <summary>The GFNI bit matrix whose output bits 0-3 are input bits 0-3 and 4-7 are zero: a byte's low nibble.</summary>
    private const ulong LowNibble = 0x01_02_04_08_00_00_00_00;

    private readonly struct Q4KWideRow : IRowKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<float> Partial(ref byte w, scoped in RowOperands operands) => Q4KPartialWide(ref w, operands, fifth: false);
    }

    private readonly struct Q5KWideRow : IRowKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<float> Partial(ref byte w, scoped in RowOperands operands) => Q4KPartialWide(ref w, operands, fifth: true);
    }

    /// <summary>
    /// One Q4_K row, or with <paramref name="fifth"/> one Q5_K row (its fifth bits from qh, broadcast once a super-block, by a
    /// second transform per chunk). The rows must be pinned: the 32-byte broadcasts load from pointers. The per-chunk index
    /// and bit-matrix vectors are made before the loop: built inside it, the JIT assembled each from two halves every
    /// super-block. A loop of its own, not a branch of <see cref="Q4KPartial"/>: as one method the JIT no longer inlined it
    /// into the four-row runner, and Q4_K took 4.95-5.1 ns a super-block from L2 against 4.1-4.4 (Q6_K's, as a branch of
    /// <see cref="Q6KPartial"/>, 4.1 against 4.0).
    /// </summary>
    /// <remarks>
    /// The sub-blocks' scales are spread by an in-lane vpshufb from the eight scale bytes broadcast to every lane. With
    /// vpermw over the widened scales (as Q6_K's groups still are), Q4_K took 4.1-4.2 ns a super-block from L2 against 3.8,
    /// Q5_K 4.85 against 4.73 (alternating builds, the same sums). A Q4_K_M 1.5B model on one thread decoded 26.7 against
    /// 25.5 tokens/s (medians of 8 alternating runs); from memory alone the kernel streamed alike (<c>bench stream</c>:
    /// 74-78% of the sum either way). Q6_K's groups spread the same way (vpshufb to each word's high byte, then vpsraw for
    /// the sign) took 4.2 ns against vpermw's 4.0.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector128<float> Q4KPartialWide(ref byte w, scoped in RowOperands operands, bool fifth)
    {
        ref float half = ref operands.HalfTable;
        ref sbyte q8 = ref operands.Codes;
        ref float xd = ref operands.Scales;
        ref short sums = ref operands.Sums;
        byte* block = (byte*)Unsafe.AsPointer(ref w);
        int blockBytes = fifth ? Q5KBytes : Q4KBytes;
        Vector512<byte> split = Vector512.Create(Vector256.Create(LowNibble), Vector256.Create(HighNibbleDown)).AsByte();
        Vector512<byte> pick0 = ScalePair(0), pick1 = ScalePair(1), pick2 = ScalePair(2), pick3 = ScalePair(3);
        Vector512<byte> bits0 = fifth ? FifthBitPair(0) : default, bits1 = fifth ? FifthBitPair(1) : default;
        Vector512<byte> bits2 = fifth ? FifthBitPair(2) : default, bits3 = fifth ? FifthBitPair(3) : default;
        Vector256<float> acc = default;
        Vector128<float> mins = default;
        for (int b = 0; b < operands.Blocks; b++)
        {
            Prefetch.Ahead(ref *block, 3);
            byte* qs = block + (fifth ? 48 : 16);
            (ulong packedScales, ulong packedMins) = UnpackScalesAndMins(ref block[4]);
            Vector512<byte> scales = Vector512.Create(packedScales).AsByte();    // a vpbroadcastq, for the in-lane vpshufb below
            Vector512<byte> qh = fifth ? Broadcast32(block + 16) : default;

            // Two chains, as the 256-bit kernel's.
            Vector512<int> even = ChunkWide(qs, ref q8, 0, split, Avx512BW.Shuffle(scales, pick0).AsInt16(), qh, bits0, fifth);
            Vector512<int> odd = ChunkWide(qs, ref q8, 1, split, Avx512BW.Shuffle(scales, pick1).AsInt16(), qh, bits1, fifth);
            even += ChunkWide(qs, ref q8, 2, split, Avx512BW.Shuffle(scales, pick2).AsInt16(), qh, bits2, fifth);
            odd += ChunkWide(qs, ref q8, 3, split, Avx512BW.Shuffle(scales, pick3).AsInt16(), qh, bits3, fifth);
            Vector512<int> both = even + odd;
            Vector256<int> sumi = both.GetLower() + both.GetUpper();

            Vector128<int> summ = Sse2.MultiplyAddAdjacent(Sse41.ConvertToVector128Int16(Vector128.CreateScalar(packedMins).AsByte()), Vector128.LoadUnsafe(ref sums));
            float dx = xd;
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sumi), Vector256.Create(dx * RowOperands.Half(ref half, ref *block)), acc);
            mins = Fma.MultiplyAdd(Sse2.ConvertToVector128Single(summ), Vector128.Create(dx * RowOperands.Half(ref half, ref block[2])), mins);
            block += blockBytes;
            q8 = ref Unsafe.Add(ref q8, Values);
            xd = ref Unsafe.Add(ref xd, 1);
            sums = ref Unsafe.Add(ref sums, 8);
        }

        return acc.GetLower() + acc.GetUpper() - mins;
    }

    private readonly struct Q6KWideRow : IRowKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<float> Partial(ref byte w, scoped in RowOperands operands) => Q6KPartialWide(ref w, operands);
    }

    /// <summary>
    /// One Q6_K row as 64-byte products: each 128-value half's 64 bytes of low nibbles are one load, and its 32 bytes of
    /// high bits are broadcast to both halves, so two quarters' codes come from one mask and one transform (quarters 1 and
    /// 2) or two transforms (3 and 4), each with a bit matrix per half; the group scales are spread by vpermw from the 16
    /// widened once a super-block. The integers are <see cref="Q6KHalf512"/>'s.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector128<float> Q6KPartialWide(ref byte w, scoped in RowOperands operands)
    {
        ref float half = ref operands.HalfTable;
        ref sbyte q8 = ref operands.Codes;
        ref float xd = ref operands.Scales;
        ref short sums = ref operands.Sums;
        byte* block = (byte*)Unsafe.AsPointer(ref w);
        var low4 = Vector512.Create((byte)0x0F);
        Vector512<byte> highDown = Vector512.Create(HighNibbleDown).AsByte();
        Vector512<byte> bits01 = Vector512.Create(Vector256.Create(TwoBitsUp(0)), Vector256.Create(TwoBitsUp(2))).AsByte();
        Vector512<byte> bits45 = Vector512.Create(Vector256.Create(TwoBitsUp(4)), Vector256.Create(TwoBitsUp(6))).AsByte();
        Vector512<short> groups0 = GroupQuad(0), groups4 = GroupQuad(4), groups8 = GroupQuad(8), groups12 = GroupQuad(12);
        Vector256<float> acc = default;
        for (int b = 0; b < operands.Blocks; b++)
        {
            Prefetch.Ahead(ref *block, 4);
            Vector128<sbyte> scales = Vector128.Load((sbyte*)(block + 192));
            Vector512<short> scales16 = Avx512BW.ConvertToVector512Int16(scales.ToVector256Unsafe()).AsInt16();
            Vector512<int> products = Q6KHalfWide(block, ref q8, 0, scales16, groups0, groups4, low4, highDown, bits01, bits45)
                + Q6KHalfWide(block, ref q8, 128, scales16, groups8, groups12, low4, highDown, bits01, bits45);
            Vector256<int> sumi = products.GetLower() + products.GetUpper();
            sumi -= Offsets(scales, ref sums);
            float d = xd * RowOperands.Half(ref half, ref block[208]);
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sumi), Vector256.Create(d), acc);
            block += Q6KBytes;
            q8 = ref Unsafe.Add(ref q8, Values);
            xd = ref Unsafe.Add(ref xd, 1);
            sums = ref Unsafe.Add(ref sums, 16);
        }

        return acc.GetLower() + acc.GetUpper();
    }

    /// <summary>Σ scale × Σ code × x over the 128-value half at <paramref name="n"/>, in sixteen 32-bit lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector512<int> Q6KHalfWide(byte* block, ref sbyte q8, int n, Vector512<short> scales16, Vector512<short> firstGroups,
        Vector512<short> secondGroups, Vector512<byte> low4, Vector512<byte> highDown, Vector512<byte> bits01, Vector512<byte> bits45)
    {
        Vector512<byte> nibbles = Vector512.Load(block + (n / 2));
        Vector512<byte> high = Broadcast32(block + 128 + (n / 4));
        Vector512<byte> first = (nibbles & low4) | Gfni.V512.GaloisFieldAffineTransform(high, bits01, 0);
        Vector512<byte> second = Gfni.V512.GaloisFieldAffineTransform(nibbles, highDown, 0) | Gfni.V512.GaloisFieldAffineTransform(high, bits45, 0);
        return Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(first, Vector512.LoadUnsafe(ref q8, (nuint)n)), Avx512BW.PermuteVar32x16(scales16, firstGroups))
            + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(second, Vector512.LoadUnsafe(ref q8, (nuint)(n + 64))), Avx512BW.PermuteVar32x16(scales16, secondGroups));
    }

    /// <summary>vpermw indexes: groups <paramref name="g"/> to <paramref name="g"/> + 3, one per 128-bit lane.</summary>
    private static Vector512<short> GroupQuad(int g) =>
        Vector512.Create(Vector256.Create(Vector128.Create((short)g), Vector128.Create((short)(g + 1))),
            Vector256.Create(Vector128.Create((short)(g + 2)), Vector128.Create((short)(g + 3))));

    /// <summary>Σ scale × Σ code × x over sub-blocks 2c (lower half) and 2c + 1 (upper half), in sixteen 32-bit lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector512<int> ChunkWide(byte* qs, ref sbyte q8, int c, Vector512<byte> split, Vector512<short> scale, Vector512<byte> qh,
        Vector512<byte> fifthBits, bool fifth)
    {
        Vector512<byte> codes = Gfni.V512.GaloisFieldAffineTransform(Broadcast32(qs + (32 * c)), split, 0);
        if (fifth)
        {
            codes |= Gfni.V512.GaloisFieldAffineTransform(qh, fifthBits, 0);
        }

        Vector512<short> pairs = Avx512BW.MultiplyAddAdjacent(codes, Vector512.LoadUnsafe(ref q8, (nuint)(64 * c)));
        return Avx512BW.MultiplyAddAdjacent(pairs, scale);
    }

    /// <summary>
    /// 32 bytes in both halves. Through AVX512DQ's 32-bit form (vbroadcasti32x8): with the 64-bit form
    /// (<c>Avx512F.BroadcastVector256ToVector512(ulong*)</c>), .NET 10.0.12's JIT listed vbroadcasti64x4 with a 16-byte
    /// operand, and the products came out wrong (the tests caught it).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector512<byte> Broadcast32(byte* at) => Avx512DQ.BroadcastVector256ToVector512((int*)at).AsByte();

    /// <summary>
    /// vpshufb indexes spreading the 8 scales (one byte each, in every 128-bit lane) as 16-bit lanes: scale 2c in the
    /// lower half's, 2c + 1 in the upper's (the set top bit zeroes each lane's high byte).
    /// </summary>
    private static Vector512<byte> ScalePair(int c) =>
        Vector512.Create(Vector256.Create((ushort)(0x8000 | (2 * c))), Vector256.Create((ushort)(0x8000 | ((2 * c) + 1)))).AsByte();

    /// <summary>Bit matrices moving qh's bit 2c (lower half) or 2c + 1 (upper half) to bit 4, as <see cref="FifthBitGfni"/>.</summary>
    private static Vector512<byte> FifthBitPair(int c) =>
        Vector512.Create(Vector256.Create((ulong)(1u << (2 * c)) << 24), Vector256.Create((ulong)(1u << ((2 * c) + 1)) << 24)).AsByte();
}
