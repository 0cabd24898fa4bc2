using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using QwenSharp.Formats;
using QwenSharp.Numerics;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Q4_0's, the k-quants' and (with AVX-VNNI) Q8_0's prefill (and a big batch's decode step) in integers. A panel of <see cref="Rows"/> weight rows is unpacked
/// once into unsigned codes laid out four columns by sixteen rows (<c>codes[k / 4][row][k % 4]</c>), with each sub-block's
/// scale and min as f32 per row; then every token's Q8_K (Q4_0: Q8_0) activations multiply it with vpdpbusd: one instruction takes four
/// columns of eight rows against the same four activation codes (a 32-bit broadcast), so the eight 32-bit lanes are eight
/// rows' sums and a sub-block's scale and min apply to all of them with one multiply-add each. Per sub-block of 32 (Q6_K: 16)
/// and row r, with the token's block scale dx and its codes' sum over the sub-block Σa:
/// <c>y[r] += (d × scale)[r] × dx × Σ code × a − (dmin × min)[r] × dx × Σa</c> for Q4_K and Q5_K. Q4_0's, Q8_0's and Q6_K's codes
/// are their signed values + 8, + 128 and + 32, so there the integer sum starts from -offset × Σa instead and the min's
/// multiply-add goes: <c>y[r] += (d × scale)[r] × dx × Σ (code − offset) × a</c>. Q4_0's and Q8_0's panels still keep the
/// offset × the scale as their mins (one multiply per eight rows); Q6_K's keep none, since that was two of the twelve
/// transposes of every eight rows' super-block, and packing is most of a Q6_K panel's cost in a batch step (16 × 1536 for
/// 16 tokens on the Xeon: packed in 3.1 µs, multiplied in 4.2-4.5).
/// Eight tokens (on the 512-bit path; else four) share each load of the panel. Q4_0 and Q4_K matrices are repacked once at
/// load into the same arrangement, two sub-blocks' codes in the nibbles of each byte (<see cref="NibblePanels"/>), and the
/// kernels read those panels as they are (<see cref="MultiplyRepacked(KernelPath, ReadOnlySpan{byte}, int, Q8Activations, Span{float}, int, ReadOnlySpan{byte})"/>).
/// </summary>
/// <remarks>
/// ggml multiplies repacked k-quant rows the same way (its <c>q4_K_8x8_q8_K</c> gemm). Unpacking into f32 panels instead
/// (<see cref="MatMul"/>'s other types) costs 4 bytes a weight of cache and 8 multiply-adds per instruction against 32 here;
/// and a plain two-token integer tile that unpacked each row's super-blocks for every pair of tokens cost as much in unpacking
/// as it saved. The integer sums are exact; the scalar reference makes the same f32 operations in the same order per row,
/// so every path gives the same bits.
/// </remarks>
internal static partial class QuantPanel
{
    /// <summary>Weight rows in one panel: two vectors of eight 32-bit lanes.</summary>
    public const int Rows = 16;

    /// <summary>Values a weight block holds: 32 for Q4_0 and Q8_0, 256 for the k-quants' super-blocks.</summary>
    private static int UnitValues(DType type) => type is DType.Q4_0 or DType.Q8_0 ? 32 : 256;

    /// <summary>
    /// Whether <paramref name="type"/>'s panels multiply in integers on <paramref name="path"/>. Q8_0's codes are stored + 128
    /// (0..255), and vpmaddubsw's 16-bit pair sums of those times activation codes saturate (255 × 127 × 2 &gt; 32767), so
    /// Q8_0 needs vpdpbusd (AVX-VNNI), which sums four products into 32 bits; elsewhere it widens panels to f32.
    /// </summary>
    public static bool MultipliesInIntegers(KernelPath path, DType type) =>
        type is DType.Q4_0 or DType.Q3_K or DType.Q4_K or DType.Q5_K or DType.Q6_K
        || (type == DType.Q8_0 && ByteDots.Vnni(path) && Fma.IsSupported);

    /// <summary>
    /// The tokens a step's Q8_0 activations hold for the panels (<see cref="Q8Activations.Prepare(int, int, int)"/>): from 2 on a
    /// vector path, rounded up to a group of four where two or three would be left over, since the kernels multiply a group of
    /// four (or eight, on the 512-bit path) tokens in about the time of one token alone. Measured from cache, ns per token and
    /// block (Zen 5, 512-bit, <c>bench few-tokens</c>): one token alone 0.41-0.55, groups of four 0.19-0.23, of eight 0.18-0.19.
    /// </summary>
    public static int PanelTokens(KernelPath path, int tokens) =>
        tokens < 2 || tokens % 4 < 2 || path == KernelPath.Scalar || !Avx2.IsSupported || !Fma.IsSupported ? tokens : (tokens + 3) & ~3;

    /// <summary>
    /// Zeroes the padding tokens (<paramref name="tokens"/> up to <paramref name="panelTokens"/>) of a block-major table with
    /// <paramref name="entries"/> entries a token (entry j of token t at j × <paramref name="panelTokens"/> + t), as the
    /// activations' <c>Prepare</c> lays them out.
    /// </summary>
    internal static void ClearPadding<T>(Span<T> table, int entries, int tokens, int panelTokens)
    {
        for (int j = 0; j < entries; j++)
        {
            table.Slice((j * panelTokens) + tokens, panelTokens - tokens).Clear();
        }
    }

    /// <summary>Refuses activations that would hold fewer tokens for the panels than they have.</summary>
    internal static void CheckPanelTokens(int tokens, int panelTokens)
    {
        if (panelTokens < tokens)
        {
            throw new ArgumentOutOfRangeException(nameof(panelTokens), panelTokens, $"fewer than the {tokens} tokens");
        }
    }

    /// <summary>Floats of scratch a panel of <paramref name="cols"/> columns takes: 16 code bytes a column, then scales and mins.</summary>
    public static int PanelFloats(int cols) => (cols * Rows / 4) + (2 * Rows * cols / 16);

    /// <summary>Values per sub-block with its own scale: 16 for Q3_K and Q6_K, 32 for Q4_0, Q4_K and Q5_K.</summary>
    public static int GroupValues(DType type) => type is DType.Q3_K or DType.Q6_K ? 16 : 32;

    /// <summary>
    /// The type whose panels <paramref name="type"/>'s are (<see cref="Multiply(KernelPath, DType, ReadOnlySpan{float}, int, int, Q8KActivations, Span{float}, int, ReadOnlySpan{byte})"/>
    /// takes): Q3_K packs as Q6_K does, each code + 32 (28..35 of Q6_K's 0..63) under its sixteen groups' d × (sc - 32),
    /// so Q6_K's products multiply it.
    /// </summary>
    /// <remarks>IQ4_XS packs as Q8_0 does (<see cref="Q8_0Panels.PackIq4Xs"/>: each 32 values' d × (ls - 32) over the table's values),
    /// so Q8_0's products multiply it against Q8_0 activations.</remarks>
    public static DType PanelForm(DType type) => type switch
    {
        DType.Q3_K => DType.Q6_K,
        DType.IQ4_XS => DType.Q8_0,
        _ => type,
    };

    /// <summary>
    /// Unpacks <paramref name="count"/> (at most <see cref="Rows"/>) consecutive rows of <paramref name="cols"/> values into
    /// <paramref name="panel"/>; the rows past <paramref name="count"/> are zero. The vector paths unpack a block of eight rows
    /// at a time and transpose its 32-bit column quads (eight by eight) into place; the scalar reference, from the formats'
    /// definitions, moves them one by one.
    /// </summary>
    public static void Pack(KernelPath path, DType type, ReadOnlySpan<byte> rows, int count, int cols, Span<float> panel)
    {
        if (type is not (DType.Q4_0 or DType.Q8_0 or DType.Q3_K or DType.Q4_K or DType.Q5_K or DType.Q6_K or DType.IQ4_XS))
        {
            throw new ArgumentException($"{type} has no integer panels", nameof(type));
        }

        if (type == DType.IQ4_XS)
        {
            // Q8_0's form: its codes and scales where a Q8_0 panel's lie (the mins after them go unread by Q8_0's products).
            Q8_0Panels.PackIq4Xs(rows, count, cols, MemoryMarshal.AsBytes(panel)[..Q8_0Panels.PanelBytes(cols)]);
            return;
        }

        int unit = UnitValues(type), blocks = cols / unit, blockBytes = DTypes.BlockBytes(type), rowBytes = blocks * blockBytes;
        int groupsPerBlock = unit / GroupValues(type), groups = blocks * groupsPerBlock;
        if (count is < 1 or > Rows || cols % unit != 0 || rows.Length < (long)count * rowBytes || panel.Length < PanelFloats(cols))
        {
            throw new ArgumentException($"a panel of {count} {type} rows of {cols} values needs {count * rowBytes} bytes and {PanelFloats(cols)} floats; got {rows.Length} and {panel.Length}");
        }

        Span<int> quads = MemoryMarshal.Cast<float, int>(panel[..(cols * Rows / 4)]);
        Span<float> scales = panel.Slice(cols * Rows / 4, groups * Rows);
        Span<float> mins = panel.Slice((cols * Rows / 4) + (groups * Rows), groups * Rows);
        if (count < Rows)
        {
            quads.Clear();
            scales.Clear();
            mins.Clear();
        }

        bool vector = path != KernelPath.Scalar && Avx2.IsSupported;
        if (vector && type is DType.Q4_0 or DType.Q8_0)
        {
            PackLegacy(type, rows, count, blocks, quads, scales, mins);
            return;
        }

        if (vector)
        {
            PackKQuant(type, rows, count, blocks, quads, scales, mins);
            return;
        }

        Span<byte> codes = stackalloc byte[8 * 256];
        Span<float> blockScales = stackalloc float[16], blockMins = stackalloc float[16];
        for (int b = 0; b < blocks; b++)
        {
            for (int r0 = 0; r0 < count; r0 += 8)
            {
                int inGroup = Math.Min(8, count - r0);
                for (int i = 0; i < inGroup; i++)
                {
                    int r = r0 + i;
                    ReadOnlySpan<byte> block = rows.Slice((r * rowBytes) + (b * blockBytes), blockBytes);
                    Span<byte> rowCodes = codes.Slice(i * unit, unit);
                    if (type == DType.Q4_0)
                    {
                        UnpackQ4_0(block, rowCodes, blockScales, blockMins);
                    }
                    else if (type == DType.Q8_0)
                    {
                        UnpackQ8_0(block, rowCodes, blockScales, blockMins);
                    }
                    else if (type == DType.Q6_K)
                    {
                        UnpackQ6K(block, rowCodes, blockScales);
                    }
                    else if (type == DType.Q3_K)
                    {
                        UnpackQ3K(block, rowCodes, blockScales);
                    }
                    else
                    {
                        UnpackQ4K(block, type == DType.Q5_K, rowCodes, blockScales, blockMins);
                    }

                    for (int j = 0; j < groupsPerBlock; j++)
                    {
                        scales[(((b * groupsPerBlock) + j) * Rows) + r] = blockScales[j];
                        if (type is not (DType.Q6_K or DType.Q3_K))
                        {
                            mins[(((b * groupsPerBlock) + j) * Rows) + r] = blockMins[j];
                        }
                    }
                }

                Span<int> destination = quads.Slice(b * unit / 4 * Rows);
                ReadOnlySpan<int> codeQuads = MemoryMarshal.Cast<byte, int>(codes);
                for (int i = 0; i < inGroup; i++)
                {
                    for (int q = 0; q < unit / 4; q++)
                    {
                        destination[(q * Rows) + r0 + i] = codeQuads[(i * unit / 4) + q];
                    }
                }
            }
        }
    }

