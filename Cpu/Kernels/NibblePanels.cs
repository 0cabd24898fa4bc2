using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using QwenSharp.Formats;
using QwenSharp.Numerics;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Q4_0 and Q4_K matrices rearranged once at load into the layout <see cref="QuantPanel"/>'s integer kernels read, so that no
/// step unpacks panels again: packing took a fifth of a 16-sequence decode step, every step, for every panel. Both types keep
/// two sub-blocks of 32 codes in the nibbles of the same bytes (Q4_0 two blocks; Q4_K a super-block's sub-blocks 2c and 2c + 1,
/// as it stores them), and the scales (Q4_K's mins too) are widened to f32 once, not at every sub-block: 20 bytes per 32
/// values against Q4_0's 18, 24 against Q4_K's 18.
/// </summary>
/// <remarks>
/// Per panel of <see cref="QuantPanel.Rows"/> rows: first the codes, per pair of sub-blocks (2j, 2j + 1) eight column quads of
/// the sixteen rows, four bytes each, byte i of quad q of row r holding sub-block 2j's code of column 4q + i in its low nibble
/// and sub-block 2j + 1's in its high nibble (<c>[pair][q][r][i]</c>, 512 bytes a pair); then each sub-block's sixteen scales
/// as f32 (<c>[sub-block][r]</c>, 64 bytes each), an odd sub-block's divided by 16; for Q4_K then its mins (dmin × min) the
/// same way, as they are. A 32-bit lane of rows is then one vpdpbusd operand once its nibbles are masked: the low ones for
/// sub-block 2j; the high ones, left in place (the codes × 16), for sub-block 2j + 1, whose scale / 16 matches (exact: every
/// such scale / 16 is an f32 normal). ggml repacks its Q4_0 and Q4_K the same way for its AVX-512 and ARM kernels
/// (<c>block_q4_0x8</c>, <c>block_q4_Kx8</c>), with f16 scales its F16C instructions widen (.NET 10 has no vcvtph2ps: five
/// instructions for eight, at every sub-block of every pass, were 3% of the kernel's work on the ports vpdpbusd runs on).
/// A Q4_0 matrix may keep its scales as the file's f16 instead (<see cref="PanelScales.F16"/>, an odd sub-block's as they
/// are), 18 bytes per 32 values, where one token reads the panels from memory; then each pair's codes are followed by its
/// two sub-blocks' sixteen scales (<c>[pair]{[q][r][i], [2][r]}</c>, 576 bytes a pair), so that the panel is one stream of
/// bytes: on an AMD Zen 3 one core read it from memory at 82-87% of a plain sum's rate, against 76-81% with the scales
/// after all the codes (a second stream per panel).
/// </remarks>
internal static class NibblePanels
{
    private const int Q4_0Bytes = 18, Q4KBytes = 144;

    /// <summary>Whether a <paramref name="rows"/> × <paramref name="cols"/> matrix of <paramref name="type"/> has this layout: Q4_0 or Q4_K, whole panels of rows and whole pairs of sub-blocks.</summary>
    public static bool Fits(DType type, long rows, long cols) =>
        type is DType.Q4_0 or DType.Q4_K && rows > 0 && rows % QuantPanel.Rows == 0 && cols > 0 && cols % (type == DType.Q4_K ? 256 : 64) == 0;

    /// <summary>Bytes of one repacked panel of rows of <paramref name="cols"/> values: 20 a row per 32 values (Q4_K: 24; Q4_0 with f16 scales: 18).</summary>
    public static int PanelBytes(DType type, int cols, PanelScales scales = PanelScales.F32) =>
        QuantPanel.Rows * (cols / 32) * (type == DType.Q4_K ? 24 : scales == PanelScales.F16 ? 18 : 20);

    /// <summary>Bytes of one sub-block's sixteen scales: 64 as f32, 32 as f16.</summary>
    public static int ScaleBytes(PanelScales scales) => scales == PanelScales.F16 ? 2 * QuantPanel.Rows : 4 * QuantPanel.Rows;

