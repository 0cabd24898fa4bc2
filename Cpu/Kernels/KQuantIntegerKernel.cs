using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using QwenSharp.Formats;
using QwenSharp.Numerics;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Q4_K, Q5_K and Q6_K weights against activations quantized as Q8_K (<see cref="Q8KActivations"/>): integer products per
/// super-block (unsigned 4-, 5- or 6-bit codes times signed 8-bit codes, pairs summed to 16 bits with vpmaddubsw, then
/// weighted by the sub-block scales and summed to 32 bits with vpmaddwd), the mins and Q6_K's offset of 32 from the
/// activations' sums (one vpmaddwd per super-block), and one float multiply-add per super-block into float vectors
/// summed once per row, as ggml's vec_dot_q4_K_q8_K. The integers are exact on every path; only the float additions'
/// order differs from the scalar reference. Q2_K (<c>KQuantIntegerKernel.Q2K.cs</c>), Q3_K (<c>KQuantIntegerKernel.Q3K.cs</c>) and IQ4_XS
/// (<c>KQuantIntegerKernel.Iq4Xs.cs</c>) are read as stored against the same activations, one file each.
/// </summary>
/// <remarks>
/// Each path is one method with the super-block loop inside and every helper inlined, so the accumulators stay in
/// registers: the first version called a helper per super-block and spilled them, and ran at a third of this speed.
/// The scales reach the vpmaddwd through in-register byte shuffles with constant indexes (as ggml's
/// get_scale_shuffle), not a broadcast per sub-block.
/// </remarks>
internal static partial class KQuantIntegerKernel
{
    private const int Values = KQuantBlocks.BlockValues;
    private const int Q4KBytes = 144;
    private const int Q5KBytes = 176;
    private const int Q6KBytes = 210;

    /// <summary>One row's dot product with one token's activations (the tests' entry; the model calls <see cref="DotRows"/>).</summary>
    public static float Dot(KernelPath path, DType type, ReadOnlySpan<byte> row, Q8KRow x)
    {
        Span<float> result = stackalloc float[1];
        DotRows(path, type, row, 1, x, result);
        return result[0];
    }

    /// <summary>
    /// <paramref name="count"/> consecutive rows dotted with one token's activations into <paramref name="results"/>. Rows
    /// go four at a time so that their horizontal sums share two vhaddps: a 1536-wide row is only 6 super-blocks, and
    /// a sum per row cost a fifth of its time.
    /// </summary>
    /// <remarks>
    /// With a <paramref name="layout"/> other than <see cref="PairedLayout.None"/>, <paramref name="rows"/> are Q4_K or Q5_K rows
    /// as <see cref="PairedNibbleRows.Repack"/> leaves them (their scales as the layout says), read against
    /// <paramref name="x"/>'s paired codes on the 32-byte kernel (<see cref="PairedNibbleRows.Pays"/> says where).
    /// </remarks>
    public static unsafe void DotRows(KernelPath path, DType type, ReadOnlySpan<byte> rows, int count, Q8KRow x, Span<float> results, PairedLayout layout = PairedLayout.None)
    {
        bool paired = layout != PairedLayout.None;
        int blocks = x.Codes.Length / Values;
        if (type is not (DType.Q2_K or DType.Q3_K or DType.Q4_K or DType.Q5_K or DType.Q6_K or DType.IQ4_XS))
        {
            throw new ArgumentException($"{type} is not Q2_K, Q3_K, Q4_K, Q5_K, Q6_K or IQ4_XS", nameof(type));
        }

        if (paired && (type is not (DType.Q4_K or DType.Q5_K) || path == KernelPath.Scalar || !Avx2.IsSupported || !Fma.IsSupported || x.PairedCodes.Length != x.Codes.Length
            || (layout == PairedLayout.DepositedScales && !Bmi2.X64.IsSupported)))
        {
            throw new ArgumentException($"paired rows are Q4_K or Q5_K on an AVX2 path against paired activation codes: {type}, {path}, {x.PairedCodes.Length} paired codes of {x.Codes.Length}");
        }

        int rowBytes = blocks * DTypes.BlockBytes(type);
        if (rows.Length < (long)count * rowBytes || results.Length < count)
        {
            throw new ArgumentException($"{count} {type} rows of {blocks} super-blocks need {(long)count * rowBytes} bytes and {count} results; got {rows.Length} and {results.Length}");
        }

        var operands = new RowOperands(ref MemoryMarshal.GetReference(paired ? x.PairedCodes : x.Codes), ref MemoryMarshal.GetReference(x.Scales),
            ref MemoryMarshal.GetReference(type is DType.Q6_K or DType.Q2_K or DType.Q3_K ? x.GroupSums : x.SubBlockSums), ref Unsafe.NullRef<int>(), blocks);
        // Pinned, so that the 64-byte kernels can broadcast from pointers; the weights are usually the mapped file.
        fixed (byte* pinned = rows)
        {
            ref float y = ref MemoryMarshal.GetReference(results);
            switch (layout)
            {
                case PairedLayout.StoredScales when type == DType.Q5_K: RowGroups.Run<Q5KPairedRow<StoredScales>>(ref *pinned, rowBytes, count, operands, ref y); break;
                case PairedLayout.StoredScales: RowGroups.Run<Q4KPairedRow<StoredScales>>(ref *pinned, rowBytes, count, operands, ref y); break;
                case PairedLayout.DepositedScales when type == DType.Q5_K: RowGroups.Run<Q5KPairedRow<DepositedScales>>(ref *pinned, rowBytes, count, operands, ref y); break;
                case PairedLayout.DepositedScales: RowGroups.Run<Q4KPairedRow<DepositedScales>>(ref *pinned, rowBytes, count, operands, ref y); break;
                default: Run(path, type, ref *pinned, rowBytes, count, operands, ref y); break;
            }
        }
    }

