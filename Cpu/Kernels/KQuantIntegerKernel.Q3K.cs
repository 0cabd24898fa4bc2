using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using QwenSharp.Numerics;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Q3_K rows as stored (110 bytes a super-block: hmask[32], qs[64], 12 bytes of 16 six-bit scales, f16 d) against Q8_K
/// activations. A value is d × (sc - 32) × q with q = c - 4, c = its two low bits (laid out as Q2_K's: v = 128n + 32t + l
/// takes bits 2t, 2t + 1 of qs[32n + l]) | its high bit (bit 4n + t of hmask[l]) × 4, in 0..7. So each 16-value group's
/// sum is (sc - 32) × (Σ c × x - 4 Σ x): the unsigned c against the activation codes by vpmaddubsw, pairs weighted by
/// the signed scales by vpmaddwd, and the -4 Σ x of every group from the activations' sums of 16 in one more vpmaddwd a
/// super-block; one float multiply-add a super-block. The integers are exact; only the float additions' order differs
/// from the scalar reference. (ggml's vec_dot_q3_K_q8_K subtracts a second product of the high bits instead.)
/// </summary>
internal static partial class KQuantIntegerKernel
{
    private const int Q3KBytes = WidenedBlocks.Q3_KBytes;

    private readonly struct Q3KRow : IRowKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<float> Partial(ref byte w, scoped in RowOperands operands) => Q3KPartial(ref w, operands);
    }

    private readonly struct Q3KWideRow : IRowKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<float> Partial(ref byte w, scoped in RowOperands operands) => Q3KPartialWide(ref w, operands);
    }

    /// <summary>
    /// The 16 scales of a super-block, sc - 32 in -32..31, in group order: the low four bits of scale s in the low (s &lt; 8)
    /// or high nibble of byte s % 8, its top two in bits 2 (s / 4) and up of byte 8 + s % 4 (ggml's kmask unpacking, eight
    /// scales to a 64-bit word).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe Vector128<sbyte> Q3KScales(byte* packed)
    {
        const ulong LowNibbles = 0x0F0F0F0F0F0F0F0F;
        const uint TwoBits = 0x03030303;
        ulong low = Unsafe.ReadUnaligned<ulong>(packed);
        uint top = Unsafe.ReadUnaligned<uint>(packed + 8);
        ulong first = (low & LowNibbles) | (((top & TwoBits) | ((ulong)((top >> 2) & TwoBits) << 32)) << 4);
        ulong second = ((low >> 4) & LowNibbles) | ((((top >> 4) & TwoBits) | ((ulong)((top >> 6) & TwoBits) << 32)) << 4);
        return Vector128.Create(first, second).AsSByte() - Vector128.Create((sbyte)32);
    }

    /// <summary>One Q3_K row's dot product, four partial sums (the rows must be pinned).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector128<float> Q3KPartial(ref byte w, scoped in RowOperands operands)
    {
        ref float half = ref operands.HalfTable;
        ref sbyte q8 = ref operands.Codes;
        ref float xd = ref operands.Scales;
        ref short sums = ref operands.Sums;
        byte* block = (byte*)Unsafe.AsPointer(ref w);
        Vector256<byte> low2 = Vector256.Create((byte)3), bit2 = Vector256.Create((byte)4);

        // Even groups' scales to the lower 128 bits, odd ones' to the upper (a quarter's two groups, values 0-15 and 16-31).
        Vector128<byte> evenOdd = Vector128.Create((byte)0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
        Vector256<float> acc = default;
        for (int b = 0; b < operands.Blocks; b++)
        {
            Prefetch.Ahead(ref *block, 2);
            Vector128<sbyte> scales = Q3KScales(block + 96);
            Vector256<short> byGroup = Avx2.ConvertToVector256Int16(scales);
            Vector256<short> byQuarter = Avx2.ConvertToVector256Int16(Ssse3.Shuffle(scales.AsByte(), evenOdd).AsSByte());
            Vector256<int> offsets = Avx2.MultiplyAddAdjacent(byGroup, Vector256.LoadUnsafe(ref sums));

            // Two chains (the halves n = 0, 1), so that consecutive vpmaddwd-adds do not wait on each other.
            Vector256<byte> hmask = Vector256.Load(block), first = Vector256.Load(block + 32), second = Vector256.Load(block + 64);
            Vector256<int> even = Q3KQuarter(first, hmask, ref q8, 0, 0, byQuarter, low2, bit2) + Q3KQuarter(first, hmask, ref q8, 0, 1, byQuarter, low2, bit2);
            Vector256<int> odd = Q3KQuarter(second, hmask, ref q8, 1, 0, byQuarter, low2, bit2) + Q3KQuarter(second, hmask, ref q8, 1, 1, byQuarter, low2, bit2);
            even += Q3KQuarter(first, hmask, ref q8, 0, 2, byQuarter, low2, bit2) + Q3KQuarter(first, hmask, ref q8, 0, 3, byQuarter, low2, bit2);
            odd += Q3KQuarter(second, hmask, ref q8, 1, 2, byQuarter, low2, bit2) + Q3KQuarter(second, hmask, ref q8, 1, 3, byQuarter, low2, bit2);
            Vector256<int> total = even + odd - Avx2.ShiftLeftLogical(offsets, 2);
            acc = Fma.MultiplyAdd(Vector256.Create(RowOperands.Half(ref half, ref block[108]) * xd), Avx.ConvertToVector256Single(total), acc);
            block += Q3KBytes;
            q8 = ref Unsafe.Add(ref q8, Values);
            xd = ref Unsafe.Add(ref xd, 1);
            sums = ref Unsafe.Add(ref sums, 16);
        }

        return acc.GetLower() + acc.GetUpper();
    }

    /// <summary>
    /// Values 128n + 32t.. (groups 8n + 2t and 8n + 2t + 1): their codes c (bits 2t of <paramref name="qs"/>, and bit
    /// 4n + t of <paramref name="hmask"/> moved to bit 2 by a 16-bit shift that never carries a neighbour's bit there)
    /// against their 32 activation codes, pairs weighted by their group's scale (word 4n + t of each 128-bit lane of
    /// <paramref name="scales"/>), in eight 32-bit lanes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Q3KQuarter(Vector256<byte> qs, Vector256<byte> hmask, ref sbyte q8, int n, int t, Vector256<short> scales,
        Vector256<byte> low2, Vector256<byte> bit2)
    {
        int k = (4 * n) + t;
        Vector256<byte> twoBits = (t == 0 ? qs : Vector256.ShiftRightLogical(qs.AsUInt16(), 2 * t).AsByte()) & low2;
        Vector256<byte> high = (k < 2 ? Vector256.ShiftLeft(hmask.AsUInt16(), 2 - k).AsByte()
            : k == 2 ? hmask : Vector256.ShiftRightLogical(hmask.AsUInt16(), k - 2).AsByte()) & bit2;
        Vector256<short> pairs = Avx2.MultiplyAddAdjacent(twoBits | high, Vector256.LoadUnsafe(ref q8, (nuint)((128 * n) + (32 * t))));
        Vector256<byte> pick = Vector256.Create(WordPick(k)).AsByte();
        return Avx2.MultiplyAddAdjacent(pairs, Avx2.Shuffle(scales.AsByte(), pick).AsInt16());
    }

    /// <summary>
    /// <see cref="Q3KPartial"/> as 64-byte products, where <see cref="VectorUnits.Wide"/>: each half's 32 bytes of two-bit
    /// codes and the 32 high-bit bytes broadcast to both 256-bit halves and shifted by a 16-bit variable shift, so one
    /// product takes two quarters (64 consecutive values, four groups: group 8n + 2t + j in 128-bit lane j).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector128<float> Q3KPartialWide(ref byte w, scoped in RowOperands operands)
    {
        ref float half = ref operands.HalfTable;
        ref sbyte q8 = ref operands.Codes;
        ref float xd = ref operands.Scales;
        ref short sums = ref operands.Sums;
        byte* block = (byte*)Unsafe.AsPointer(ref w);
        Vector512<byte> low2 = Vector512.Create((byte)3), bit0 = Vector512.Create((byte)1);
        Vector512<ushort> twoBits01 = HalfShifts(0, 2), twoBits23 = HalfShifts(4, 6);
        Vector512<ushort> high01 = HalfShifts(0, 1), high23 = HalfShifts(2, 3), high45 = HalfShifts(4, 5), high67 = HalfShifts(6, 7);

        // Scales by group modulo 4 (groups j, j + 4, j + 8, j + 12 in lane j), each lane's four words then picked by half and pair.
        Vector128<byte> byLane = Vector128.Create((byte)0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        Vector512<ulong> spread = Vector512.Create(0UL, 0, 1, 1, 2, 2, 3, 3);
        Vector512<byte> pick0 = Vector512.Create(WordPick(0)).AsByte(), pick1 = Vector512.Create(WordPick(1)).AsByte();
        Vector512<byte> pick2 = Vector512.Create(WordPick(2)).AsByte(), pick3 = Vector512.Create(WordPick(3)).AsByte();
        Vector512<float> acc = default;
        Vector256<float> offsetAcc = default;
        for (int b = 0; b < operands.Blocks; b++)
        {
            Prefetch.Ahead(ref *block, 2);
            Vector128<sbyte> scales = Q3KScales(block + 96);
            Vector256<int> offsets = Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(scales), Vector256.LoadUnsafe(ref sums));
            Vector256<short> grouped = Avx2.ConvertToVector256Int16(Ssse3.Shuffle(scales.AsByte(), byLane).AsSByte());
            Vector512<short> lanes = Avx512F.PermuteVar8x64(grouped.AsUInt64().ToVector512Unsafe(), spread).AsInt16();
            Vector512<byte> hmask = Broadcast32(block), first = Broadcast32(block + 32), second = Broadcast32(block + 64);
            Vector512<int> even = Q3KHalfQuarters(first, hmask, ref q8, 0, twoBits01, high01, lanes, pick0, low2, bit0)
                + Q3KHalfQuarters(first, hmask, ref q8, 64, twoBits23, high23, lanes, pick1, low2, bit0);
            Vector512<int> odd = Q3KHalfQuarters(second, hmask, ref q8, 128, twoBits01, high45, lanes, pick2, low2, bit0)
                + Q3KHalfQuarters(second, hmask, ref q8, 192, twoBits23, high67, lanes, pick3, low2, bit0);
            float scale = RowOperands.Half(ref half, ref block[108]) * xd;
            acc = Avx512F.FusedMultiplyAdd(Vector512.Create(scale), Avx512F.ConvertToVector512Single(even + odd), acc);
            offsetAcc = Fma.MultiplyAdd(Vector256.Create(-4 * scale), Avx.ConvertToVector256Single(offsets), offsetAcc);
            block += Q3KBytes;
            q8 = ref Unsafe.Add(ref q8, Values);
            xd = ref Unsafe.Add(ref xd, 1);
            sums = ref Unsafe.Add(ref sums, 16);
        }

        Vector256<float> total = acc.GetLower() + acc.GetUpper() + offsetAcc;
        return total.GetLower() + total.GetUpper();
    }

    /// <summary>Two quarters of a half: 64 values from <paramref name="at"/> in the activations, against their codes and groups' scales.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Q3KHalfQuarters(Vector512<byte> qs, Vector512<byte> hmask, ref sbyte q8, int at, Vector512<ushort> twoBitShifts,
        Vector512<ushort> highShifts, Vector512<short> scales, Vector512<byte> pick, Vector512<byte> low2, Vector512<byte> bit0)
    {
        Vector512<byte> twoBits = Avx512BW.ShiftRightLogicalVariable(qs.AsUInt16(), twoBitShifts).AsByte() & low2;
        Vector512<byte> high = Avx512BW.ShiftLeftLogical((Avx512BW.ShiftRightLogicalVariable(hmask.AsUInt16(), highShifts).AsByte() & bit0).AsUInt16(), 2).AsByte();
        Vector512<short> pairs = Avx512BW.MultiplyAddAdjacent(twoBits | high, Vector512.LoadUnsafe(ref q8, (nuint)at));
        return Avx512BW.MultiplyAddAdjacent(pairs, Avx512BW.Shuffle(scales.AsByte(), pick).AsInt16());
    }

    /// <summary>
    /// A vpshufb index pair, repeated in every word, that gives each word of a 128-bit lane that lane's word
    /// <paramref name="word"/> (the 32-byte kernel's quarter k = 4n + t; the 64-byte kernel's half n and pair t / 2, 2n + t / 2).
    /// </summary>
    private static ushort WordPick(int word) => (ushort)((0x0100 * ((2 * word) + 1)) + (2 * word));

    /// <summary>The reference: per super-block Σ_g (sc_g - 32) Σ q × x in integers (q in -4..3), then xd × d × it.</summary>
    private static float Q3KScalar(ref byte w, scoped in RowOperands operands)
    {
        Span<sbyte> codes = stackalloc sbyte[Values], scales = stackalloc sbyte[16];
        float total = 0;
        for (int b = 0; b < operands.Blocks; b++)
        {
            ReadOnlySpan<byte> block = MemoryMarshal.CreateReadOnlySpan(ref Unsafe.Add(ref w, b * Q3KBytes), Q3KBytes);
            WidenedBlocks.Q3_KCodes(block, codes, scales);
            int sum = 0;
            for (int g = 0; g < 16; g++)
            {
                int group = 0;
                for (int v = 16 * g; v < 16 * (g + 1); v++)
                {
                    group += codes[v] * Unsafe.Add(ref operands.Codes, (b * Values) + v);
                }

                sum += scales[g] * group;
            }

            total += Unsafe.Add(ref operands.Scales, b) * RowOperands.Half(ref operands.HalfTable, ref Unsafe.Add(ref w, (b * Q3KBytes) + 108)) * sum;
        }

        return total;
    }
}