    /// <summary>
    /// Eight rows' eight column quads (<paramref name="t0"/> is row 0's) stored as eight quads of the eight rows, quad i at
    /// <paramref name="target"/> + i × <see cref="Rows"/>: pairs of rows interleaved, then pairs of pairs, then the 128-bit halves.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose(Vector256<int> t0, Vector256<int> t1, Vector256<int> t2, Vector256<int> t3,
        Vector256<int> t4, Vector256<int> t5, Vector256<int> t6, Vector256<int> t7, ref int target)
    {
        Vector256<long> p0 = Avx2.UnpackLow(t0, t1).AsInt64(), p1 = Avx2.UnpackHigh(t0, t1).AsInt64();
        Vector256<long> p2 = Avx2.UnpackLow(t2, t3).AsInt64(), p3 = Avx2.UnpackHigh(t2, t3).AsInt64();
        Vector256<long> p4 = Avx2.UnpackLow(t4, t5).AsInt64(), p5 = Avx2.UnpackHigh(t4, t5).AsInt64();
        Vector256<long> p6 = Avx2.UnpackLow(t6, t7).AsInt64(), p7 = Avx2.UnpackHigh(t6, t7).AsInt64();
        Vector256<int> u0 = Avx2.UnpackLow(p0, p2).AsInt32(), u1 = Avx2.UnpackHigh(p0, p2).AsInt32();
        Vector256<int> u2 = Avx2.UnpackLow(p1, p3).AsInt32(), u3 = Avx2.UnpackHigh(p1, p3).AsInt32();
        Vector256<int> u4 = Avx2.UnpackLow(p4, p6).AsInt32(), u5 = Avx2.UnpackHigh(p4, p6).AsInt32();
        Vector256<int> u6 = Avx2.UnpackLow(p5, p7).AsInt32(), u7 = Avx2.UnpackHigh(p5, p7).AsInt32();
        Avx2.Permute2x128(u0, u4, 0x20).StoreUnsafe(ref target);
        Avx2.Permute2x128(u1, u5, 0x20).StoreUnsafe(ref target, Rows);
        Avx2.Permute2x128(u2, u6, 0x20).StoreUnsafe(ref target, 2 * Rows);
        Avx2.Permute2x128(u3, u7, 0x20).StoreUnsafe(ref target, 3 * Rows);
        Avx2.Permute2x128(u0, u4, 0x31).StoreUnsafe(ref target, 4 * Rows);
        Avx2.Permute2x128(u1, u5, 0x31).StoreUnsafe(ref target, 5 * Rows);
        Avx2.Permute2x128(u2, u6, 0x31).StoreUnsafe(ref target, 6 * Rows);
        Avx2.Permute2x128(u3, u7, 0x31).StoreUnsafe(ref target, 7 * Rows);
    }

    /// <summary>
    /// <see cref="Pack"/> for the k-quants on the vector paths, straight from the rows: per super-block and eight rows, each
    /// 32 values' codes (a nibble split, plus Q5_K's fifth bits or Q6_K's two high bits) transposed into place, and the scales
    /// and mins of the eight rows converted to f32 together and transposed the same way.
    /// </summary>
    private static unsafe void PackKQuant(DType type, ReadOnlySpan<byte> rows, int count, int blocks, Span<int> quads, Span<float> scales, Span<float> mins)
    {
        int blockBytes = DTypes.BlockBytes(type), rowBytes = blocks * blockBytes;
        int groupsPerBlock = 256 / GroupValues(type);
        ref float half = ref MemoryMarshal.GetArrayDataReference(Q8_0Kernel.HalfToSingle);
        ref int codeTarget = ref MemoryMarshal.GetReference(quads);
        ref int scaleTarget = ref Unsafe.As<float, int>(ref MemoryMarshal.GetReference(scales));
        ref int minTarget = ref Unsafe.As<float, int>(ref MemoryMarshal.GetReference(mins));
        fixed (byte* w = rows)
        {
            for (int b = 0; b < blocks; b++)
            {
                for (int r0 = 0; r0 < count; r0 += 8)
                {
                    var group = new RowGroup(w + ((nint)r0 * rowBytes) + ((nint)b * blockBytes), rowBytes, Math.Min(8, count - r0));
                    ref int codes = ref Unsafe.Add(ref codeTarget, (b * 64 * Rows) + r0);
                    ref int groupScales = ref Unsafe.Add(ref scaleTarget, (b * groupsPerBlock * Rows) + r0);
                    ref int groupMins = ref Unsafe.Add(ref minTarget, (b * groupsPerBlock * Rows) + r0);
                    if (type == DType.Q6_K)
                    {
                        Q6KGroup(group, ref codes, ref half, ref groupScales);
                    }
                    else if (type == DType.Q3_K)
                    {
                        Q3KGroup(group, ref codes, ref half, ref groupScales);
                    }
                    else
                    {
                        Q4KGroup(group, type == DType.Q5_K, ref codes, ref half, ref groupScales, ref groupMins);
                    }
                }
            }
        }
    }

    /// <summary>Up to eight rows' blocks at the same column: row i's at <see cref="First"/> + i × <see cref="Stride"/>, for i below <see cref="Count"/>.</summary>
    private readonly unsafe struct RowGroup(byte* first, int stride, int count)
    {
        public readonly byte* First = first;
        public readonly int Stride = stride;
        public readonly int Count = count;

        public byte* Row(int i) => First + ((nint)i * Stride);
    }

    /// <summary>Eight rows' vectors, <paramref name="of"/>(row i's block) for the rows there are and zero past them, transposed to <paramref name="target"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void TransposeRows<TPart>(RowGroup rows, TPart of, ref int target)
        where TPart : struct, IRowPart
    {
        Vector256<int> Part(int i) => i < rows.Count ? of.Of(rows.Row(i)) : default;
        Transpose(Part(0), Part(1), Part(2), Part(3), Part(4), Part(5), Part(6), Part(7), ref target);
    }

    /// <summary>Eight 32-bit lanes taken from one row's block: column quads or f32 scales.</summary>
    private unsafe interface IRowPart
    {
        Vector256<int> Of(byte* block);
    }

    /// <summary>Q4_K's or Q5_K's 32 codes of chunk <see cref="Chunk"/>'s low (or high) nibbles, with Q5_K's fifth bit.</summary>
    private readonly unsafe struct Q4KCodes(int chunk, bool high, bool fifth) : IRowPart
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<int> Of(byte* block)
        {
            var low = Vector256.Create((byte)0x0F);
            Vector256<byte> packed = Avx.LoadVector256(block + (fifth ? 48 : 16) + (32 * chunk));
            Vector256<byte> codes = high ? Vector256.ShiftRightLogical(packed.AsUInt16(), 4).AsByte() & low : packed & low;
            if (fifth)
            {
                codes |= KQuantIntegerKernel.FifthBit(Avx.LoadVector256(block + 16), (2 * chunk) + (high ? 1 : 0));
            }

            return codes.AsInt32();
        }
    }

    /// <summary>A Q4_K or Q5_K super-block's eight d × scale (or dmin × min) as f32, in the order of <see cref="UnpackQ4K"/>.</summary>
    private readonly unsafe struct Q4KScales(float* half, bool mins) : IRowPart
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<int> Of(byte* block)
        {
            (ulong scales, ulong minimums) = KQuantIntegerKernel.UnpackScalesAndMins(ref block[4]);
            float d = half[*(ushort*)(block + (mins ? 2 : 0))];
            Vector256<int> bytes = Avx2.ConvertToVector256Int32(Vector128.CreateScalar(mins ? minimums : scales).AsByte());
            return (Avx.ConvertToVector256Single(bytes) * d).AsInt32();
        }
    }

    /// <summary>Q6_K's codes of values 128 × half + 32 × quarter.. + 31, as <see cref="UnpackQ6K"/>.</summary>
    private readonly unsafe struct Q6KCodes(int half, int quarter) : IRowPart
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<int> Of(byte* block)
        {
            var low = Vector256.Create((byte)0x0F);
            var two = Vector256.Create((byte)0x30);
            Vector256<byte> ql = Avx.LoadVector256(block + (64 * half) + (32 * (quarter & 1)));
            Vector256<ushort> qh = Avx.LoadVector256(block + 128 + (32 * half)).AsUInt16();
            Vector256<byte> nibbles = quarter < 2 ? ql & low : Vector256.ShiftRightLogical(ql.AsUInt16(), 4).AsByte() & low;
            Vector256<byte> top = quarter switch
            {
                0 => Vector256.ShiftLeft(qh, 4).AsByte(),
                1 => Vector256.ShiftLeft(qh, 2).AsByte(),
                2 => qh.AsByte(),
                _ => Vector256.ShiftRightLogical(qh, 2).AsByte(),
            };
            return (nibbles | (top & two)).AsInt32();
        }
    }

    /// <summary>Q6_K's d × scale of groups 8 × <see cref="Eighth"/>.. + 7.</summary>
    private readonly unsafe struct Q6KScales(float* half, int eighth) : IRowPart
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<int> Of(byte* block)
        {
            float d = half[*(ushort*)(block + 208)];
            Vector256<int> scales = Avx2.ConvertToVector256Int32(Vector128.CreateScalar(*(ulong*)(block + 192 + (8 * eighth))).AsSByte());
            return (Avx.ConvertToVector256Single(scales) * d).AsInt32();
        }
    }

    private static unsafe void Q4KGroup(RowGroup rows, bool fifth, ref int codes, ref float half, ref int scales, ref int mins)
    {
        for (int c = 0; c < 4; c++)
        {
            TransposeRows(rows, new Q4KCodes(c, high: false, fifth), ref Unsafe.Add(ref codes, 16 * c * Rows));
            TransposeRows(rows, new Q4KCodes(c, high: true, fifth), ref Unsafe.Add(ref codes, ((16 * c) + 8) * Rows));
        }

        float* table = (float*)Unsafe.AsPointer(ref half);
        TransposeRows(rows, new Q4KScales(table, mins: false), ref scales);
        TransposeRows(rows, new Q4KScales(table, mins: true), ref mins);
    }

    /// <summary>Q3_K's codes + 32 of values 128 × half + 32 × quarter.. + 31 (the two low bits, the high one × 4, + 28), as <see cref="UnpackQ3K"/>.</summary>
    private readonly unsafe struct Q3KCodes(int half, int quarter) : IRowPart
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<int> Of(byte* block)
        {
            int k = (4 * half) + quarter;
            Vector256<byte> qs = Avx.LoadVector256(block + 32 + (32 * half)), hmask = Avx.LoadVector256(block);
            Vector256<byte> twoBits = Vector256.ShiftRightLogical(qs.AsUInt16(), 2 * quarter).AsByte() & Vector256.Create((byte)3);
            Vector256<byte> high = Vector256.ShiftLeft((Vector256.ShiftRightLogical(hmask.AsUInt16(), k).AsByte() & Vector256<byte>.One).AsUInt16(), 2).AsByte();
            return ((twoBits | high) + Vector256.Create((byte)28)).AsInt32();
        }
    }

    /// <summary>Q3_K's d × (sc - 32) of groups 8 × <see cref="Eighth"/>.. + 7.</summary>
    private readonly unsafe struct Q3KScales(float* half, int eighth) : IRowPart
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<int> Of(byte* block)
        {
            float d = half[*(ushort*)(block + 108)];
            Vector128<sbyte> all = KQuantIntegerKernel.Q3KScales(block + 96);
            Vector256<int> scales = Avx2.ConvertToVector256Int32(eighth == 0 ? all : Sse2.ShiftRightLogical128BitLane(all, 8));
            return (Avx.ConvertToVector256Single(scales) * d).AsInt32();
        }
    }

    private static unsafe void Q3KGroup(RowGroup rows, ref int codes, ref float half, ref int scales)
    {
        for (int h = 0; h < 2; h++)
        {
            for (int quarter = 0; quarter < 4; quarter++)
            {
                TransposeRows(rows, new Q3KCodes(h, quarter), ref Unsafe.Add(ref codes, ((32 * h) + (8 * quarter)) * Rows));
            }
        }

        float* table = (float*)Unsafe.AsPointer(ref half);
        for (int e = 0; e < 2; e++)
        {
            TransposeRows(rows, new Q3KScales(table, e), ref Unsafe.Add(ref scales, 8 * e * Rows));
        }
    }

    private static unsafe void Q6KGroup(RowGroup rows, ref int codes, ref float half, ref int scales)
    {
        for (int h = 0; h < 2; h++)
        {
            for (int quarter = 0; quarter < 4; quarter++)
            {
                TransposeRows(rows, new Q6KCodes(h, quarter), ref Unsafe.Add(ref codes, ((32 * h) + (8 * quarter)) * Rows));
            }
        }

        float* table = (float*)Unsafe.AsPointer(ref half);
        for (int e = 0; e < 2; e++)
        {
            TransposeRows(rows, new Q6KScales(table, e), ref Unsafe.Add(ref scales, 8 * e * Rows));
        }
    }

    /// <summary>
    /// <see cref="Pack"/> for Q4_0 or Q8_0 on the vector paths, straight from the rows: eight rows' column quads of a block
    /// transposed into place (<see cref="Q4_0Codes"/>, <see cref="Q8_0Codes"/>), then their scales; the min is the codes'
    /// offset (8 or 128) times the scale.
    /// </summary>
    private static unsafe void PackLegacy(DType type, ReadOnlySpan<byte> rows, int count, int blocks, Span<int> quads, Span<float> scales, Span<float> mins)
    {
        int blockBytes = DTypes.BlockBytes(type);
        int rowBytes = blocks * blockBytes;
        float offset = type == DType.Q8_0 ? 128 : 8;
        ref float half = ref MemoryMarshal.GetArrayDataReference(Q8_0Kernel.HalfToSingle);
        ref int target = ref MemoryMarshal.GetReference(quads);
        Vector256<int> rowOffsets = Vector256.CreateSequence(0, rowBytes);
        fixed (byte* w = rows)
        {
            for (int b = 0; b < blocks; b++)
            {
                for (int r0 = 0; r0 < count; r0 += 8)
                {
                    var group = new RowGroup(w + ((nint)r0 * rowBytes) + (b * blockBytes), rowBytes, Math.Min(8, count - r0));
                    if (type == DType.Q8_0)
                    {
                        TransposeRows(group, default(Q8_0Codes), ref Unsafe.Add(ref target, (b * 8 * Rows) + r0));
                    }
                    else
                    {
                        TransposeRows(group, default(Q4_0Codes), ref Unsafe.Add(ref target, (b * 8 * Rows) + r0));
                    }

                    if (group.Count == 8)
                    {
                        // The eight rows' f16 scales gathered and widened together: looked up one at a time they took half the
                        // packing (2.3 cycles a scale; 16 × 896 values packed in 0.58 µs before, 0.43 after); assembled with
                        // eight loads and inserts, still a third of it on the Xeon (gathered, 16 × 896 in 0.67 → 0.57 µs).
                        Vector256<uint> bits = Avx2.GatherVector256((uint*)group.First, rowOffsets, 1) & Vector256.Create(0xFFFFu);
                        Vector256<float> d = F16Load.Widen(bits);
                        d.StoreUnsafe(ref scales[(b * Rows) + r0]);
                        (d * offset).StoreUnsafe(ref mins[(b * Rows) + r0]);
                        continue;
                    }

                    for (int r = r0; r < r0 + group.Count; r++)
                    {
                        float d = RowOperands.Half(ref half, ref w[((nint)r * rowBytes) + (b * blockBytes)]);
                        scales[(b * Rows) + r] = d;
                        mins[(b * Rows) + r] = offset * d;
                    }
                }
            }
        }
    }

    /// <summary>
    /// A Q4_0 block's 32 codes as eight column quads in order: its 16 bytes loaded into both halves of a vector and the upper
    /// half's 32-bit lanes shifted by 4 (as <see cref="Q8IntegerKernel"/>'s decode), low nibbles kept.
    /// </summary>
    private readonly unsafe struct Q4_0Codes : IRowPart
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<int> Of(byte* block) =>
            Avx2.ShiftRightLogicalVariable(Avx2.BroadcastVector128ToVector256(block + 2).AsUInt32(), Vector256.Create(0u, 0, 0, 0, 4, 4, 4, 4)).AsInt32()
            & Vector256.Create(0x0F0F0F0F);
    }

    /// <summary>A Q8_0 block's 32 signed codes + 128 as eight column quads in order (flipping the top bit adds 128).</summary>
    private readonly unsafe struct Q8_0Codes : IRowPart
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<int> Of(byte* block) => Avx.LoadVector256(block + 2).AsInt32() ^ Vector256.Create(unchecked((int)0x80808080));
    }

    /// <summary>A Q8_0 block's 32 codes + 128 (0..255, as vpdpbusd's unsigned operand), its scale d and 128 × d as the min.</summary>
    private static void UnpackQ8_0(ReadOnlySpan<byte> block, Span<byte> codes, Span<float> scales, Span<float> mins)
    {
        float d = HalfBits.ToSingle(BitConverter.ToUInt16(block));
        scales[0] = d;
        mins[0] = 128 * d;
        for (int l = 0; l < 32; l++)
        {
            codes[l] = (byte)((sbyte)block[2 + l] + 128);
        }
    }

    /// <summary>A Q4_0 block's 32 codes (low nibbles are values 0-15, high nibbles 16-31), its scale d and 8 × d as the min.</summary>
    private static void UnpackQ4_0(ReadOnlySpan<byte> block, Span<byte> codes, Span<float> scales, Span<float> mins)
    {
        float d = HalfBits.ToSingle(BitConverter.ToUInt16(block));
        scales[0] = d;
        mins[0] = 8 * d;
        for (int l = 0; l < 16; l++)
        {
            codes[l] = (byte)(block[2 + l] & 0xF);
            codes[16 + l] = (byte)(block[2 + l] >> 4);
        }
    }

    /// <summary>
    /// A Q4_K super-block's 256 codes in value order (chunk c's low nibbles are values 64c..64c + 31, its high nibbles the
    /// next 32), with Q5_K's fifth bit from qh; its eight sub-blocks' d × scale and dmin × min.
    /// </summary>
    private static void UnpackQ4K(ReadOnlySpan<byte> block, bool fifth, Span<byte> codes, Span<float> scales, Span<float> mins)
    {
        float d = HalfBits.ToSingle(BitConverter.ToUInt16(block)), dmin = HalfBits.ToSingle(BitConverter.ToUInt16(block[2..]));
        (ulong packedScales, ulong packedMins) = KQuantIntegerKernel.UnpackScalesAndMins(ref MemoryMarshal.GetReference(block[4..]));
        for (int j = 0; j < 8; j++)
        {
            scales[j] = d * (byte)(packedScales >> (8 * j));
            mins[j] = dmin * (byte)(packedMins >> (8 * j));
        }

        int codesAt = fifth ? 48 : 16;
        for (int c = 0; c < 4; c++)
        {
            for (int l = 0; l < 32; l++)
            {
                byte packed = block[codesAt + (32 * c) + l];
                int high = fifth ? block[16 + l] : 0;
                codes[(64 * c) + l] = (byte)((packed & 0xF) | (((high >> (2 * c)) & 1) << 4));
                codes[(64 * c) + 32 + l] = (byte)((packed >> 4) | (((high >> ((2 * c) + 1)) & 1) << 4));
            }
        }
    }

    /// <summary>A Q3_K super-block's 256 codes + 32 (28..35) in value order and its sixteen groups' d × (sc - 32): Q6_K's panel form.</summary>
    private static void UnpackQ3K(ReadOnlySpan<byte> block, Span<byte> codes, Span<float> scales)
    {
        Span<sbyte> values = stackalloc sbyte[256], groupScales = stackalloc sbyte[16];
        WidenedBlocks.Q3_KCodes(block, values, groupScales);
        float d = HalfBits.ToSingle(BitConverter.ToUInt16(block[108..]));
        for (int g = 0; g < 16; g++)
        {
            scales[g] = d * groupScales[g];
        }

        for (int v = 0; v < 256; v++)
        {
            codes[v] = (byte)(values[v] + 32);
        }
    }

    /// <summary>
    /// A Q6_K super-block's 256 codes (0..63, the value + 32) in value order: per half of 128, the low nibbles of ql[0..31] and
    /// ql[32..63], then their high nibbles, each with two bits of qh; its sixteen groups' d × scale (no mins: see the class).
    /// </summary>
    private static void UnpackQ6K(ReadOnlySpan<byte> block, Span<byte> codes, Span<float> scales)
    {
        float d = HalfBits.ToSingle(BitConverter.ToUInt16(block[208..]));
        for (int g = 0; g < 16; g++)
        {
            scales[g] = d * (sbyte)block[192 + g];
        }

        for (int half = 0; half < 2; half++)
        {
            ReadOnlySpan<byte> ql = block.Slice(64 * half, 64), qh = block.Slice(128 + (32 * half), 32);
            Span<byte> values = codes.Slice(128 * half, 128);
            for (int l = 0; l < 32; l++)
            {
                values[l] = (byte)((ql[l] & 0xF) | ((qh[l] & 3) << 4));
                values[32 + l] = (byte)((ql[32 + l] & 0xF) | (((qh[l] >> 2) & 3) << 4));
                values[64 + l] = (byte)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
                values[96 + l] = (byte)((ql[32 + l] >> 4) | (((qh[l] >> 6) & 3) << 4));
            }
        }
    }

    /// <summary>
    /// y[t × <paramref name="yStride"/> + r] = the panel's row r dotted with token t's activations, for every token of
    /// <paramref name="x"/> and r below <paramref name="count"/> (a k-quant panel).
    /// </summary>
    /// <remarks>
    /// The cache lines of <paramref name="next"/> (the next panel's rows, when there is one) are prefetched while multiplying,
    /// a few at each sub-block of the first two passes over the tokens.
    /// </remarks>
    public static void Multiply(KernelPath path, DType type, ReadOnlySpan<float> panel, int count, int cols, Q8KActivations x, Span<float> y, int yStride,
        ReadOnlySpan<byte> next = default)
    {
        type = PanelForm(type);    // a Q3_K panel is a Q6_K one
        int groupValues = GroupValues(type);
        Check(type is DType.Q4_K or DType.Q5_K or DType.Q6_K, type, panel, count, cols, x.Cols, x.Tokens, y, yStride);
        var operands = Operands.Of(panel, cols, groupValues, Q8KActivations.BlockValues, x.PanelTokens, x.AllCodes, x.ScalesByBlock,
            type == DType.Q6_K ? default : x.ScaledSubBlockSums, type == DType.Q6_K ? x.Q6KOffsets : default, next);
        if (type == DType.Q6_K)
        {
            Multiply<Packed, CodeOffsets>(path, operands, count, x.Tokens, y, yStride);
        }
        else
        {
            Multiply<Packed, ScaledMins>(path, operands, count, x.Tokens, y, yStride);
        }
    }

    /// <summary>
    /// <see cref="Multiply(KernelPath, DType, ReadOnlySpan{float}, int, int, Q8KActivations, Span{float}, int)"/> for a Q4_0 or Q8_0
    /// panel and Q8_0 activations (Q8_0 on a path without vpdpbusd takes the scalar reference: see <see cref="MultipliesInIntegers"/>).
    /// </summary>
    public static void Multiply(KernelPath path, DType type, ReadOnlySpan<float> panel, int count, int cols, Q8Activations x, Span<float> y, int yStride,
        ReadOnlySpan<byte> next = default)
    {
        type = PanelForm(type);    // an IQ4_XS panel is a Q8_0 one
        Check(type is DType.Q4_0 or DType.Q8_0, type, panel, count, cols, x.Cols, x.Tokens, y, yStride);
        Multiply<Packed, CodeOffsets>(type == DType.Q8_0 && !MultipliesInIntegers(path, type) ? KernelPath.Scalar : path,
            Operands.Of(panel, cols, Q8Activations.BlockValues, Q8Activations.BlockValues, x.PanelTokens, x.AllCodes, x.ScalesByBlock,
                default, type == DType.Q8_0 ? x.Q8_0Offsets : x.Q4_0Offsets, next),
            count, x.Tokens, y, yStride);
    }

    /// <summary>
    /// y[t × <paramref name="yStride"/> + r] = row r of a repacked Q4_0 <paramref name="panel"/> (<see cref="NibblePanels"/>, all
    /// <see cref="Rows"/> rows) dotted with token t's activations, for every token of <paramref name="x"/>: the same sums, bit for
    /// bit, as packing the rows and <see cref="Multiply(KernelPath, DType, ReadOnlySpan{float}, int, int, Q8Activations, Span{float}, int, ReadOnlySpan{byte})"/>.
    /// The cache lines of <paramref name="next"/> are prefetched as there. The panel holds its scales as <paramref name="scales"/> says.
    /// </summary>
    public static void MultiplyRepacked(KernelPath path, ReadOnlySpan<byte> panel, int cols, Q8Activations x, Span<float> y, int yStride,
        ReadOnlySpan<byte> next = default, PanelScales scales = PanelScales.F32) =>
        MultiplyRepacked(path, DType.Q4_0, panel, cols, x.Cols, x.Tokens, x.PanelTokens, x.AllCodes, x.ScalesByBlock, default, x.Q4_0Offsets, x.Q8_0Offsets,
            y, yStride, next, scales);

    /// <summary>
    /// <see cref="MultiplyRepacked(KernelPath, ReadOnlySpan{byte}, int, Q8Activations, Span{float}, int, ReadOnlySpan{byte})"/> for a
    /// repacked Q4_K panel and Q8_K activations.
    /// </summary>
    public static void MultiplyRepacked(KernelPath path, ReadOnlySpan<byte> panel, int cols, Q8KActivations x, Span<float> y, int yStride,
        ReadOnlySpan<byte> next = default) =>
        MultiplyRepacked(path, DType.Q4_K, panel, cols, x.Cols, x.Tokens, x.PanelTokens, x.AllCodes, x.ScalesByBlock, x.ScaledSubBlockSums, default, default,
            y, yStride, next, PanelScales.F32);

    /// <summary>
    /// y[t × <paramref name="yStride"/> + r] = row r of a repacked Q8_0 <paramref name="panel"/> (<see cref="Q8_0Panels"/>, all
    /// <see cref="Rows"/> rows) dotted with token t's activations, for every token of <paramref name="x"/>: the same sums, bit for
    /// bit, as packing the rows and <see cref="Multiply(KernelPath, DType, ReadOnlySpan{float}, int, int, Q8Activations, Span{float}, int, ReadOnlySpan{byte})"/>,
    /// whose codes and scales the panel holds as they are. The cache lines of <paramref name="next"/> are prefetched as there.
    /// </summary>
    public static void MultiplyRepackedQ8_0(KernelPath path, ReadOnlySpan<byte> panel, int cols, Q8Activations x, Span<float> y, int yStride,
        ReadOnlySpan<byte> next = default)
    {
        if (x.Cols != cols || !Q8_0Panels.Fits(Rows, cols) || panel.Length != Q8_0Panels.PanelBytes(cols) || y.Length < ((long)(x.Tokens - 1) * yStride) + Rows)
        {
            throw new ArgumentException($"a repacked Q8_0 panel of {cols} values ({panel.Length} bytes) against {x.Tokens} tokens of {x.Cols}: {y.Length} results");
        }

        // No mins: Q8_0's sums start from -128 × Σa (CodeOffsets), which never reads them; the cursor walks the scales instead.
        ref byte codes = ref MemoryMarshal.GetReference(panel);
        ref byte scales = ref Unsafe.Add(ref codes, Q8_0Panels.CodeBytes(cols));
        var operands = new Operands(ref codes, ref scales, 4 * Rows, ref Unsafe.As<byte, float>(ref scales), cols / 32, 8, 1,
            ref MemoryMarshal.GetReference(x.AllCodes), cols, x.PanelTokens, ref MemoryMarshal.GetReference(x.ScalesByBlock), ref Unsafe.NullRef<float>(),
            ref MemoryMarshal.GetReference(x.Q8_0Offsets), ref MemoryMarshal.GetReference(x.Q8_0Offsets), ref MemoryMarshal.GetReference(next), (next.Length + 63) / 64);
        Multiply<Packed, CodeOffsets>(MultipliesInIntegers(path, DType.Q8_0) ? path : KernelPath.Scalar, operands, Rows, x.Tokens, y, yStride);
    }

    /// <summary>
    /// Both types' entry: the operands checked, then the scalar reference per row (<see cref="NibblePanels.DotRow"/>, each token's
    /// block scales gathered from the block-major table) or the vector kernels.
    /// </summary>
    private static void MultiplyRepacked(KernelPath path, DType type, ReadOnlySpan<byte> panel, int cols, int xCols, int tokens, int panelTokens, ReadOnlySpan<sbyte> codes,
        ReadOnlySpan<float> scalesByBlock, ReadOnlySpan<float> scaledSums, ReadOnlySpan<int> offsets, ReadOnlySpan<int> highOffsets,
        Span<float> y, int yStride, ReadOnlySpan<byte> next, PanelScales panelScales)
    {
        if (xCols != cols || !NibblePanels.Fits(type, Rows, cols) || panel.Length != NibblePanels.PanelBytes(type, cols, panelScales)
            || y.Length < ((long)(tokens - 1) * yStride) + Rows || (panelScales == PanelScales.F16 && type != DType.Q4_0))
        {
            throw new ArgumentException($"a repacked {type} panel of {cols} values, {panelScales} scales ({panel.Length} bytes) against {tokens} tokens of {xCols}: {y.Length} results");
        }

        int groupsPerBlock = type == DType.Q4_K ? Q8KActivations.BlockValues / 32 : 1;
        if (path == KernelPath.Scalar || !Avx2.IsSupported || !Fma.IsSupported)
        {
            Span<float> scales = stackalloc float[cols / 32 / groupsPerBlock];
            for (int t = 0; t < tokens; t++)
            {
                for (int j = 0; j < scales.Length; j++)
                {
                    scales[j] = scalesByBlock[(j * panelTokens) + t];
                }

                for (int r = 0; r < Rows; r++)
                {
                    y[(t * yStride) + r] = NibblePanels.DotRow(type, panel, cols, r, codes.Slice(t * cols, cols), scales, panelScales);
                }
            }

            return;
        }

        // Over more than one pass, f16 scales widened once into the f32 layout (each pass would widen them again).
        ReadOnlySpan<float> widened = default;
        if (panelScales == PanelScales.F16 && tokens > 4)
        {
            t_widenedScales = t_widenedScales is { } buffer && buffer.Length >= cols / 2 ? buffer : new float[cols / 2];
            NibblePanels.WidenScales(panel, cols, t_widenedScales);
            widened = t_widenedScales.AsSpan(0, cols / 2);
        }

        var operands = Operands.OfRepacked(panel, cols, groupsPerBlock, panelTokens, codes, scalesByBlock, scaledSums, offsets, highOffsets, next, panelScales,
            widened);
        if (type == DType.Q4_0)
        {
            MultiplyRepacked<CodeOffsets>(path, panelScales == PanelScales.F16 && widened.IsEmpty, operands, tokens, y, yStride);
        }
        else
        {
            MultiplyRepacked<ScaledMins>(path, halves: false, operands, tokens, y, yStride);
        }
    }

    /// <summary>
    /// The vector paths' kernels on a repacked panel: its odd sub-blocks' codes × 16 for vpdpbusd, shifted down for vpmaddubsw,
    /// whose 16-bit pair sums then add up over a whole sub-block before one vpmaddwd widens them (<see cref="NibblePairSums"/>).
    /// A 256-token prefill on one core of an AMD Zen 3 (AVX2): Q4_0 Qwen2.5-0.5B 112 → 121 tokens/s, Q4_K_M 1.5B 31 → 34
    /// (medians of 4 alternating runs; 2 cores 167 → 184 and 53 → 58). A Q4_0 panel's f16 scales (<paramref name="halves"/>)
    /// are widened where each sub-block reads them (<see cref="Halves{TCodes}"/>).
    /// </summary>
    private static void MultiplyRepacked<TZero>(KernelPath path, bool halves, scoped in Operands operands, int tokens, Span<float> y, int yStride)
        where TZero : struct
    {
        if (ByteDots.Vnni(path) && halves)
        {
            Multiply<Halves<HighNibblesTimes16>, TZero>(path, operands, Rows, tokens, y, yStride);
        }
        else if (ByteDots.Vnni(path))
        {
            Multiply<HighNibblesTimes16, TZero>(path, operands, Rows, tokens, y, yStride);
        }
        else if (halves)
        {
            Multiply<Halves<HighNibbles>, TZero>(path, operands, Rows, tokens, y, yStride);
        }
        else
        {
            Multiply<HighNibbles, TZero>(path, operands, Rows, tokens, y, yStride);
        }
    }

    /// <summary>A thread's f32 scales of a repacked Q4_0 panel with f16 ones, for a product of several passes (<see cref="NibblePanels.WidenScales"/>).</summary>
    [ThreadStatic]
    private static float[]? t_widenedScales;

    private static void Check(bool activationsFit, DType type, ReadOnlySpan<float> panel, int count, int cols, int xCols, int tokens, Span<float> y, int yStride)
    {
        if (!activationsFit || xCols != cols || panel.Length < PanelFloats(cols) || count is < 1 or > Rows || y.Length < ((long)(tokens - 1) * yStride) + count)
        {
            throw new ArgumentException($"a {type} panel of {count} rows of {cols} values against {tokens} tokens of {xCols}: {panel.Length} floats, {y.Length} results");
        }
    }

    /// <summary>
    /// Multiplies every token, eight at a time on the 512-bit path, then four, then one. The next panel's cache lines are
    /// prefetched a few at each sub-block of the first two passes: asked for all at once, the 100-700 prefetches outnumbered
    /// the core's miss buffers and stalled it until most had arrived; all in the first of a 16-token step's two passes, they
    /// still stalled it for a tenth of the multiplying; spread over all of a long prompt's passes, the last ones arrived
    /// late for the next panel's packing (a 512-token prefill 7% slower than over the first two, in one process, alternating).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Multiply<TCodes, TZero>(KernelPath path, scoped in Operands operands, int count, int tokens, Span<float> y, int yStride)
        where TCodes : ICodes
        where TZero : struct
    {
        Span<float> tile = stackalloc float[8 * Rows];
        bool vector = path != KernelPath.Scalar && Avx2.IsSupported && Fma.IsSupported;
        bool vnni = ByteDots.Vnni(path);

        // The groups run over the activations' tokens (operands.Tokens: zero ones may pad the real ones to a group, see
        // PanelTokens) and keep the real ones' results; tokens left over after the groups go one by one.
        int held = operands.Tokens;
        int eights = vector && path == KernelPath.Vector512 ? held / 8 : 0;
        int fours = vector ? (held - (8 * eights)) / 4 : 0;
        int ones = Math.Max(0, tokens - (8 * eights) - (4 * fours));
        int passes = Math.Min(eights + fours + ones, 2), pass = 0;
        int t = 0;
        for (; t + 8 <= 8 * eights; t += 8, pass++)
        {
            var prefetch = new PrefetchShare(operands, pass, passes);
            if (vnni)
            {
                Tokens<EightTokens, Vnni, TCodes, TZero>(operands, t, tile, prefetch);
            }
            else if (TCodes.Nibbles)
            {
                Tokens<EightTokens, NibblePairSums, TCodes, TZero>(operands, t, tile, prefetch);
            }
            else
            {
                Tokens<EightTokens, PairSums, TCodes, TZero>(operands, t, tile, prefetch);
            }

            for (int i = 0; i < Math.Min(8, tokens - t); i++)
            {
                tile.Slice(i * Rows, count).CopyTo(y.Slice((t + i) * yStride, count));
            }
        }

        for (; t + 4 <= (8 * eights) + (4 * fours); t += 4, pass++)
        {
            var prefetch = new PrefetchShare(operands, pass, passes);
            if (vnni)
            {
                Tokens<FourTokens, Vnni, TCodes, TZero>(operands, t, tile, prefetch);
            }
            else if (TCodes.Nibbles)
            {
                Tokens<FourTokens, NibblePairSums, TCodes, TZero>(operands, t, tile, prefetch);
            }
            else
            {
                Tokens<FourTokens, PairSums, TCodes, TZero>(operands, t, tile, prefetch);
            }

            for (int i = 0; i < Math.Min(4, tokens - t); i++)
            {
                tile.Slice(i * Rows, count).CopyTo(y.Slice((t + i) * yStride, count));
            }
        }

        for (; t < tokens; t++, pass++)
        {
            var prefetch = new PrefetchShare(operands, pass, passes);
            if (vector && vnni)
            {
                OneToken<Vnni, TCodes, TZero>(operands, t, tile, prefetch);
            }
            else if (vector && TCodes.Nibbles)
            {
                OneToken<NibblePairSums, TCodes, TZero>(operands, t, tile, prefetch);
            }
            else if (vector)
            {
                OneToken<PairSums, TCodes, TZero>(operands, t, tile, prefetch);
            }
            else
            {
                Scalar<TZero>(operands, t, tile);
            }

            tile[..count].CopyTo(y.Slice(t * yStride, count));
        }
    }

    /// <summary>
    /// Q4_0's, Q8_0's and Q6_K's codes are their signed values + 8, + 128 and + 32: a sub-block's integer product starts from
    /// -offset × Σa (<see cref="Operands.Offsets"/>) and comes out as the product with the signed values, which one scale then
    /// multiplies.
    /// </summary>
    private readonly struct CodeOffsets;

    /// <summary>Q4_K's and Q5_K's real mins: y −= (dmin × min) × (dx × Σa) in f32 per sub-block.</summary>
    private readonly struct ScaledMins;

    /// <summary>The next panel's cache lines one pass prefetches, a few at each sub-block.</summary>
    private readonly struct PrefetchShare
    {
        public readonly int First;
        public readonly int End;
        public readonly int PerGroup;

        public PrefetchShare(scoped in Operands p, int pass, int passes)
        {
            if (pass < passes)
            {
                First = (int)((long)p.NextLines * pass / passes);
                End = (int)((long)p.NextLines * (pass + 1) / passes);
                PerGroup = (End - First + p.Groups - 1) / p.Groups;
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void AtGroup(scoped in Operands p, int g)
        {
            int from = First + (g * PerGroup);
            if (from < End)
            {
                Prefetch.Lines(ref p.Next, from, Math.Min(from + PerGroup, End));
            }
        }
    }

    /// <summary>The panel and the activations as the kernels walk them.</summary>
    private readonly ref struct Operands
    {
        public readonly ref byte Codes;

        /// <summary>
        /// The rows' scales of the first sub-block; an odd sub-block's are <see cref="ScaleStride"/> bytes on from the even one's
        /// before it, the next even one's <see cref="PairScaleStride"/> on from those (the two differ where a repacked panel's
        /// f16 scales follow each pair's codes).
        /// </summary>
        public readonly ref byte Scales;
        public readonly int ScaleStride;
        public readonly int PairScaleStride;

        /// <summary>Bytes from one pair of sub-blocks' codes to the next's in a repacked panel (<see cref="NibblePanels.PairBytes"/>).</summary>
        public readonly int PairStride;

        public readonly ref float Mins;
        public readonly int Groups;
        public readonly int QuadsPerGroup;
        public readonly int GroupsPerBlock;

        /// <summary>Token 0's activation codes; token t's are <see cref="Cols"/> × t further on.</summary>
        public readonly ref sbyte Activations;
        public readonly int Cols;

        /// <summary>The tokens: the stride of the block-major tables below.</summary>
        public readonly int Tokens;

        /// <summary>The activations' block scales, block by block: block j of token t at j × <see cref="Tokens"/> + t.</summary>
        public readonly ref float BlockScales;

        /// <summary>The block scale × Σ codes per sub-block, sub-block by sub-block, for <see cref="ScaledMins"/>.</summary>
        public readonly ref float ScaledSums;

        /// <summary>-offset × Σ codes per sub-block, sub-block by sub-block, for <see cref="CodeOffsets"/>.</summary>
        public readonly ref int Offsets;

        /// <summary>For <see cref="HighNibblesTimes16"/>: 16 × <see cref="Offsets"/> (codes × 16 are stored + 128).</summary>
        public readonly ref int HighOffsets;

        /// <summary>The next panel's rows, <see cref="NextLines"/> cache lines to prefetch.</summary>
        public readonly ref byte Next;
        public readonly int NextLines;

        /// <summary>
        /// A packed panel of <paramref name="cols"/> columns (codes, then per sub-block of <paramref name="groupValues"/> the rows'
        /// scales, then their mins) and <paramref name="tokens"/> tokens' activations quantized per <paramref name="activationBlock"/> values.
        /// </summary>
        public static Operands Of(ReadOnlySpan<float> panel, int cols, int groupValues, int activationBlock, int tokens, ReadOnlySpan<sbyte> activations,
            ReadOnlySpan<float> blockScales, ReadOnlySpan<float> scaledSums, ReadOnlySpan<int> offsets, ReadOnlySpan<byte> next)
        {
            int groups = cols / groupValues;
            ref float scales = ref Unsafe.Add(ref MemoryMarshal.GetReference(panel), cols * Rows / 4);
            return new Operands(ref Unsafe.As<float, byte>(ref MemoryMarshal.GetReference(panel)), ref Unsafe.As<float, byte>(ref scales), 4 * Rows,
                ref Unsafe.Add(ref scales, groups * Rows), groups, groupValues / 4, activationBlock / groupValues, ref MemoryMarshal.GetReference(activations),
                cols, tokens, ref MemoryMarshal.GetReference(blockScales), ref MemoryMarshal.GetReference(scaledSums), ref MemoryMarshal.GetReference(offsets),
                ref MemoryMarshal.GetReference(offsets), ref MemoryMarshal.GetReference(next), (next.Length + 63) / 64);
        }

        /// <summary>
        /// A repacked panel (<see cref="NibblePanels"/>) and activations with <paramref name="groupsPerBlock"/> sub-blocks a scale:
        /// Q4_0's with both tables of offsets (no mins), or Q4_K's with the scaled sums its mins take.
        /// </summary>
        public static Operands OfRepacked(ReadOnlySpan<byte> panel, int cols, int groupsPerBlock, int tokens, ReadOnlySpan<sbyte> activations,
            ReadOnlySpan<float> blockScales, ReadOnlySpan<float> scaledSums, ReadOnlySpan<int> offsets, ReadOnlySpan<int> highOffsets, ReadOnlySpan<byte> next,
            PanelScales panelScales, ReadOnlySpan<float> widenedScales)
        {
            int groups = cols / 32;
            ref byte codes = ref MemoryMarshal.GetReference(panel);

            // The scales: f16 after each pair's codes, else f32 after all of them, or widened into the f32 layout apart.
            bool halves = panelScales == PanelScales.F16 && widenedScales.IsEmpty;
            ref byte scales = ref !widenedScales.IsEmpty ? ref Unsafe.As<float, byte>(ref MemoryMarshal.GetReference(widenedScales))
                : ref halves ? ref Unsafe.Add(ref codes, NibblePanels.HalfScaleOffset(0, 0)) : ref Unsafe.Add(ref codes, NibblePanels.CodeBytes(cols));
            int scaleStride = halves ? NibblePanels.ScaleBytes(PanelScales.F16) : NibblePanels.ScaleBytes(PanelScales.F32);
            int pairScaleStride = halves ? NibblePanels.HalfScaleOffset(2, 0) - NibblePanels.HalfScaleOffset(1, 0) : scaleStride;

            // Q4_0 has no mins (CodeOffsets never reads them): a null reference, not one at the panel's end, which the cursor
            // would move on past it.
            ref float mins = ref groupsPerBlock == 1 ? ref Unsafe.NullRef<float>() : ref Unsafe.As<byte, float>(ref Unsafe.Add(ref scales, groups * Rows * 4));
            return new Operands(ref codes, ref scales, scaleStride, ref mins, groups, 8,
                groupsPerBlock, ref MemoryMarshal.GetReference(activations), cols, tokens, ref MemoryMarshal.GetReference(blockScales),
                ref MemoryMarshal.GetReference(scaledSums), ref MemoryMarshal.GetReference(offsets), ref MemoryMarshal.GetReference(highOffsets),
                ref MemoryMarshal.GetReference(next), (next.Length + 63) / 64, pairScaleStride, NibblePanels.PairBytes(panelScales));
        }

        public Operands(ref byte codes, ref byte scales, int scaleStride, ref float mins, int groups, int quadsPerGroup, int groupsPerBlock, ref sbyte activations,
            int cols, int tokens, ref float blockScales, ref float scaledSums, ref int offsets, ref int highOffsets, ref byte next, int nextLines,
            int pairScaleStride = 0, int pairStride = 0)
        {
            PairScaleStride = pairScaleStride == 0 ? scaleStride : pairScaleStride;
            PairStride = pairStride == 0 ? quadsPerGroup * 4 * Rows : pairStride;
            Next = ref next;
            NextLines = nextLines;
            Codes = ref codes;
            Scales = ref scales;
            ScaleStride = scaleStride;
            Mins = ref mins;
            (Groups, QuadsPerGroup, GroupsPerBlock, Cols, Tokens) = (groups, quadsPerGroup, groupsPerBlock, cols, tokens);
            Activations = ref activations;
            BlockScales = ref blockScales;
            ScaledSums = ref scaledSums;
            Offsets = ref offsets;
            HighOffsets = ref highOffsets;
        }
    }

    /// <summary>
    /// The reference: row by row, each sub-block's integer sum (from the offset, for <see cref="CodeOffsets"/>), then
    /// <c>fma(sum, scale × dx, y)</c> and for <see cref="ScaledMins"/> <c>fma(-min, dx × Σa, y)</c>, as every lane of the vector
    /// paths does.
    /// </summary>
    private static void Scalar<TZero>(scoped in Operands p, int t, Span<float> tile)
        where TZero : struct
    {
        ref sbyte a = ref Unsafe.Add(ref p.Activations, t * p.Cols);
        ref float scales = ref Unsafe.As<byte, float>(ref p.Scales);
        for (int r = 0; r < Rows; r++)
        {
            float sum = 0;
            for (int g = 0; g < p.Groups; g++)
            {
                int dot = typeof(TZero) == typeof(CodeOffsets) ? Unsafe.Add(ref p.Offsets, (g * p.Tokens) + t) : 0;
                for (int q = g * p.QuadsPerGroup; q < (g + 1) * p.QuadsPerGroup; q++)
                {
                    for (int i = 0; i < 4; i++)
                    {
                        dot += Unsafe.Add(ref p.Codes, (((q * Rows) + r) * 4) + i) * Unsafe.Add(ref a, (4 * q) + i);
                    }
                }

                float dx = Unsafe.Add(ref p.BlockScales, ((g / p.GroupsPerBlock) * p.Tokens) + t);
                sum = MathF.FusedMultiplyAdd(dot, Unsafe.Add(ref scales, (g * Rows) + r) * dx, sum);
                if (typeof(TZero) == typeof(ScaledMins))
                {
                    sum = MathF.FusedMultiplyAdd(-Unsafe.Add(ref p.Mins, (g * Rows) + r), Unsafe.Add(ref p.ScaledSums, (g * p.Tokens) + t), sum);
                }
            }

            tile[r] = sum;
        }
    }

    /// <summary>
    /// Where a kernel is, sub-block by sub-block: the panel rows' scales and mins of the sub-block, and the block-major tables,
    /// where its tokens' offsets (or scaled sums) and block scales are consecutive, so the kernels take token i's at a constant
    /// distance instead of computing t × groups + g for each.
    /// </summary>
    private ref struct SubBlockCursor
    {
        public ref byte Scales;
        public ref float Mins;
        public ref int Offsets;
        public ref int HighOffsets;
        public ref float ScaledSums;
        public ref float BlockScales;
        private readonly nint _stride;
        private readonly nint _scaleStride;
        private readonly nint _pairScaleStride;
        private readonly int _groupsPerBlock;
        private bool _odd;
        private int _inBlock;
        private int _groupsLeft;

        public SubBlockCursor(scoped in Operands p, int t)
        {
            Scales = ref p.Scales;
            Mins = ref p.Mins;
            Offsets = ref Unsafe.Add(ref p.Offsets, t);
            HighOffsets = ref Unsafe.Add(ref p.HighOffsets, t);
            ScaledSums = ref Unsafe.Add(ref p.ScaledSums, t);
            BlockScales = ref Unsafe.Add(ref p.BlockScales, t);
            _stride = p.Tokens;
            _scaleStride = p.ScaleStride;
            _pairScaleStride = p.PairScaleStride;
            _groupsPerBlock = p.GroupsPerBlock;
            _groupsLeft = p.Groups;
        }

        /// <summary>
        /// On to the next sub-block (and block, after its last sub-block). Past the last sub-block nothing moves: a reference past
        /// a table's end would be one the garbage collector takes for the next object's.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Advance()
        {
            if (--_groupsLeft == 0)
            {
                return;
            }

            Scales = ref Unsafe.Add(ref Scales, _odd ? _pairScaleStride : _scaleStride);
            _odd = !_odd;
            Mins = ref Unsafe.Add(ref Mins, Rows);
            Offsets = ref Unsafe.Add(ref Offsets, _stride);
            HighOffsets = ref Unsafe.Add(ref HighOffsets, _stride);
            ScaledSums = ref Unsafe.Add(ref ScaledSums, _stride);
            if (++_inBlock == _groupsPerBlock)
            {
                _inBlock = 0;
                BlockScales = ref Unsafe.Add(ref BlockScales, _stride);
            }
        }

        /// <summary>The sub-block's scales (rows 0-7, 8-15) and, for <see cref="ScaledMins"/>, its mins (else zero).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly void RowTerms<TCodes, TZero>(out Vector256<float> s0, out Vector256<float> s1, out Vector256<float> m0, out Vector256<float> m1)
            where TCodes : ICodes
            where TZero : struct
        {
            TCodes.Scales(ref Scales, out s0, out s1);
            m0 = typeof(TZero) == typeof(ScaledMins) ? Vector256.LoadUnsafe(ref Mins) : default;
            m1 = typeof(TZero) == typeof(ScaledMins) ? Vector256.LoadUnsafe(ref Mins, 8) : default;
        }

        /// <summary>
        /// Token <paramref name="i"/>'s integer sums of the sub-block, accumulated from zero by <typeparamref name="TDot"/>, as
        /// 32-bit lanes and with the -offset × Σa they start from (<see cref="CodeOffsets"/>; else nothing added).
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public readonly Vector256<int> Sums<TDot, TCodes, TZero>(int i, Vector256<int> accumulated)
            where TDot : IByteDot
            where TCodes : ICodes
            where TZero : struct =>
            typeof(TZero) != typeof(CodeOffsets) ? TDot.Widened(accumulated)
                : TDot.Widened(accumulated) + Vector256.Create(TCodes.TimesSixteen ? Unsafe.Add(ref HighOffsets, i) : Unsafe.Add(ref Offsets, i));
    }

    /// <summary>Four activation codes of one token, at <paramref name="offset"/>, in every 32-bit lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<sbyte> Broadcast(ref sbyte x, nint offset) =>
        Vector256.Create(Unsafe.ReadUnaligned<int>(ref Unsafe.As<sbyte, byte>(ref Unsafe.Add(ref x, offset)))).AsSByte();

    /// <summary>
    /// Token <paramref name="i"/>'s sub-block sums (rows 0-7 and 8-15, as <typeparamref name="TDot"/> accumulated them from
    /// zero) into its 16 f32 sums in <paramref name="tile"/>: y = fma(Σ, scale × dx, y), less min × dx × Σa for <see cref="ScaledMins"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Accumulate<TDot, TCodes, TZero>(ref float tile, int i, scoped ref SubBlockCursor at, Vector256<int> sum0, Vector256<int> sum1,
        Vector256<float> s0, Vector256<float> s1, Vector256<float> m0, Vector256<float> m1)
        where TDot : IByteDot
        where TCodes : ICodes
        where TZero : struct
    {
        ref float y = ref Unsafe.Add(ref tile, i * Rows);
        var d = Vector256.Create(Unsafe.Add(ref at.BlockScales, i));
        Vector256<float> y0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(at.Sums<TDot, TCodes, TZero>(i, sum0)), s0 * d, Vector256.LoadUnsafe(ref y));
        Vector256<float> y1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(at.Sums<TDot, TCodes, TZero>(i, sum1)), s1 * d, Vector256.LoadUnsafe(ref y, 8));
        if (typeof(TZero) == typeof(ScaledMins))
        {
            var s = Vector256.Create(Unsafe.Add(ref at.ScaledSums, i));
            y0 = Fma.MultiplyAddNegated(m0, s, y0);
            y1 = Fma.MultiplyAddNegated(m1, s, y1);
        }

        y0.StoreUnsafe(ref y);
        y1.StoreUnsafe(ref y, 8);
    }

    /// <summary>
    /// <typeparamref name="TTokens"/>' tokens from t on against the 16 rows into <paramref name="tile"/> (token after token, 16
    /// results each), sub-block by sub-block; the f32 sums stay in <paramref name="tile"/>, updated once a sub-block. A packed
    /// panel's sub-blocks follow one another; a repacked Q4_0 panel's pair of blocks shares its bytes, the even block in the
    /// low nibbles and the odd one in the high nibbles (<typeparamref name="TCodes"/>) against the next 32 activation codes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tokens<TTokens, TDot, TCodes, TZero>(scoped in Operands p, int t, Span<float> tile, PrefetchShare prefetch)
        where TTokens : ITokenGroup
        where TDot : IByteDot
        where TCodes : ICodes
        where TZero : struct
    {
        ref byte w = ref p.Codes;
        ref sbyte x = ref Unsafe.Add(ref p.Activations, t * p.Cols);
        nint cols = p.Cols;
        int groups = p.Groups, quads = p.QuadsPerGroup;
        var at = new SubBlockCursor(p, t);
        ref float o = ref MemoryMarshal.GetReference(tile);
        tile[..(TTokens.Count * Rows)].Clear();
        for (int g = 0; g < groups; g++)
        {
            prefetch.AtGroup(p, g);
            if (typeof(TCodes) == typeof(Packed))
            {
                TTokens.Group<TDot, Packed, TZero>(ref w, ref x, cols, quads, ref at, ref o);
                w = ref Unsafe.Add(ref w, quads * 4 * Rows);
                x = ref Unsafe.Add(ref x, quads * 4);
            }
            else if (g % 2 == 0 && TCodes.HalfScales)
            {
                TTokens.Group<TDot, Halves<LowNibbles>, TZero>(ref w, ref x, cols, quads, ref at, ref o);
            }
            else if (g % 2 == 0)
            {
                TTokens.Group<TDot, LowNibbles, TZero>(ref w, ref x, cols, quads, ref at, ref o);
            }
            else
            {
                TTokens.Group<TDot, TCodes, TZero>(ref w, ref Unsafe.Add(ref x, 32), cols, quads, ref at, ref o);
                if (g + 1 < groups)
                {
                    // The next pair's codes (not past the last: the panel may end there).
                    w = ref Unsafe.Add(ref w, p.PairStride);
                }

                x = ref Unsafe.Add(ref x, 64);
            }

            at.Advance();
        }
    }

    /// <summary>One sub-block's work for a number of tokens: its quads into integer sums, then those into the tile.</summary>
    private interface ITokenGroup
    {
        static abstract int Count { get; }

        static abstract void Group<TDot, TCodes, TZero>(ref byte w, ref sbyte x, nint cols, int quads, scoped ref SubBlockCursor at, ref float o)
            where TDot : IByteDot
            where TCodes : ICodes
            where TZero : struct;
    }

    /// <summary>
    /// Eight tokens on the 512-bit path, whose 32 vector registers hold the sixteen integer accumulators. Per column quad: two
    /// panel loads, eight activation broadcasts and sixteen vpdpbusd. Four tokens' eight accumulators waited on vpdpbusd's
    /// latency (5 cycles) at every quad rather than its throughput (two a cycle).
    /// </summary>
    private readonly struct EightTokens : ITokenGroup
    {
        public static int Count => 8;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Group<TDot, TCodes, TZero>(ref byte w, ref sbyte x, nint cols, int quads, scoped ref SubBlockCursor at, ref float o)
            where TDot : IByteDot
            where TCodes : ICodes
            where TZero : struct =>
            EightTokenGroup<TDot, TCodes, TZero>(ref w, ref x, cols, quads, ref at, ref o);
    }

    /// <summary>Four tokens, with eight accumulators, which the 256-bit path's sixteen vector registers hold (AVX2 CPUs), and the last four of eight.</summary>
    private readonly struct FourTokens : ITokenGroup
    {
        public static int Count => 4;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Group<TDot, TCodes, TZero>(ref byte w, ref sbyte x, nint cols, int quads, scoped ref SubBlockCursor at, ref float o)
            where TDot : IByteDot
            where TCodes : ICodes
            where TZero : struct =>
            FourTokenGroup<TDot, TCodes, TZero>(ref w, ref x, cols, quads, ref at, ref o);
    }

    /// <summary>One sub-block for <see cref="EightTokens"/>: its quads into sixteen integer sums, then those into the tile.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void EightTokenGroup<TDot, TCodes, TZero>(ref byte w, ref sbyte x, nint cols, int quads, scoped ref SubBlockCursor at, ref float o)
        where TDot : IByteDot
        where TCodes : ICodes
        where TZero : struct
    {
        Vector256<int> a00 = default, a10 = default, a20 = default, a30 = default, a40 = default, a50 = default, a60 = default, a70 = default;
        Vector256<int> a01 = default, a11 = default, a21 = default, a31 = default, a41 = default, a51 = default, a61 = default, a71 = default;
        ref byte wq = ref w;
        ref sbyte xq = ref x;
        for (int q = 0; q < quads; q += 2)
        {
            // Two column quads a pass (every sub-block has an even number): the loop's own instructions and the token
            // offsets' address arithmetic once for both.
            EightTokenQuad<TDot, TCodes>(ref wq, ref xq, cols, ref a00, ref a01, ref a10, ref a11, ref a20, ref a21, ref a30, ref a31,
                ref a40, ref a41, ref a50, ref a51, ref a60, ref a61, ref a70, ref a71);
            EightTokenQuad<TDot, TCodes>(ref Unsafe.Add(ref wq, 4 * Rows), ref Unsafe.Add(ref xq, 4), cols, ref a00, ref a01, ref a10, ref a11, ref a20, ref a21,
                ref a30, ref a31, ref a40, ref a41, ref a50, ref a51, ref a60, ref a61, ref a70, ref a71);
            wq = ref Unsafe.Add(ref wq, 8 * Rows);
            xq = ref Unsafe.Add(ref xq, 8);
        }

        at.RowTerms<TCodes, TZero>(out Vector256<float> s0, out Vector256<float> s1, out Vector256<float> m0, out Vector256<float> m1);
        Accumulate<TDot, TCodes, TZero>(ref o, 0, ref at, a00, a01, s0, s1, m0, m1);
        Accumulate<TDot, TCodes, TZero>(ref o, 1, ref at, a10, a11, s0, s1, m0, m1);
        Accumulate<TDot, TCodes, TZero>(ref o, 2, ref at, a20, a21, s0, s1, m0, m1);
        Accumulate<TDot, TCodes, TZero>(ref o, 3, ref at, a30, a31, s0, s1, m0, m1);
        Accumulate<TDot, TCodes, TZero>(ref o, 4, ref at, a40, a41, s0, s1, m0, m1);
        Accumulate<TDot, TCodes, TZero>(ref o, 5, ref at, a50, a51, s0, s1, m0, m1);
        Accumulate<TDot, TCodes, TZero>(ref o, 6, ref at, a60, a61, s0, s1, m0, m1);
        Accumulate<TDot, TCodes, TZero>(ref o, 7, ref at, a70, a71, s0, s1, m0, m1);
    }

    /// <summary>One column quad of the 16 rows against eight tokens' four codes each, into their accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void EightTokenQuad<TDot, TCodes>(ref byte w, ref sbyte x, nint cols, ref Vector256<int> a00, ref Vector256<int> a01,
        ref Vector256<int> a10, ref Vector256<int> a11, ref Vector256<int> a20, ref Vector256<int> a21, ref Vector256<int> a30, ref Vector256<int> a31,
        ref Vector256<int> a40, ref Vector256<int> a41, ref Vector256<int> a50, ref Vector256<int> a51, ref Vector256<int> a60, ref Vector256<int> a61,
        ref Vector256<int> a70, ref Vector256<int> a71)
        where TDot : IByteDot
        where TCodes : ICodes
    {
        Vector256<byte> w0 = TCodes.Load(ref w, 0), w1 = TCodes.Load(ref w, 32);
        FourTokenQuad<TDot>(w0, w1, ref x, cols, ref a00, ref a01, ref a10, ref a11, ref a20, ref a21, ref a30, ref a31);
        FourTokenQuad<TDot>(w0, w1, ref Unsafe.Add(ref x, 4 * cols), cols, ref a40, ref a41, ref a50, ref a51, ref a60, ref a61, ref a70, ref a71);
    }

    /// <summary>One column quad of the 16 rows (<paramref name="w0"/>, <paramref name="w1"/>) against four tokens' four codes each.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void FourTokenQuad<TDot>(Vector256<byte> w0, Vector256<byte> w1, ref sbyte x, nint cols, ref Vector256<int> a00, ref Vector256<int> a01,
        ref Vector256<int> a10, ref Vector256<int> a11, ref Vector256<int> a20, ref Vector256<int> a21, ref Vector256<int> a30, ref Vector256<int> a31)
        where TDot : IByteDot
    {
        Vector256<sbyte> x0 = Broadcast(ref x, 0);
        a00 = TDot.Dot(a00, w0, x0);
        a01 = TDot.Dot(a01, w1, x0);
        x0 = Broadcast(ref x, cols);
        a10 = TDot.Dot(a10, w0, x0);
        a11 = TDot.Dot(a11, w1, x0);
        x0 = Broadcast(ref x, 2 * cols);
        a20 = TDot.Dot(a20, w0, x0);
        a21 = TDot.Dot(a21, w1, x0);
        x0 = Broadcast(ref x, 3 * cols);
        a30 = TDot.Dot(a30, w0, x0);
        a31 = TDot.Dot(a31, w1, x0);
    }

    /// <summary>One sub-block for <see cref="FourTokens"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void FourTokenGroup<TDot, TCodes, TZero>(ref byte w, ref sbyte x, nint cols, int quads, scoped ref SubBlockCursor at, ref float o)
        where TDot : IByteDot
        where TCodes : ICodes
        where TZero : struct
    {
        Vector256<int> a00 = default, a10 = default, a20 = default, a30 = default;
        Vector256<int> a01 = default, a11 = default, a21 = default, a31 = default;
        ref byte wq = ref w;
        ref sbyte xq = ref x;
        for (int q = 0; q < quads; q++)
        {
            FourTokenQuad<TDot>(TCodes.Load(ref wq, 0), TCodes.Load(ref wq, 32), ref xq, cols, ref a00, ref a01, ref a10, ref a11,
                ref a20, ref a21, ref a30, ref a31);
            wq = ref Unsafe.Add(ref wq, 4 * Rows);
            xq = ref Unsafe.Add(ref xq, 4);
        }

        at.RowTerms<TCodes, TZero>(out Vector256<float> s0, out Vector256<float> s1, out Vector256<float> m0, out Vector256<float> m1);
        Accumulate<TDot, TCodes, TZero>(ref o, 0, ref at, a00, a01, s0, s1, m0, m1);
        Accumulate<TDot, TCodes, TZero>(ref o, 1, ref at, a10, a11, s0, s1, m0, m1);
        Accumulate<TDot, TCodes, TZero>(ref o, 2, ref at, a20, a21, s0, s1, m0, m1);
        Accumulate<TDot, TCodes, TZero>(ref o, 3, ref at, a30, a31, s0, s1, m0, m1);
    }

    /// <summary>
    /// <see cref="FourTokens"/>' work for one token (the tokens past the last four), prefetching its share of the next panel
    /// when it is one of the first two passes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void OneToken<TDot, TCodes, TZero>(scoped in Operands p, int t, Span<float> tile, PrefetchShare prefetch)
        where TDot : IByteDot
        where TCodes : ICodes
        where TZero : struct
    {
        ref byte w = ref p.Codes;
        ref sbyte x = ref Unsafe.Add(ref p.Activations, t * p.Cols);
        int groups = p.Groups, quads = p.QuadsPerGroup;
        nint at4 = 0;
        var at = new SubBlockCursor(p, t);
        ref float o = ref MemoryMarshal.GetReference(tile);
        tile[..Rows].Clear();
        for (int g = 0; g < groups; g++)
        {
            prefetch.AtGroup(p, g);

            // Offsets, not moving references: the last token's would end past the codes.
            if (typeof(TCodes) == typeof(Packed))
            {
                OneTokenGroup<TDot, Packed, TZero>(ref w, ref x, at4, quads, ref at, ref o);
                w = ref Unsafe.Add(ref w, quads * 4 * Rows);
                at4 += quads * 4;
            }
            else if (g % 2 == 0 && TCodes.HalfScales)
            {
                OneTokenGroup<TDot, Halves<LowNibbles>, TZero>(ref w, ref x, at4, quads, ref at, ref o);
            }
            else if (g % 2 == 0)
            {
                OneTokenGroup<TDot, LowNibbles, TZero>(ref w, ref x, at4, quads, ref at, ref o);
            }
            else
            {
                OneTokenGroup<TDot, TCodes, TZero>(ref w, ref x, at4 + 32, quads, ref at, ref o);
                if (g + 1 < groups)
                {
                    w = ref Unsafe.Add(ref w, p.PairStride);
                }

                at4 += 64;
            }

            at.Advance();
        }
    }

    /// <summary>One sub-block of <see cref="OneToken{TDot, TCodes, TZero}"/>, its activations at <paramref name="at4"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void OneTokenGroup<TDot, TCodes, TZero>(ref byte w, ref sbyte x, nint at4, int quads, scoped ref SubBlockCursor at, ref float o)
        where TDot : IByteDot
        where TCodes : ICodes
        where TZero : struct
    {
        // Two quads a pass into two pairs of sums: one pair waited on vpdpbusd's latency at every quad.
        Vector256<int> a0 = default, a1 = default, b0 = default, b1 = default;
        ref byte wq = ref w;
        for (int q = 0; q < quads; q += 2)
        {
            Vector256<sbyte> x0 = Broadcast(ref x, at4), x1 = Broadcast(ref x, at4 + 4);
            a0 = TDot.Dot(a0, TCodes.Load(ref wq, 0), x0);
            a1 = TDot.Dot(a1, TCodes.Load(ref wq, 32), x0);
            b0 = TDot.Dot(b0, TCodes.Load(ref wq, 4 * Rows), x1);
            b1 = TDot.Dot(b1, TCodes.Load(ref wq, (4 * Rows) + 32), x1);
            wq = ref Unsafe.Add(ref wq, 8 * Rows);
            at4 += 8;
        }

        at.RowTerms<TCodes, TZero>(out Vector256<float> s0, out Vector256<float> s1, out Vector256<float> m0, out Vector256<float> m1);
        Accumulate<TDot, TCodes, TZero>(ref o, 0, ref at, TDot.Add(a0, b0), TDot.Add(a1, b1), s0, s1, m0, m1);
    }
}