    /// <summary>Bytes from one pair of sub-blocks' codes to the next's: 512, or 576 where the pair's f16 scales follow its codes.</summary>
    public static int PairBytes(PanelScales scales) => scales == PanelScales.F16 ? 576 : 512;

    /// <summary>Where row <paramref name="r"/>'s f16 scale of sub-block <paramref name="g"/> is in a panel with <see cref="PanelScales.F16"/>.</summary>
    public static int HalfScaleOffset(int g, int r) => (576 * (g / 2)) + 512 + (32 * (g % 2)) + (2 * r);

    /// <summary>
    /// Whether every block scale of the Q4_0 <paramref name="rows"/> is a finite f16, so that the panels may keep them as f16
    /// (<see cref="PanelScales.F16"/>): the kernels' widening maps an infinity or a NaN to a finite number.
    /// </summary>
    public static bool HasFiniteScales(ReadOnlySpan<byte> rows)
    {
        for (int b = 0; b + Q4_0Bytes <= rows.Length; b += Q4_0Bytes)
        {
            if ((BinaryPrimitives.ReadUInt16LittleEndian(rows[b..]) & 0x7C00) == 0x7C00)
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// A repacked Q4_0 panel's f16 scales (<see cref="PanelScales.F16"/>) as the f32 layout has them, into
    /// <paramref name="scales"/> (<c>[sub-block][r]</c>, an odd sub-block's divided by 16: exact), for kernels that read them
    /// many times: the vector kernels (AVX2; the scalar path reads them with <see cref="DotRow"/>).
    /// </summary>
    public static void WidenScales(ReadOnlySpan<byte> panel, int cols, Span<float> scales)
    {
        int count = cols / 32 * QuantPanel.Rows;
        if (!Avx2.IsSupported || scales.Length < count || panel.Length < PanelBytes(DType.Q4_0, cols, PanelScales.F16))
        {
            throw new ArgumentException($"{count} scales of a Q4_0 panel of {cols} values ({panel.Length} bytes) into {scales.Length}{(Avx2.IsSupported ? "" : ", without AVX2")}");
        }

        // Eight at a time (a prefill widens every panel's, per product): an even sub-block's × 2^112, an odd one's × 2^108.
        ref byte from = ref MemoryMarshal.GetReference(panel);
        ref float to = ref MemoryMarshal.GetReference(scales);
        var even = Vector256.Create(HalfWidening);
        var odd = Vector256.Create(HalfWidening / 16);
        for (int g = 0; g < cols / 32; g++)
        {
            Vector256<float> times = g % 2 == 0 ? even : odd;
            (WidenHalves(ref Unsafe.Add(ref from, HalfScaleOffset(g, 0))) * times).StoreUnsafe(ref to, (nuint)(g * QuantPanel.Rows));
            (WidenHalves(ref Unsafe.Add(ref from, HalfScaleOffset(g, 8))) * times).StoreUnsafe(ref to, (nuint)((g * QuantPanel.Rows) + 8));
        }
    }

    /// <summary>2^112: <see cref="WidenHalves"/>' values times this are the f16 values.</summary>
    public static float HalfWidening => 5.192296858534828e33f;

    /// <summary>
    /// Eight finite f16 bit patterns at <paramref name="halves"/> as f32 of their values × 2^-112, exactly: sign-extended to 32
    /// bits and shifted 13 up, the exponent and mantissa land in f32's fields (an f16 subnormal in an f32 subnormal) and the
    /// sign's copies above bit 28 are masked off. Times <see cref="HalfWidening"/> (or 2^108, for a sixteenth) the product is
    /// exact. Four instructions, where .NET 10 has no vcvtph2ps.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> WidenHalves(ref byte halves) =>
        ((Avx2.ConvertToVector256Int32(Vector128.LoadUnsafe(ref halves).AsInt16()) << 13) & Vector256.Create(unchecked((int)0x8FFFE000))).AsSingle();

    /// <summary>Bytes from a panel's start to its scales (f32; f16 scales follow each pair's codes: <see cref="HalfScaleOffset"/>).</summary>
    public static int CodeBytes(int cols) => QuantPanel.Rows * cols / 2;

    /// <summary>
    /// One panel: <see cref="QuantPanel.Rows"/> consecutive rows of <paramref name="type"/> of <paramref name="cols"/> values
    /// (<see cref="Fits"/>) into <paramref name="panel"/> (<see cref="PanelBytes"/>), Q4_0's scales as <paramref name="scales"/> says
    /// (f16 only where every one is finite: <see cref="HasFiniteScales"/>).
    /// </summary>
    public static void Repack(DType type, ReadOnlySpan<byte> rows, int cols, Span<byte> panel, PanelScales scales = PanelScales.F32)
    {
        int rowBytes = (int)DTypes.ByteLength(type, cols);
        if (!Fits(type, QuantPanel.Rows, cols) || rows.Length != QuantPanel.Rows * rowBytes || panel.Length != PanelBytes(type, cols, scales)
            || (scales == PanelScales.F16 && (type != DType.Q4_0 || !HasFiniteScales(rows))))
        {
            throw new ArgumentException($"a {type} panel of {QuantPanel.Rows} rows of {cols} values, {scales} scales: {rows.Length} bytes in, {panel.Length} out");
        }

        if (scales == PanelScales.F16)
        {
            RepackCodes(type, rows, rowBytes, cols, panel, PairBytes(scales));
            for (int r = 0; r < QuantPanel.Rows; r++)
            {
                for (int g = 0; g < cols / 32; g++)
                {
                    rows.Slice((r * rowBytes) + (g * Q4_0Bytes), 2).CopyTo(panel[HalfScaleOffset(g, r)..]);
                }
            }

            return;
        }

        int groups = cols / 32;
        RepackCodes(type, rows, rowBytes, cols, panel, PairBytes(PanelScales.F32));
        Span<float> scaleValues = MemoryMarshal.Cast<byte, float>(panel.Slice(CodeBytes(cols), groups * QuantPanel.Rows * 4));
        Span<float> mins = MemoryMarshal.Cast<byte, float>(panel[(CodeBytes(cols) + (groups * QuantPanel.Rows * 4))..]);
        for (int r = 0; r < QuantPanel.Rows; r++)
        {
            ReadOnlySpan<byte> row = rows.Slice(r * rowBytes, rowBytes);
            for (int g = 0; g < groups; g++)
            {
                float scale, min = 0;
                if (type == DType.Q4_K)
                {
                    // d × scale and dmin × min in f32, as the panels packed per step have them.
                    ReadOnlySpan<byte> block = row.Slice(g / 8 * Q4KBytes, Q4KBytes);
                    (ulong packedScales, ulong packedMins) = KQuantIntegerKernel.UnpackScalesAndMins(ref MemoryMarshal.GetReference(block[4..]));
                    scale = (byte)(packedScales >> (8 * (g % 8))) * HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block));
                    min = (byte)(packedMins >> (8 * (g % 8))) * HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block[2..]));
                }
                else
                {
                    scale = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(row[(g * Q4_0Bytes)..]));
                }

