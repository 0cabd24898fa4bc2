using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using QwenSharp.Numerics;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Q2_K rows as stored (84 bytes a super-block) against Q8_K activations, as ggml's vec_dot_q2_K_q8_K: per 16-value group
/// the 2-bit codes times the activation codes, summed in integers and weighted by the group's 4-bit scale; the groups'
/// 4-bit mins against the activations' sums of 16 (one vpmaddwd a super-block); then d × the activations' scale times the
/// first and dmin × it times the second, one float multiply-add each. Value v = 128n + 32t + 16h + l takes bits 2t, 2t + 1
/// of qs[32n + 16h + l], so one 32-byte load of qs[32n..] shifted by 2t gives 32 consecutive values (two groups).
/// </summary>
internal static partial class KQuantIntegerKernel
{
    private const int Q2KBytes = KQuantBlocks.Q2_KBytes;

    private readonly struct Q2KRow : IRowKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<float> Partial(ref byte w, scoped in RowOperands operands) => Q2KPartial(ref w, operands);
    }

    private readonly struct Q2KWideRow : IRowKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<float> Partial(ref byte w, scoped in RowOperands operands) => Q2KPartialWide(ref w, operands);
    }

    /// <summary>One Q2_K row's dot product, four partial sums (the rows must be pinned).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector128<float> Q2KPartial(ref byte w, scoped in RowOperands operands)
    {
        ref float half = ref operands.HalfTable;
        ref sbyte q8 = ref operands.Codes;
        ref float xd = ref operands.Scales;
        ref short sums = ref operands.Sums;
        byte* block = (byte*)Unsafe.AsPointer(ref w);
        Vector256<byte> low2 = Vector256.Create((byte)3), low4 = Vector256.Create((byte)0x0F);
        Vector256<float> acc = default;
        for (int b = 0; b < operands.Blocks; b++)
        {
            Prefetch.Ahead(ref *block, 2);
            Vector256<byte> packed = Avx2.BroadcastVector128ToVector256(block);
            Vector256<byte> scales = packed & low4;
            Vector256<short> mins = Avx2.ConvertToVector256Int16((Avx2.ShiftRightLogical(packed.AsUInt16(), 4).AsByte() & low4).GetLower());
            Vector256<int> minSums = Avx2.MultiplyAddAdjacent(mins, Vector256.LoadUnsafe(ref sums));

            // Two chains (the halves n = 0, 1), so that consecutive vpmaddwd-adds do not wait on each other.
            Vector256<byte> first = Vector256.Load(block + 16), second = Vector256.Load(block + 48);
            Vector256<int> even = Q2KQuarter(first, ref q8, 0, 0, scales, low2) + Q2KQuarter(first, ref q8, 0, 1, scales, low2);
            Vector256<int> odd = Q2KQuarter(second, ref q8, 1, 0, scales, low2) + Q2KQuarter(second, ref q8, 1, 1, scales, low2);
            even += Q2KQuarter(first, ref q8, 0, 2, scales, low2) + Q2KQuarter(first, ref q8, 0, 3, scales, low2);
            odd += Q2KQuarter(second, ref q8, 1, 2, scales, low2) + Q2KQuarter(second, ref q8, 1, 3, scales, low2);
            acc = Fma.MultiplyAdd(Vector256.Create(RowOperands.Half(ref half, ref block[80]) * xd), Avx.ConvertToVector256Single(even + odd), acc);
            acc = Fma.MultiplyAdd(Vector256.Create(-RowOperands.Half(ref half, ref block[82]) * xd), Avx.ConvertToVector256Single(minSums), acc);
            block += Q2KBytes;
            q8 = ref Unsafe.Add(ref q8, Values);
            xd = ref Unsafe.Add(ref xd, 1);
            sums = ref Unsafe.Add(ref sums, 16);
        }

        return acc.GetLower() + acc.GetUpper();
    }

    /// <summary>
    /// Values 128n + 32t.. (groups 8n + 2t and 8n + 2t + 1): the codes at bits 2t of <paramref name="qs"/> against their 32
    /// activation codes, pairs weighted by their group's scale (byte g of <paramref name="scales"/>, widened to each word of
    /// its 128-bit lane by a byte shuffle), in eight 32-bit lanes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Q2KQuarter(Vector256<byte> qs, ref sbyte q8, int n, int t, Vector256<byte> scales, Vector256<byte> low2)
    {
        Vector256<byte> codes = (t == 0 ? qs : Vector256.ShiftRightLogical(qs.AsUInt16(), 2 * t).AsByte()) & low2;
        Vector256<short> pairs = Avx2.MultiplyAddAdjacent(codes, Vector256.LoadUnsafe(ref q8, (nuint)((128 * n) + (32 * t))));
        int g = (8 * n) + (2 * t);
        Vector256<byte> pick = Vector256.Create(Vector128.Create((ushort)(0x8000 | g)), Vector128.Create((ushort)(0x8000 | (g + 1)))).AsByte();
        return Avx2.MultiplyAddAdjacent(pairs, Avx2.Shuffle(scales, pick).AsInt16());
    }

    /// <summary>
    /// <see cref="Q2KPartial"/> as 64-byte products, where <see cref="VectorUnits.Wide"/>: each half's 32 bytes broadcast to both
    /// 256-bit halves and shifted by 2t and 2t + 2 (a 16-bit variable shift), so one product takes 64 consecutive values.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector128<float> Q2KPartialWide(ref byte w, scoped in RowOperands operands)
    {
        ref float half = ref operands.HalfTable;
        ref sbyte q8 = ref operands.Codes;
        ref float xd = ref operands.Scales;
        ref short sums = ref operands.Sums;
        byte* block = (byte*)Unsafe.AsPointer(ref w);
        Vector512<byte> low2 = Vector512.Create((byte)3), low4 = Vector512.Create((byte)0x0F);
        Vector512<ushort> shifts01 = HalfShifts(0, 2), shifts23 = HalfShifts(4, 6);
        Vector512<byte> pick0 = Q2KPick(0), pick4 = Q2KPick(4), pick8 = Q2KPick(8), pick12 = Q2KPick(12);
        Vector512<float> acc = default;
        Vector256<float> minAcc = default;
        for (int b = 0; b < operands.Blocks; b++)
        {
            Prefetch.Ahead(ref *block, 2);
            Vector128<byte> packed = Vector128.Load(block);
            Vector512<byte> scales = Avx512F.BroadcastVector128ToVector512((int*)block).AsByte() & low4;
            Vector256<short> mins = Avx2.ConvertToVector256Int16(Vector128.ShiftRightLogical(packed.AsUInt16(), 4).AsByte() & Vector128.Create((byte)0x0F));
            Vector256<int> minSums = Avx2.MultiplyAddAdjacent(mins, Vector256.LoadUnsafe(ref sums));
            Vector512<byte> first = Broadcast32(block + 16), second = Broadcast32(block + 48);
            Vector512<int> even = Q2KHalfQuarters(first, ref q8, 0, shifts01, scales, pick0, low2) + Q2KHalfQuarters(first, ref q8, 64, shifts23, scales, pick4, low2);
            Vector512<int> odd = Q2KHalfQuarters(second, ref q8, 128, shifts01, scales, pick8, low2) + Q2KHalfQuarters(second, ref q8, 192, shifts23, scales, pick12, low2);
            acc = Avx512F.FusedMultiplyAdd(Vector512.Create(RowOperands.Half(ref half, ref block[80]) * xd), Avx512F.ConvertToVector512Single(even + odd), acc);
            minAcc = Fma.MultiplyAdd(Vector256.Create(-RowOperands.Half(ref half, ref block[82]) * xd), Avx.ConvertToVector256Single(minSums), minAcc);
            block += Q2KBytes;
            q8 = ref Unsafe.Add(ref q8, Values);
            xd = ref Unsafe.Add(ref xd, 1);
            sums = ref Unsafe.Add(ref sums, 16);
        }

        Vector256<float> total = acc.GetLower() + acc.GetUpper() + minAcc;
        return total.GetLower() + total.GetUpper();
    }

    /// <summary>Two quarters (t, t + 1) of a half: 64 values from <paramref name="at"/> in the activations, against their codes and groups' scales.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Q2KHalfQuarters(Vector512<byte> qs, ref sbyte q8, int at, Vector512<ushort> shifts, Vector512<byte> scales, Vector512<byte> pick, Vector512<byte> low2)
    {
        Vector512<byte> codes = Avx512BW.ShiftRightLogicalVariable(qs.AsUInt16(), shifts).AsByte() & low2;
        Vector512<short> pairs = Avx512BW.MultiplyAddAdjacent(codes, Vector512.LoadUnsafe(ref q8, (nuint)at));
        return Avx512BW.MultiplyAddAdjacent(pairs, Avx512BW.Shuffle(scales, pick).AsInt16());
    }

    /// <summary>
    /// 16-bit shift counts: <paramref name="lower"/> in the lower 256 bits, <paramref name="upper"/> in the upper (two quarters'
    /// codes from one broadcast: Q2_K's and Q3_K's 2t and 2t + 2, Q3_K's high bits' k and k + 1).
    /// </summary>
    private static Vector512<ushort> HalfShifts(int lower, int upper) =>
        Avx512F.InsertVector256(Vector256.Create((ushort)lower).ToVector512Unsafe(), Vector256.Create((ushort)upper), 1);

    /// <summary>vpshufb indexes giving each word of 128-bit lane k the scale byte <paramref name="g"/> + k (high byte zero: index 0x80).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Q2KPick(int g) => (((Vector512<ushort>.Indices >> 3) | Vector512.Create((ushort)0x8000)) + Vector512.Create((ushort)g)).AsByte();

    /// <summary>The reference: per super-block Σ_g sc_g Σ q × x and Σ_g m_g × (the group's activation sum) in integers, then (xd × d) × the first - (xd × dmin) × the second.</summary>
    private static float Q2KScalar(ref byte w, scoped in RowOperands operands)
    {
        float total = 0;
        for (int b = 0; b < operands.Blocks; b++)
        {
            ReadOnlySpan<byte> block = MemoryMarshal.CreateReadOnlySpan(ref Unsafe.Add(ref w, b * Q2KBytes), Q2KBytes);
            int codes = 0, mins = 0;
            for (int g = 0; g < 16; g++)
            {
                mins += (block[g] >> 4) * Unsafe.Add(ref operands.Sums, (b * 16) + g);
            }

            for (int v = 0; v < Values; v++)
            {
                codes += (block[v / 16] & 0x0F) * KQuantBlocks.TwoBitCode(block[16..], v) * Unsafe.Add(ref operands.Codes, (b * Values) + v);
            }

            float xd = Unsafe.Add(ref operands.Scales, b);
            total += (xd * RowOperands.Half(ref operands.HalfTable, ref Unsafe.Add(ref w, (b * Q2KBytes) + 80)) * codes)
                - (xd * RowOperands.Half(ref operands.HalfTable, ref Unsafe.Add(ref w, (b * Q2KBytes) + 82)) * mins);
        }

        return total;
    }
}
