using System.Buffers.Binary;
using QwenSharp.Numerics;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Q4_0 matrices rearranged once at load into the layout <see cref="QuantPanel"/>'s integer kernels read, so that no step
/// unpacks panels again: packing took a fifth of a 16-sequence decode step (and as much of a prefill), every step, for
/// every panel. 20 bytes per 32 values against the file's 18: the scales widened to f32 once, not at every sub-block.
/// </summary>
/// <remarks>
/// Per panel of <see cref="QuantPanel.Rows"/> rows: first the codes, per
/// pair of blocks (2j, 2j + 1) eight column quads of the sixteen rows, four bytes each, byte i of quad q of row r holding
/// block 2j's code of column 4q + i in its low nibble and block 2j + 1's in its high nibble (<c>[pair][q][r][i]</c>, 512
/// bytes a pair); then each block's sixteen scales as f32, block after block (<c>[block][r]</c>, 64 bytes a block), an odd
/// block's divided by 16. A 32-bit lane of rows is then one vpdpbusd operand once its nibbles are masked: the low ones for
/// block 2j; the high ones, left in place (the codes × 16), for block 2j + 1, whose scale / 16 matches (exact: every f16 / 16
/// is an f32 normal). ggml repacks its Q4_0 the same way for its AVX-512 and ARM kernels (<c>block_q4_0x8</c>), with the
/// nibbles of one block split instead and f16 scales, which its F16C instructions widen (.NET 10 has no vcvtph2ps: five
/// instructions for eight, at every sub-block of every pass, were 3% of the kernel's work on the ports vpdpbusd runs on).
/// </remarks>
internal static class Q4_0Panels
{
    private const int BlockBytes = 18;

    /// <summary>Whether a <paramref name="rows"/> × <paramref name="cols"/> Q4_0 matrix has this layout: whole panels of rows and whole pairs of blocks.</summary>
    public static bool Fits(long rows, long cols) => rows > 0 && rows % QuantPanel.Rows == 0 && cols > 0 && cols % 64 == 0;

    /// <summary>Bytes of one repacked panel of rows of <paramref name="cols"/> values: 20 a row per 32 values.</summary>
    public static int PanelBytes(int cols) => QuantPanel.Rows * (cols / 32) * 20;

    /// <summary>Bytes from a panel's start to its scales.</summary>
    public static int CodeBytes(int cols) => QuantPanel.Rows * cols / 2;

    /// <summary>
    /// One panel: <see cref="QuantPanel.Rows"/> consecutive Q4_0 rows of <paramref name="cols"/> values (<see cref="Fits"/>)
    /// into <paramref name="panel"/> (<see cref="PanelBytes"/>).
    /// </summary>
    public static void Repack(ReadOnlySpan<byte> rows, int cols, Span<byte> panel)
    {
        int blocks = cols / 32, rowBytes = blocks * BlockBytes;
        if (cols % 64 != 0 || rows.Length != QuantPanel.Rows * rowBytes || panel.Length != PanelBytes(cols))
        {
            throw new ArgumentException($"a Q4_0 panel of {QuantPanel.Rows} rows of {cols} values: {rows.Length} bytes in, {panel.Length} out");
        }

        Span<byte> codes = panel[..CodeBytes(cols)];
        Span<float> scales = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(panel[CodeBytes(cols)..]);
        for (int r = 0; r < QuantPanel.Rows; r++)
        {
            ReadOnlySpan<byte> row = rows.Slice(r * rowBytes, rowBytes);
            for (int b = 0; b < blocks; b++)
            {
                float d = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(row[(b * BlockBytes)..]));
                scales[(b * QuantPanel.Rows) + r] = b % 2 == 0 ? d : d / 16;
            }

            for (int j = 0; j < blocks / 2; j++)
            {
                ReadOnlySpan<byte> low = row.Slice((2 * j * BlockBytes) + 2, 16), high = row.Slice((((2 * j) + 1) * BlockBytes) + 2, 16);
                for (int q = 0; q < 8; q++)
                {
                    // Columns 4q..4q + 3 of a block: the low nibbles of its bytes 4q.. for the first 16, the high ones of bytes 4q - 16.. after.
                    uint lowCodes = Quad(low, q), highCodes = Quad(high, q);
                    int at = ((((j * 8) + q) * QuantPanel.Rows) + r) * 4;
                    BinaryPrimitives.WriteUInt32LittleEndian(codes[at..], lowCodes | (highCodes << 4));
                }
            }
        }
    }

    /// <summary>The four codes (0..15, one a byte) of columns 4q..4q + 3 of a Q4_0 block's 16 code bytes.</summary>
    private static uint Quad(ReadOnlySpan<byte> codes, int q)
    {
        uint bytes = BinaryPrimitives.ReadUInt32LittleEndian(codes[(4 * (q % 4))..]);
        return (q < 4 ? bytes : bytes >> 4) & 0x0F0F0F0F;
    }

    /// <summary>
    /// The reference for the kernels: row <paramref name="r"/> of a repacked panel dotted with one token's Q8_0 activations
    /// (<paramref name="codes"/>, <paramref name="scales"/> per block), each block's integer sum times (its scale × the
    /// token's), summed in f32 with fused multiply-adds in block order, as the vector kernels' lanes do.
    /// </summary>
    public static float DotRow(ReadOnlySpan<byte> panel, int cols, int r, ReadOnlySpan<sbyte> codes, ReadOnlySpan<float> scales)
    {
        ReadOnlySpan<byte> packed = panel[..CodeBytes(cols)];
        ReadOnlySpan<float> rowScales = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(panel[CodeBytes(cols)..]);
        float sum = 0;
        for (int b = 0; b < cols / 32; b++)
        {
            int dot = 0;
            for (int c = 0; c < 32; c++)
            {
                int quad = ((b / 2) * 8) + (c / 4);
                byte both = packed[(((quad * QuantPanel.Rows) + r) * 4) + (c % 4)];
                dot += (((b % 2 == 0 ? both : both >> 4) & 0xF) - 8) * codes[(b * 32) + c];
            }

            float d = rowScales[(b * QuantPanel.Rows) + r] * (b % 2 == 0 ? 1 : 16);
            sum = MathF.FusedMultiplyAdd(dot, d * scales[b], sum);
        }

        return sum;
    }
}
