using System.Buffers.Binary;
using System.Runtime.InteropServices;
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
/// </remarks>
internal static class NibblePanels
{
    private const int Q4_0Bytes = 18, Q4KBytes = 144;

    /// <summary>Whether a <paramref name="rows"/> × <paramref name="cols"/> matrix of <paramref name="type"/> has this layout: Q4_0 or Q4_K, whole panels of rows and whole pairs of sub-blocks.</summary>
    public static bool Fits(DType type, long rows, long cols) =>
        type is DType.Q4_0 or DType.Q4_K && rows > 0 && rows % QuantPanel.Rows == 0 && cols > 0 && cols % (type == DType.Q4_K ? 256 : 64) == 0;

    /// <summary>Bytes of one repacked panel of rows of <paramref name="cols"/> values: 20 a row per 32 values (Q4_K: 24).</summary>
    public static int PanelBytes(DType type, int cols) => QuantPanel.Rows * (cols / 32) * (type == DType.Q4_K ? 24 : 20);

    /// <summary>Bytes from a panel's start to its scales.</summary>
    public static int CodeBytes(int cols) => QuantPanel.Rows * cols / 2;

    /// <summary>
    /// One panel: <see cref="QuantPanel.Rows"/> consecutive rows of <paramref name="type"/> of <paramref name="cols"/> values
    /// (<see cref="Fits"/>) into <paramref name="panel"/> (<see cref="PanelBytes"/>).
    /// </summary>
    public static void Repack(DType type, ReadOnlySpan<byte> rows, int cols, Span<byte> panel)
    {
        int rowBytes = (int)DTypes.ByteLength(type, cols);
        if (!Fits(type, QuantPanel.Rows, cols) || rows.Length != QuantPanel.Rows * rowBytes || panel.Length != PanelBytes(type, cols))
        {
            throw new ArgumentException($"a {type} panel of {QuantPanel.Rows} rows of {cols} values: {rows.Length} bytes in, {panel.Length} out");
        }

        int groups = cols / 32;
        Span<uint> codes = MemoryMarshal.Cast<byte, uint>(panel[..CodeBytes(cols)]);
        Span<float> scales = MemoryMarshal.Cast<byte, float>(panel.Slice(CodeBytes(cols), groups * QuantPanel.Rows * 4));
        Span<float> mins = MemoryMarshal.Cast<byte, float>(panel[(CodeBytes(cols) + (groups * QuantPanel.Rows * 4))..]);
        for (int r = 0; r < QuantPanel.Rows; r++)
        {
            ReadOnlySpan<byte> row = rows.Slice(r * rowBytes, rowBytes);
            for (int j = 0; j < groups / 2; j++)
            {
                // The pair's two sub-blocks' 16 code bytes each (Q4_0), or the 32 bytes that hold both (Q4_K's chunk j % 4).
                for (int q = 0; q < 8; q++)
                {
                    codes[(((j * 8) + q) * QuantPanel.Rows) + r] = type == DType.Q4_K
                        ? BinaryPrimitives.ReadUInt32LittleEndian(row[(((j / 4) * Q4KBytes) + 16 + (32 * (j % 4)) + (4 * q))..])
                        : Q4_0Quad(row.Slice((2 * j * Q4_0Bytes) + 2, 16), q) | (Q4_0Quad(row.Slice((((2 * j) + 1) * Q4_0Bytes) + 2, 16), q) << 4);
                }
            }

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

                scales[(g * QuantPanel.Rows) + r] = g % 2 == 0 ? scale : scale / 16;
                if (type == DType.Q4_K)
                {
                    mins[(g * QuantPanel.Rows) + r] = min;
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
    /// sub-block order, as the vector kernels' lanes do.
    /// </summary>
    public static float DotRow(DType type, ReadOnlySpan<byte> panel, int cols, int r, ReadOnlySpan<sbyte> codes, ReadOnlySpan<float> scales)
    {
        int groups = cols / 32, perScale = type == DType.Q4_K ? 8 : 1;
        ReadOnlySpan<byte> packed = panel[..CodeBytes(cols)];
        ReadOnlySpan<float> rowScales = MemoryMarshal.Cast<byte, float>(panel.Slice(CodeBytes(cols), groups * QuantPanel.Rows * 4));
        ReadOnlySpan<float> rowMins = MemoryMarshal.Cast<byte, float>(panel[(CodeBytes(cols) + (groups * QuantPanel.Rows * 4))..]);
        float sum = 0;
        for (int g = 0; g < groups; g++)
        {
            int dot = 0, codeSum = 0;
            for (int c = 0; c < 32; c++)
            {
                int quad = ((g / 2) * 8) + (c / 4);
                byte both = packed[(((quad * QuantPanel.Rows) + r) * 4) + (c % 4)];
                int code = (g % 2 == 0 ? both : both >> 4) & 0xF;
                dot += (type == DType.Q4_0 ? code - 8 : code) * codes[(g * 32) + c];
                codeSum += codes[(g * 32) + c];
            }

            float dx = scales[g / perScale];
            float d = rowScales[(g * QuantPanel.Rows) + r] * (g % 2 == 0 ? 1 : 16);
            sum = MathF.FusedMultiplyAdd(dot, d * dx, sum);
            if (type == DType.Q4_K)
            {
                sum = MathF.FusedMultiplyAdd(-rowMins[(g * QuantPanel.Rows) + r], dx * codeSum, sum);
            }
        }

        return sum;
    }
}