    private static void Run(KernelPath path, DType type, ref byte w, int rowBytes, int count, scoped in RowOperands operands, ref float y)
    {
        bool wide = path == KernelPath.Vector512 && Avx512BW.IsSupported;
        bool avx2 = path != KernelPath.Scalar && Avx2.IsSupported && Fma.IsSupported;
        if (!avx2 && !wide)
        {
            for (int r = 0; r < count; r++)
            {
                ref byte row = ref Unsafe.Add(ref w, r * rowBytes);
                Unsafe.Add(ref y, r) = type switch
                {
                    DType.Q6_K => Q6KScalar(ref row, operands),
                    DType.IQ4_XS => Iq4XsScalar(ref row, operands),
                    DType.Q2_K => Q2KScalar(ref row, operands),
                    DType.Q3_K => Q3KScalar(ref row, operands),
                    _ => Q4KScalar(ref row, operands, fifth: type == DType.Q5_K),
                };
            }
        }
        else if (type == DType.Q2_K && VectorUnits.Wide(path))
        {
            RowGroups.Run<Q2KWideRow>(ref w, rowBytes, count, operands, ref y);
        }
        else if (type == DType.Q2_K)
        {
            RowGroups.Run<Q2KRow>(ref w, rowBytes, count, operands, ref y);
        }
        else if (type == DType.Q3_K && VectorUnits.Wide(path))
        {
            RowGroups.Run<Q3KWideRow>(ref w, rowBytes, count, operands, ref y);
        }
        else if (type == DType.Q3_K)
        {
            RowGroups.Run<Q3KRow>(ref w, rowBytes, count, operands, ref y);
        }
        else if (type == DType.IQ4_XS && VectorUnits.Wide(path))
        {
            RowGroups.Run<Iq4XsWideRow>(ref w, rowBytes, count, operands, ref y);
        }
        else if (type == DType.IQ4_XS && DepositsScales)
        {
            RowGroups.Run<Iq4XsRow<BitDepositScales>>(ref w, rowBytes, count, operands, ref y);
        }
        else if (type == DType.IQ4_XS)
        {
            RowGroups.Run<Iq4XsRow<ShiftedScales>>(ref w, rowBytes, count, operands, ref y);
        }
        else if (VectorUnits.Wide(path, type))
        {
            switch (type)
            {
                case DType.Q4_K: RowGroups.Run<Q4KWideRow>(ref w, rowBytes, count, operands, ref y); break;
                case DType.Q5_K: RowGroups.Run<Q5KWideRow>(ref w, rowBytes, count, operands, ref y); break;
                default: RowGroups.Run<Q6KWideRow>(ref w, rowBytes, count, operands, ref y); break;
            }
        }
        else if (type == DType.Q4_K && wide && Gfni.V256.IsSupported && ByteDots.Vnni(path))
        {
            RowGroups.Run<Q4KGfniVnniRow>(ref w, rowBytes, count, operands, ref y);
        }
        else if (type == DType.Q5_K && wide && Gfni.V256.IsSupported && ByteDots.Vnni(path))
        {
            RowGroups.Run<Q5KGfniVnniRow>(ref w, rowBytes, count, operands, ref y);
        }
        else if (type == DType.Q5_K && wide && Gfni.V256.IsSupported)
        {
            RowGroups.Run<Q5KGfniRow>(ref w, rowBytes, count, operands, ref y);
        }
        else if (type == DType.Q4_K)
        {
            // Where 512-bit multiplies are not twice as fast (VectorUnits), Q4_K and Q5_K take 32-byte products: one 64-byte
            // kernel (the nibbles of a chunk side by side) ran at 24-29 cycles per super-block on Zen 4 against this one's 17.
            RowGroups.Run<Q4K256Row>(ref w, rowBytes, count, operands, ref y);
        }
        else if (type == DType.Q5_K)
        {
            RowGroups.Run<Q5K256Row>(ref w, rowBytes, count, operands, ref y);
        }
        else if (wide && Gfni.V256.IsSupported && Avx512BW.VL.IsSupported && ByteDots.Vnni(path))
        {
            RowGroups.Run<Q6KGfniVnniRow>(ref w, rowBytes, count, operands, ref y);
        }
        else if (wide)
        {
            RowGroups.Run<Q6K512Row>(ref w, rowBytes, count, operands, ref y);
        }
        else
        {
            RowGroups.Run<Q6K256Row>(ref w, rowBytes, count, operands, ref y);
        }
    }