                scaleValues[(g * QuantPanel.Rows) + r] = g % 2 == 0 ? scale : scale / 16;
                if (type == DType.Q4_K)
                {
                    mins[(g * QuantPanel.Rows) + r] = min;
                }
            }
        }
    }

    /// <summary>The panel's codes: per pair of sub-blocks, <paramref name="pairBytes"/> apart, eight column quads of the sixteen rows (see the class).</summary>
    private static void RepackCodes(DType type, ReadOnlySpan<byte> rows, int rowBytes, int cols, Span<byte> panel, int pairBytes)
    {
        int pairWords = pairBytes / 4;
        Span<uint> codes = MemoryMarshal.Cast<byte, uint>(panel);
        for (int r = 0; r < QuantPanel.Rows; r++)
        {
            ReadOnlySpan<byte> row = rows.Slice(r * rowBytes, rowBytes);
            for (int j = 0; j < cols / 64; j++)
            {
                // The pair's two sub-blocks' 16 code bytes each (Q4_0), or the 32 bytes that hold both (Q4_K's chunk j % 4).
                for (int q = 0; q < 8; q++)
                {
                    codes[(j * pairWords) + (q * QuantPanel.Rows) + r] = type == DType.Q4_K
                        ? BinaryPrimitives.ReadUInt32LittleEndian(row[(((j / 4) * Q4KBytes) + 16 + (32 * (j % 4)) + (4 * q))..])
                        : Q4_0Quad(row.Slice((2 * j * Q4_0Bytes) + 2, 16), q) | (Q4_0Quad(row.Slice((((2 * j) + 1) * Q4_0Bytes) + 2, 16), q) << 4);
                }
            }
        }
    }

    /// <summary>The four codes (0..15, one a byte) of columns 4q..4q + 3 of a Q4_0 block's 16 code bytes.</summary>
    private static uint Q4_0Quad(ReadOnlySpan<byte> codes, int q)
    {
        uint bytes = BinaryPrimitives.ReadUInt32LittleEndian(codes[(4 * (q % 4))..]);
        return (q < 4 ? bytes : bytes >> 4) & 0x0F0F0F0F;
    }

    /// <summary>
    /// The reference for the kernels: row <paramref name="r"/> of a repacked panel dotted with one token's activation codes
    /// (Q8_0 per 32 for Q4_0, Q8_K per 256 for Q4_K, their block <paramref name="scales"/>), each sub-block's integer sum times
    /// (its scale × the token's), less Q4_K's min × the token's scale × Σ codes, summed in f32 with fused multiply-adds in
    /// sub-block order, as the vector kernels' lanes do. A Q4_0 panel's scales are read as <paramref name="panelScales"/> says.
    /// </summary>
    public static float DotRow(DType type, ReadOnlySpan<byte> panel, int cols, int r, ReadOnlySpan<sbyte> codes, ReadOnlySpan<float> scales,
        PanelScales panelScales = PanelScales.F32)
    {
        int groups = cols / 32, perScale = type == DType.Q4_K ? 8 : 1;
        bool halves = panelScales == PanelScales.F16;
        int pairBytes = PairBytes(panelScales);
        ReadOnlySpan<float> rowScales = halves ? default : MemoryMarshal.Cast<byte, float>(panel.Slice(CodeBytes(cols), groups * QuantPanel.Rows * 4));
        ReadOnlySpan<float> rowMins = halves ? default : MemoryMarshal.Cast<byte, float>(panel[(CodeBytes(cols) + (groups * QuantPanel.Rows * 4))..]);
        float sum = 0;
        for (int g = 0; g < groups; g++)
        {
            int dot = 0, codeSum = 0;
            for (int c = 0; c < 32; c++)
            {
                byte both = panel[((g / 2) * pairBytes) + (((((c / 4) * QuantPanel.Rows) + r) * 4) + (c % 4))];
                int code = (g % 2 == 0 ? both : both >> 4) & 0xF;
                dot += (type == DType.Q4_0 ? code - 8 : code) * codes[(g * 32) + c];
                codeSum += codes[(g * 32) + c];
            }

            float dx = scales[g / perScale];
            float d = halves
                ? HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(panel[HalfScaleOffset(g, r)..]))
                : rowScales[(g * QuantPanel.Rows) + r] * (g % 2 == 0 ? 1 : 16);
            sum = MathF.FusedMultiplyAdd(dot, d * dx, sum);
            if (type == DType.Q4_K)
            {
                sum = MathF.FusedMultiplyAdd(-rowMins[(g * QuantPanel.Rows) + r], dx * codeSum, sum);
            }
        }

        return sum;
    }
}