    /// <summary>
    /// The 8 six-bit scales and the 8 mins (a byte each, sub-block j in byte j) of a Q4_K super-block from its 12 packed bytes, with
    /// ggml's 32-bit masks (as its vec_dot_q4_K): sub-blocks 0-3 in the low 6 bits of bytes 0-3 (scales) and 4-7
    /// (mins); 4-7 from the nibbles of bytes 8-11 and the top 2 bits of bytes 0-7.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static (ulong Scales, ulong Mins) UnpackScalesAndMins(ref byte packed)
    {
        const uint Six = 0x3f3f3f3f, Four = 0x0f0f0f0f, Two = 0x03030303;
        uint a = Unsafe.ReadUnaligned<uint>(ref packed), b = Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref packed, 4)), c = Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref packed, 8));
        ulong scales = (a & Six) | ((ulong)((c & Four) | (((a >> 6) & Two) << 4)) << 32);
        ulong mins = (b & Six) | ((ulong)(((c >> 4) & Four) | (((b >> 6) & Two) << 4)) << 32);
        return (scales, mins);
    }

    // ---- Q4_K ----

    /// <summary>
    /// The reference: Σ_b dx_b (d_b Σ_j scale_j Σ code × x − dmin_b Σ_j min_j Σ x), block by block in order. With
    /// <paramref name="fifth"/>, Q5_K: the same with a fifth bit per code from qh (bit 2c or 2c + 1 of qh[l] for value l
    /// of the low or high nibbles of chunk c) and the nibbles 32 bytes further on.
    /// </summary>
    private static float Q4KScalar(ref byte w, scoped in RowOperands operands, bool fifth)
    {
        ref float half = ref operands.HalfTable;
        ref sbyte x = ref operands.Codes;
        ref float xd = ref operands.Scales;
        ref short sums = ref operands.Sums;
        int blocks = operands.Blocks;
        float total = 0;
        int blockBytes = fifth ? Q5KBytes : Q4KBytes, codesAt = fifth ? 48 : 16;
        for (int b = 0; b < blocks; b++)
        {
            ref byte block = ref Unsafe.Add(ref w, b * blockBytes);
            ref sbyte q8 = ref Unsafe.Add(ref x, b * Values);
            (ulong scales, ulong mins) = UnpackScalesAndMins(ref Unsafe.Add(ref block, 4));
            int sumi = 0, summ = 0;
            for (int c = 0; c < 4; c++)
            {
                int low = 0, high = 0;
                for (int l = 0; l < 32; l++)
                {
                    byte packed = Unsafe.Add(ref block, codesAt + (32 * c) + l);
                    byte qh = fifth ? Unsafe.Add(ref block, 16 + l) : (byte)0;
                    low += ((packed & 0xF) | (((qh >> (2 * c)) & 1) << 4)) * Unsafe.Add(ref q8, (64 * c) + l);
                    high += ((packed >> 4) | (((qh >> ((2 * c) + 1)) & 1) << 4)) * Unsafe.Add(ref q8, (64 * c) + 32 + l);
                }

                sumi += (Byte(scales, 2 * c) * low) + (Byte(scales, (2 * c) + 1) * high);
            }

            for (int j = 0; j < 8; j++)
            {
                summ += Byte(mins, j) * Unsafe.Add(ref sums, (b * 8) + j);
            }

            float dx = Unsafe.Add(ref xd, b);
            total += (dx * RowOperands.Half(ref half, ref block) * sumi) - (dx * RowOperands.Half(ref half, ref Unsafe.Add(ref block, 2)) * summ);
        }

        return total;
    }

    /// <summary>
    /// The GFNI bit matrix (vgf2p8affineqb takes output bit i from matrix byte 7 - i) whose output bits 0-3 are input bits
    /// 4-7 and 4-7 are zero: a byte's high nibble as its value.
    /// </summary>
    private const ulong HighNibbleDown = 0x10_20_40_80_00_00_00_00;

    /// <summary>Byte <paramref name="j"/> of unpacked scales or mins.</summary>
    internal static int Byte(ulong packed, int j) => (int)((packed >> (8 * j)) & 0xFF);

    /// <summary>Byte indexes that spread 16-bit lane <paramref name="j"/> over a whole 128-bit lane (for vpshufb).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<byte> Spread16(int j) => Vector128.Create((ushort)((2 * j) | (((2 * j) + 1) << 8))).AsByte();

    private readonly struct Q4K256Row : IRowKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<float> Partial(ref byte w, scoped in RowOperands operands) => Q4KPartial(ref w, operands, fifth: false, vnni: false, gfni: false);
    }

    private readonly struct Q4KGfniVnniRow : IRowKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<float> Partial(ref byte w, scoped in RowOperands operands) => Q4KPartial(ref w, operands, fifth: false, vnni: true, gfni: true);
    }

    private readonly struct Q5K256Row : IRowKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<float> Partial(ref byte w, scoped in RowOperands operands) => Q4KPartial(ref w, operands, fifth: true, vnni: false, gfni: false);
    }

    /// <summary>Q5_K on the 512-bit path: the fifth bits placed by GFNI (<see cref="FifthBitGfni"/>).</summary>
    private readonly struct Q5KGfniRow : IRowKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<float> Partial(ref byte w, scoped in RowOperands operands) => Q4KPartial(ref w, operands, fifth: true, vnni: false, gfni: true);
    }

    /// <summary>Q5_K on the 512-bit path with AVX-VNNI too.</summary>
    private readonly struct Q5KGfniVnniRow : IRowKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<float> Partial(ref byte w, scoped in RowOperands operands) => Q4KPartial(ref w, operands, fifth: true, vnni: true, gfni: true);
    }

    /// <summary>
    /// One Q4_K row, or with <paramref name="fifth"/> (a constant at each call) one Q5_K row. The references walk forward
    /// instead of being recomputed from the super-block number (an imul and a sign extension each): 26.8-27.1 → 27.5-27.8
    /// GB/s from L2 on one Zen 4 core. (Unpacking the scales and mins with vector shuffles instead of the scalar masks took
    /// 30 instructions off the loop, but it is bound by the vector units, and it ran at 24.4.)
    /// </summary>
    /// <remarks>
    /// With <paramref name="paired"/>, paired rows against paired codes (<see cref="Q4KPairedChunk"/>), with
    /// <paramref name="deposited"/> their scales and mins as <see cref="PairedNibbleRows.DepositedScalesAndMins"/> reads them.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Q4KPartial(ref byte w, scoped in RowOperands operands, bool fifth, bool vnni, bool gfni, bool paired = false, bool deposited = false)
    {
        ref float half = ref operands.HalfTable;
        ref sbyte q8 = ref operands.Codes;
        ref float xd = ref operands.Scales;
        ref short sums = ref operands.Sums;
        ref byte block = ref w;
        int blockBytes = fifth ? Q5KBytes : Q4KBytes;
        Vector256<float> acc = default;
        Vector128<float> mins = default;
        for (int b = 0; b < operands.Blocks; b++)
        {
            Prefetch.Ahead(ref block, 3);    // a super-block is 144 or 176 bytes: three lines leave no gap to the next one's
            ref byte qs = ref Unsafe.Add(ref block, fifth ? 48 : 16);
            (ulong packedScales, ulong packedMins) = deposited
                ? PairedNibbleRows.DepositedScalesAndMins(ref Unsafe.Add(ref block, 4))
                : UnpackScalesAndMins(ref Unsafe.Add(ref block, 4));
            Vector128<short> scales128 = Sse41.ConvertToVector128Int16(Vector128.CreateScalar(packedScales).AsByte());
            Vector256<byte> scales = Vector256.Create(scales128, scales128).AsByte();
            Vector256<byte> qh = fifth ? Vector256.LoadUnsafe(ref Unsafe.Add(ref block, 16)) : default;

            // Two chains (each chunk adds into its addend: vpdpwssd with AVX-VNNI), so a super-block waits on two, not four.
            Vector256<int> sumi;
            if (paired)
            {
                Vector256<int> evenPairs = Q4KPairedChunk(ref qs, ref q8, scales, 0, qh, fifth, default);
                Vector256<int> oddPairs = Q4KPairedChunk(ref qs, ref q8, scales, 1, qh, fifth, default);
                sumi = Q4KPairedChunk(ref qs, ref q8, scales, 2, qh, fifth, evenPairs) + Q4KPairedChunk(ref qs, ref q8, scales, 3, qh, fifth, oddPairs);
            }
            else
            {
                Vector256<int> even = Q4KChunk256(ref qs, ref q8, scales, 0, qh, fifth, gfni, vnni, default);
                Vector256<int> odd = Q4KChunk256(ref qs, ref q8, scales, 1, qh, fifth, gfni, vnni, default);
                sumi = Q4KChunk256(ref qs, ref q8, scales, 2, qh, fifth, gfni, vnni, even) + Q4KChunk256(ref qs, ref q8, scales, 3, qh, fifth, gfni, vnni, odd);
            }

            // min_j × Σ x over sub-block j, four pairs summed per 32-bit lane.
            Vector128<int> summ = Sse2.MultiplyAddAdjacent(Sse41.ConvertToVector128Int16(Vector128.CreateScalar(packedMins).AsByte()), Vector128.LoadUnsafe(ref sums));
            float dx = xd;
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sumi), Vector256.Create(dx * RowOperands.Half(ref half, ref block)), acc);
            mins = Fma.MultiplyAdd(Sse2.ConvertToVector128Single(summ), Vector128.Create(dx * RowOperands.Half(ref half, ref Unsafe.Add(ref block, 2))), mins);
            block = ref Unsafe.Add(ref block, blockBytes);
            q8 = ref Unsafe.Add(ref q8, Values);
            xd = ref Unsafe.Add(ref xd, 1);
            sums = ref Unsafe.Add(ref sums, 8);
        }

        return acc.GetLower() + acc.GetUpper() - mins;
    }

    /// <summary>How a paired row holds its super-blocks' scales and mins: as stored, or deposited (<see cref="PairedNibbleRows.Repack"/>).</summary>
    private interface IPairedScales
    {
        static abstract bool Deposited { get; }
    }

    private readonly struct StoredScales : IPairedScales
    {
        public static bool Deposited => false;
    }

    private readonly struct DepositedScales : IPairedScales
    {
        public static bool Deposited => true;
    }

    /// <summary>Q4_K paired rows (<see cref="PairedNibbleRows"/>) against paired activation codes, on the 32-byte kernel.</summary>
    private readonly struct Q4KPairedRow<TScales> : IRowKernel
        where TScales : IPairedScales
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<float> Partial(ref byte w, scoped in RowOperands operands) =>
            Q4KPartial(ref w, operands, fifth: false, vnni: false, gfni: false, paired: true, deposited: TScales.Deposited);
    }

    /// <summary>Q5_K paired rows (<see cref="PairedNibbleRows"/>) against paired activation codes, on the 32-byte kernel.</summary>
    private readonly struct Q5KPairedRow<TScales> : IRowKernel
        where TScales : IPairedScales
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<float> Partial(ref byte w, scoped in RowOperands operands) =>
            Q4KPartial(ref w, operands, fifth: true, vnni: false, gfni: false, paired: true, deposited: TScales.Deposited);
    }

    /// <summary>
    /// <paramref name="addend"/> + chunk <paramref name="c"/>'s Σ scale × Σ code × x from paired rows and activations: the
    /// low and the high nibbles' pair sums (with <paramref name="fifth"/>, Q5_K's codes with their fifth bits from the paired
    /// <paramref name="qh"/>) added in 16 bits (sub-block 2c's in the even 32-bit lanes, 2c + 1's in the odd), then weighted
    /// by (scale 2c, scale 2c + 1) in one vpmaddwd.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Q4KPairedChunk(ref byte qs, ref sbyte q8, Vector256<byte> scales, int c, Vector256<byte> qh, bool fifth, Vector256<int> addend)
    {
        var mask = Vector256.Create((byte)0x0F);
        Vector256<byte> packed = Vector256.LoadUnsafe(ref qs, (nuint)(32 * c));
        Vector256<byte> lowCodes = packed & mask, highCodes = Vector256.ShiftRightLogical(packed.AsUInt16(), 4).AsByte() & mask;
        if (fifth)
        {
            lowCodes |= FifthBit(qh, 2 * c);
            highCodes |= FifthBit(qh, (2 * c) + 1);
        }

        Vector256<short> both = Avx2.MultiplyAddAdjacent(lowCodes, Vector256.LoadUnsafe(ref q8, (nuint)(64 * c)))
            + Avx2.MultiplyAddAdjacent(highCodes, Vector256.LoadUnsafe(ref q8, (nuint)((64 * c) + 32)));

        // 16-bit lanes (2c, 2c, 2c + 1, 2c + 1) of the scales, four times over each 128-bit lane.
        ulong pairIndex = ((ulong)(4 * c) * 0x0101010101010101UL) + 0x0302030201000100UL;
        Vector128<byte> index = Vector128.Create(pairIndex).AsByte();
        return addend + Avx2.MultiplyAddAdjacent(both, Avx2.Shuffle(scales, Vector256.Create(index, index)).AsInt16());
    }

    /// <summary>
    /// Bit <paramref name="k"/> of each byte of Q5_K's qh moved to bit 4 (16 or 0: the code's fifth bit). Shifting 16-bit
    /// lanes is exact here: the mask keeps bit 4 of each byte, which comes from bit k of that same byte.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<byte> FifthBit(Vector256<byte> qh, int k)
    {
        Vector256<ushort> lanes = qh.AsUInt16();
        Vector256<ushort> moved = k <= 4 ? Vector256.ShiftLeft(lanes, 4 - k) : Vector256.ShiftRightLogical(lanes, k - 4);
        return moved.AsByte() & Vector256.Create((byte)0x10);
    }

    /// <summary>
    /// <paramref name="addend"/> + Σ scale × Σ code × x over sub-blocks 2c and 2c + 1 (32 bytes: low nibbles are sub-block 2c's
    /// values, high nibbles 2c + 1's), in eight 32-bit lanes; with <paramref name="fifth"/>, Q5_K's codes get their fifth bit
    /// from <paramref name="qh"/>. <paramref name="c"/> is a constant at every call, so the shuffles' indexes are too. One
    /// method for every variant: a helper for the shared part was not inlined everywhere in a four-row runner (the JIT's
    /// inlining budget) and returned its vectors through memory; without it Q4_K took 8.3 ns per super-block from L2 on the
    /// Xeon against 9.7 (medians of 8 alternating runs).
    /// </summary>
    /// <remarks>
    /// <paramref name="gfni"/> (the 512-bit path, where AVX-512VL makes the select one vpternlogd): Q5_K's codes are each
    /// nibble selected beside its fifth bit from GFNI, two instructions where the shifts and masks take four; Q4_K's high
    /// nibbles are moved down by one affine transform (<see cref="HighNibbleDown"/>) where a shift and a mask take two
    /// (with VNNI on the Xeon: 12.7 against 13.2 ns per super-block from L2, medians of 8 alternating runs; a Q4_K_M 1.5B
    /// model decoded alike, 8.5 against 8.4 tokens/s on one thread and 15.5 against 15.3 on two).
    /// <paramref name="vnni"/> (the 512-bit path on a CPU with AVX-VNNI, as <see cref="ByteDots"/>): vpdpwssd weights the
    /// 16-bit pair sums by the scales and adds them in one instruction where vpmaddwd and vpaddd take two. On the 2-core
    /// Xeon, alternating builds: 5-8% less time per Q4_K super-block from L2 (8.3 against 8.8 ns and 9.8 against 10.6,
    /// medians of two sets of 8-10 runs), a Q4_K_M 1.5B model on two threads 16.4 against 16.1 tokens/s and Q5_K_M 13.1
    /// against 12.4; from memory on one thread no different.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Q4KChunk256(ref byte qs, ref sbyte q8, Vector256<byte> scales, int c, Vector256<byte> qh, bool fifth, bool gfni, bool vnni,
        Vector256<int> addend)
    {
        var mask = Vector256.Create((byte)0x0F);
        Vector256<byte> packed = Vector256.LoadUnsafe(ref qs, (nuint)(32 * c));
        Vector256<byte> lowCodes, highCodes;
        if (fifth && gfni)
        {
            lowCodes = Vector256.ConditionalSelect(mask, packed, FifthBitGfni(qh, 2 * c));
            highCodes = Vector256.ConditionalSelect(mask, Vector256.ShiftRightLogical(packed.AsUInt16(), 4).AsByte(), FifthBitGfni(qh, (2 * c) + 1));
        }
        else if (gfni)
        {
            // Q4_K: each byte's high nibble moved down by one affine transform, where a shift and a mask take two.
            lowCodes = packed & mask;
            highCodes = Gfni.V256.GaloisFieldAffineTransform(packed, Vector256.Create(HighNibbleDown).AsByte(), 0);
        }
        else
        {
            lowCodes = packed & mask;
            highCodes = Vector256.ShiftRightLogical(packed.AsUInt16(), 4).AsByte() & mask;
            if (fifth)
            {
                lowCodes |= FifthBit(qh, 2 * c);
                highCodes |= FifthBit(qh, (2 * c) + 1);
            }
        }

        Vector256<short> low = Avx2.MultiplyAddAdjacent(lowCodes, Vector256.LoadUnsafe(ref q8, (nuint)(64 * c)));
        Vector256<short> high = Avx2.MultiplyAddAdjacent(highCodes, Vector256.LoadUnsafe(ref q8, (nuint)((64 * c) + 32)));
        Vector128<byte> lowIndex = Spread16(2 * c), highIndex = Spread16((2 * c) + 1);
        Vector256<short> lowScale = Avx2.Shuffle(scales, Vector256.Create(lowIndex, lowIndex)).AsInt16();
        Vector256<short> highScale = Avx2.Shuffle(scales, Vector256.Create(highIndex, highIndex)).AsInt16();
        return vnni ? AvxVnni.MultiplyWideningAndAdd(AvxVnni.MultiplyWideningAndAdd(addend, low, lowScale), high, highScale)
            : addend + Avx2.MultiplyAddAdjacent(low, lowScale) + Avx2.MultiplyAddAdjacent(high, highScale);
    }

    /// <summary>
    /// <see cref="FifthBit"/> in one GFNI affine transform: each byte times the bit matrix whose row for output bit 4 picks
    /// input bit <paramref name="k"/> (vgf2p8affineqb takes output bit i from matrix byte 7 - i), every other output bit zero.
    /// On the 2-core Xeon, alternating builds: 12.3 against 14.8 ns per Q5_K super-block from L2 (medians of 8), and a Q5_K_M
    /// 1.5B model decoded 6.8 against 6.1 tokens/s on one thread (where this kernel, not memory, was the limit) and 12.8
    /// against 12.3 on two.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<byte> FifthBitGfni(Vector256<byte> qh, int k) =>
        Gfni.V256.GaloisFieldAffineTransform(qh, Vector256.Create((ulong)(1u << k) << 24).AsByte(), 0);

    // ---- Q6_K ----

    /// <summary>The reference: Σ_b dx_b d_b Σ_g scale_g (Σ code × x − 32 Σ x), codes as stored (0..63), block by block.</summary>
    private static float Q6KScalar(ref byte w, scoped in RowOperands operands)
    {
        ref float half = ref operands.HalfTable;
        ref sbyte x = ref operands.Codes;
        ref float xd = ref operands.Scales;
        ref short sums = ref operands.Sums;
        int blocks = operands.Blocks;
        float total = 0;
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> block = MemoryMarshal.CreateReadOnlySpan(ref Unsafe.Add(ref w, b * Q6KBytes), Q6KBytes);
            ReadOnlySpan<sbyte> q8 = MemoryMarshal.CreateReadOnlySpan(ref Unsafe.Add(ref x, b * Values), Values);
            int sumi = 0;
            for (int n = 0; n < Values; n += 128)
            {
                ReadOnlySpan<byte> ql = block.Slice(n / 2, 64), qh = block.Slice(128 + (n / 4), 32);
                for (int quarter = 0; quarter < 4; quarter++)
                {
                    for (int sixteen = 0; sixteen < 2; sixteen++)
                    {
                        int group = 0;
                        for (int l = 16 * sixteen; l < (16 * sixteen) + 16; l++)
                        {
                            byte low = ql[l + (32 * (quarter & 1))];
                            int code = (quarter < 2 ? low & 0xF : low >> 4) | (((qh[l] >> (2 * quarter)) & 3) << 4);
                            group += code * q8[n + (32 * quarter) + l];
                        }

                        sumi += (sbyte)block[192 + ((n + (32 * quarter) + (16 * sixteen)) / 16)] * group;
                    }
                }
            }

            // The codes are stored + 32: 32 × scale × Σ x per 16 values comes back out.
            for (int g = 0; g < 16; g++)
            {
                sumi -= 32 * (sbyte)block[192 + g] * Unsafe.Add(ref sums, (b * 16) + g);
            }

            total += Unsafe.Add(ref xd, b) * RowOperands.Half(ref half, ref Unsafe.Add(ref w, (b * Q6KBytes) + 208)) * sumi;
        }

        return total;
    }

    /// <summary>
    /// The four quarters' codes (0..63) of one 128-value half: values n..n+31, n+32.., n+64.., n+96... With
    /// <paramref name="gfni"/> (a constant at each call), each 2-bit pair is moved to bits 4-5 and each high nibble down by
    /// one affine transform (<see cref="TwoBitsUp"/>, <see cref="HighNibbleDown"/>): 12 vector operations where the shifts
    /// and masks take 17.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static (Vector256<byte>, Vector256<byte>, Vector256<byte>, Vector256<byte>) Q6Quarters(ref byte block, int n, bool gfni = false)
    {
        ref byte ql = ref Unsafe.Add(ref block, n / 2);
        Vector256<byte> a = Vector256.LoadUnsafe(ref ql), b = Vector256.LoadUnsafe(ref ql, 32);
        Vector256<byte> h = Vector256.LoadUnsafe(ref Unsafe.Add(ref block, 128 + (n / 4)));
        var low4 = Vector256.Create((byte)0x0F);
        var high2 = Vector256.Create((byte)0x30);
        if (gfni)
        {
            Vector256<byte> highDown = Vector256.Create(HighNibbleDown).AsByte();
            return ((a & low4) | Gfni.V256.GaloisFieldAffineTransform(h, Vector256.Create(TwoBitsUp(0)).AsByte(), 0),
                    (b & low4) | Gfni.V256.GaloisFieldAffineTransform(h, Vector256.Create(TwoBitsUp(2)).AsByte(), 0),
                    Gfni.V256.GaloisFieldAffineTransform(a, highDown, 0) | (h & high2),
                    Gfni.V256.GaloisFieldAffineTransform(b, highDown, 0) | Gfni.V256.GaloisFieldAffineTransform(h, Vector256.Create(TwoBitsUp(6)).AsByte(), 0));
        }

        return ((a & low4) | (Vector256.ShiftLeft(h.AsUInt16(), 4).AsByte() & high2),
                (b & low4) | (Vector256.ShiftLeft(h.AsUInt16(), 2).AsByte() & high2),
                (Vector256.ShiftRightLogical(a.AsUInt16(), 4).AsByte() & low4) | (h & high2),
                (Vector256.ShiftRightLogical(b.AsUInt16(), 4).AsByte() & low4) | (Vector256.ShiftRightLogical(h.AsUInt16(), 2).AsByte() & high2));
    }

    /// <summary>Byte indexes: <paramref name="g"/> eight times, then <paramref name="g"/> + 1 eight times.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<byte> GroupPair(int g) => Vector128.Create(0x0101010101010101UL * (ulong)g, 0x0101010101010101UL * (ulong)(g + 1)).AsByte();

    /// <summary>32 × Σ_g scale_g Σ x over group g, summed in eight 32-bit lanes: Q6_K's offset of 32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Offsets(Vector128<sbyte> scales, ref short sums) =>
        Vector256.ShiftLeft(Avx2.MultiplyAddAdjacent(Avx2.ConvertToVector256Int16(scales), Vector256.LoadUnsafe(ref sums)), 5);

    /// <summary>
    /// Σ scale × Σ code × x over one 128-value half of a Q6_K super-block, in eight 32-bit lanes. Each 32 values span
    /// two groups of 16, whose scales the shuffle spreads over the two 128-bit lanes; <paramref name="n"/> is a constant
    /// at every call, so the shuffles' indexes are too.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Q6KHalf256(ref byte block, ref sbyte q8, Vector128<sbyte> scales, int n)
    {
        (Vector256<byte> q1, Vector256<byte> q2, Vector256<byte> q3, Vector256<byte> q4) = Q6Quarters(ref block, n);
        int g = n / 16;
        return Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q1, Vector256.LoadUnsafe(ref q8, (nuint)n)),
                Avx2.ConvertToVector256Int16(Ssse3.Shuffle(scales, GroupPair(g).AsSByte())))
            + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q2, Vector256.LoadUnsafe(ref q8, (nuint)(n + 32))),
                Avx2.ConvertToVector256Int16(Ssse3.Shuffle(scales, GroupPair(g + 2).AsSByte())))
            + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q3, Vector256.LoadUnsafe(ref q8, (nuint)(n + 64))),
                Avx2.ConvertToVector256Int16(Ssse3.Shuffle(scales, GroupPair(g + 4).AsSByte())))
            + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q4, Vector256.LoadUnsafe(ref q8, (nuint)(n + 96))),
                Avx2.ConvertToVector256Int16(Ssse3.Shuffle(scales, GroupPair(g + 6).AsSByte())));
    }

    /// <summary><see cref="Q6KHalf256"/> as two 64-byte products: 64 values span four groups, one per 128-bit lane.</summary>
    /// <remarks>
    /// On the 2-core Intel Xeon (AVX512_BF16/FP16) this path ran at 11.1 ns a super-block from L2 against the 32-byte one's
    /// 9.6 (also with both quarters' nibbles loaded 64 bytes at once), but both are faster than that core's share of memory
    /// bandwidth (19-22 GB/s against 13-14), so decode does not see it; it stays the 512-bit path because on Zen 4, where
    /// a core reads ~29 GB/s, it ran at 34-35 GB/s and was not measured against the 32-byte one. On Zen 5, whose 512-bit
    /// pipes are full width (<see cref="VectorUnits"/>), it ran at 5.4 ns from L2 against the GFNI/VNNI 32-byte kernel's
    /// 6.2, and Zen 5 now takes <see cref="Q6KPartialWide"/> (4.0).
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Q6KHalf512(ref byte block, ref sbyte q8, Vector256<sbyte> scales, int n)
    {
        (Vector256<byte> q1, Vector256<byte> q2, Vector256<byte> q3, Vector256<byte> q4) = Q6Quarters(ref block, n);
        int g = n / 16;
        Vector256<sbyte> first = Avx2.Shuffle(scales, Vector256.Create(GroupPair(g), GroupPair(g + 2)).AsSByte());
        Vector256<sbyte> second = Avx2.Shuffle(scales, Vector256.Create(GroupPair(g + 4), GroupPair(g + 6)).AsSByte());
        return Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(Vector512.Create(q1, q2), Vector512.LoadUnsafe(ref q8, (nuint)n)),
                Avx512BW.ConvertToVector512Int16(first))
            + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(Vector512.Create(q3, q4), Vector512.LoadUnsafe(ref q8, (nuint)(n + 64))),
                Avx512BW.ConvertToVector512Int16(second));
    }

    /// <summary>
    /// The GFNI bit matrix that moves input bits <paramref name="k"/> and <paramref name="k"/> + 1 of each byte to bits 4
    /// and 5 and leaves the others zero (output bit i comes from matrix byte 7 - i, as in <see cref="HighNibbleDown"/>).
    /// </summary>
    private static ulong TwoBitsUp(int k) => ((ulong)(1u << k) << 24) | ((ulong)(1u << (k + 1)) << 16);

    /// <summary>
    /// <see cref="Q6KHalf256"/> with AVX-VNNI, into two chains: vpdpwssd weights the 16-bit pair sums by the scales and adds
    /// them in one instruction, the scales spread by one vpermw from the 16 widened once per super-block (where vpshufb and
    /// vpmovsxbw take two each quarter).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<int> Even, Vector256<int> Odd) Q6KHalfVnni(ref byte block, ref sbyte q8, Vector256<short> scales, int n,
        Vector256<int> even, Vector256<int> odd)
    {
        (Vector256<byte> q1, Vector256<byte> q2, Vector256<byte> q3, Vector256<byte> q4) = Q6Quarters(ref block, n, gfni: true);
        int g = n / 16;
        even = AvxVnni.MultiplyWideningAndAdd(even, Avx2.MultiplyAddAdjacent(q1, Vector256.LoadUnsafe(ref q8, (nuint)n)),
            Avx512BW.VL.PermuteVar16x16(scales, GroupPair16(g)));
        odd = AvxVnni.MultiplyWideningAndAdd(odd, Avx2.MultiplyAddAdjacent(q2, Vector256.LoadUnsafe(ref q8, (nuint)(n + 32))),
            Avx512BW.VL.PermuteVar16x16(scales, GroupPair16(g + 2)));
        even = AvxVnni.MultiplyWideningAndAdd(even, Avx2.MultiplyAddAdjacent(q3, Vector256.LoadUnsafe(ref q8, (nuint)(n + 64))),
            Avx512BW.VL.PermuteVar16x16(scales, GroupPair16(g + 4)));
        odd = AvxVnni.MultiplyWideningAndAdd(odd, Avx2.MultiplyAddAdjacent(q4, Vector256.LoadUnsafe(ref q8, (nuint)(n + 96))),
            Avx512BW.VL.PermuteVar16x16(scales, GroupPair16(g + 6)));
        return (even, odd);
    }

    /// <summary>16-bit lane indexes: <paramref name="g"/> eight times, then <paramref name="g"/> + 1 eight times (for vpermw).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> GroupPair16(int g) =>
        Vector256.Create(Vector128.Create((short)g), Vector128.Create((short)(g + 1)));

    private readonly struct Q6K256Row : IRowKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<float> Partial(ref byte w, scoped in RowOperands operands) => Q6KPartial(ref w, operands, wide: false, vnni: false);
    }

    private readonly struct Q6K512Row : IRowKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<float> Partial(ref byte w, scoped in RowOperands operands) => Q6KPartial(ref w, operands, wide: true, vnni: false);
    }

    /// <summary>Q6_K on the 512-bit path with GFNI and AVX-VNNI: 32-byte products (<see cref="Q6KHalfVnni"/>).</summary>
    private readonly struct Q6KGfniVnniRow : IRowKernel
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector128<float> Partial(ref byte w, scoped in RowOperands operands) => Q6KPartial(ref w, operands, wide: false, vnni: true);
    }

    /// <summary>
    /// One Q6_K row: <paramref name="wide"/> and <paramref name="vnni"/> (constants at each call) pick 64- or 32-byte
    /// products and vpdpwssd. The references walk forward, as Q4KPartial's.
    /// </summary>
    /// <remarks>
    /// Four lines are prefetched a super-block, not three: three cover 192 bytes and the next super-block's start 210 bytes
    /// on, so every fourth super-block a line went unasked and came from memory when the kernel reached it. Over 512 MiB,
    /// in ratio to a plain vector sum over as many bytes timed beside it, one core of the 2-core Xeon: 0.88 against 0.82
    /// (medians of 6 alternating runs of 7 trials). The VNNI variant ran at 8.9 ns per super-block from L2 against the
    /// 512-bit one's 12-14, but from memory alike (0.82 against 0.83 with three lines): this machine's core is held by the
    /// memory there, a faster one's share of it is not.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Q6KPartial(ref byte w, scoped in RowOperands operands, bool wide, bool vnni)
    {
        ref float half = ref operands.HalfTable;
        ref sbyte q8 = ref operands.Codes;
        ref float xd = ref operands.Scales;
        ref short sums = ref operands.Sums;
        ref byte block = ref w;
        Vector256<float> acc = default;
        for (int b = 0; b < operands.Blocks; b++)
        {
            Prefetch.Ahead(ref block, 4);    // a super-block is 210 bytes: see the remarks above
            Vector128<sbyte> scales = Vector128.LoadUnsafe(ref Unsafe.Add(ref block, 192)).AsSByte();
            Vector256<int> sumi;
            if (vnni)
            {
                Vector256<short> scales16 = Avx2.ConvertToVector256Int16(scales);
                (Vector256<int> even, Vector256<int> odd) = Q6KHalfVnni(ref block, ref q8, scales16, 0, default, default);
                (even, odd) = Q6KHalfVnni(ref block, ref q8, scales16, 128, even, odd);
                sumi = even + odd;
            }
            else if (wide)
            {
                Vector256<sbyte> scales256 = Vector256.Create(scales, scales);
                Vector512<int> products = Q6KHalf512(ref block, ref q8, scales256, 0) + Q6KHalf512(ref block, ref q8, scales256, 128);
                sumi = products.GetLower() + products.GetUpper();
            }
            else
            {
                sumi = Q6KHalf256(ref block, ref q8, scales, 0) + Q6KHalf256(ref block, ref q8, scales, 128);
            }

            sumi -= Offsets(scales, ref sums);
            float d = xd * RowOperands.Half(ref half, ref Unsafe.Add(ref block, 208));
            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sumi), Vector256.Create(d), acc);
            block = ref Unsafe.Add(ref block, Q6KBytes);
            q8 = ref Unsafe.Add(ref q8, Values);
            xd = ref Unsafe.Add(ref xd, 1);
            sums = ref Unsafe.Add(ref sums, 16);
        }

        return acc.GetLower() + acc.GetUpper();
    }
}
