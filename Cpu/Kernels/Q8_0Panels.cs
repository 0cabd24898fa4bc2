using System.Buffers.Binary;
using System.Runtime.InteropServices;
using QwenSharp.Formats;
using QwenSharp.Numerics;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Q8_0 matrices rearranged once at load into the layout <see cref="QuantPanel"/>'s integer kernels read (on CPUs with
/// vpdpbusd, see <see cref="QuantPanel.MultipliesInIntegers"/>), so that a decode step of a few sequences, prompt lookup's
/// guesses and a prompt multiply eight rows per instruction without unpacking the rows again at every step. Measured from
/// cache (Zen 5, 512-bit path, <c>bench few-tokens</c>), ns per token and block of 32: the rows' two-token kernel 0.57-0.63
/// for any number of tokens; these panels 0.19-0.23 in groups of four, 0.18-0.19 in groups of eight.
/// </summary>
/// <remarks>
/// Per panel of <see cref="QuantPanel.Rows"/> rows: first the codes + 128 (0..255, the unsigned operand vpdpbusd takes), per
/// block j eight column quads of the sixteen rows, four bytes each (<c>[j][q][r][i]</c>, 512 bytes a block); then each block's
/// sixteen scales widened to f32 (<c>[j][r]</c>, 64 bytes). 36 bytes per 32 values against the file's 34. These are exactly the
/// codes and scales <see cref="QuantPanel.Pack"/> unpacks a panel into per step (without the mins, which Q8_0's products do not
/// read: they start from -128 × Σa). ik_llama.cpp's run-time repacking interleaves Q8_0 rows likewise (<c>Q8_0_R8</c>, eight rows);
/// ggml's <c>block_q8_0x4</c> interleaves four tokens' activations for its repacked Q4_0 products, not weights.
/// </remarks>
internal static class Q8_0Panels
{
    private const int BlockBytes = 34;

    /// <summary>Whether a <paramref name="rows"/> × <paramref name="cols"/> Q8_0 matrix has this layout: whole panels of rows and whole blocks.</summary>
    public static bool Fits(long rows, long cols) => rows > 0 && rows % QuantPanel.Rows == 0 && cols > 0 && cols % 32 == 0;

    /// <summary>Bytes of one panel of rows of <paramref name="cols"/> values: 36 a row per 32 values.</summary>
    public static int PanelBytes(int cols) => QuantPanel.Rows * (cols / 32) * 36;

    /// <summary>Bytes from a panel's start to its scales.</summary>
    public static int CodeBytes(int cols) => QuantPanel.Rows * cols;

    /// <summary>One panel: <see cref="QuantPanel.Rows"/> consecutive Q8_0 rows of <paramref name="cols"/> values (<see cref="Fits"/>) into <paramref name="panel"/>.</summary>
    public static void Repack(ReadOnlySpan<byte> rows, int cols, Span<byte> panel)
    {
        int blocks = cols / 32, rowBytes = blocks * BlockBytes;
        if (!Fits(QuantPanel.Rows, cols) || rows.Length != QuantPanel.Rows * rowBytes || panel.Length != PanelBytes(cols))
        {
            throw new ArgumentException($"a Q8_0 panel of {QuantPanel.Rows} rows of {cols} values: {rows.Length} bytes in, {panel.Length} out");
        }

        Span<uint> codes = MemoryMarshal.Cast<byte, uint>(panel[..CodeBytes(cols)]);
        Span<float> scales = MemoryMarshal.Cast<byte, float>(panel[CodeBytes(cols)..]);
        for (int r = 0; r < QuantPanel.Rows; r++)
        {
            for (int j = 0; j < blocks; j++)
            {
                ReadOnlySpan<byte> block = rows.Slice((r * rowBytes) + (j * BlockBytes), BlockBytes);
                scales[(j * QuantPanel.Rows) + r] = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block));
                for (int q = 0; q < 8; q++)
                {
                    // A signed code + 128 is its byte with the top bit flipped.
                    codes[(((j * 8) + q) * QuantPanel.Rows) + r] = BinaryPrimitives.ReadUInt32LittleEndian(block[(2 + (4 * q))..]) ^ 0x80808080;
                }
            }
        }
    }

    /// <summary>
    /// The reference for the kernels: row <paramref name="r"/> of a panel dotted with one token's Q8_0 activation codes and
    /// block <paramref name="scales"/>, each block's integer sum Σ w × a (the codes less 128) times (its scale × the token's),
    /// summed in f32 with fused multiply-adds in block order, as the vector kernels' lanes do.
    /// </summary>
    public static float DotRow(ReadOnlySpan<byte> panel, int cols, int r, ReadOnlySpan<sbyte> codes, ReadOnlySpan<float> scales)
    {
        ReadOnlySpan<float> rowScales = MemoryMarshal.Cast<byte, float>(panel[CodeBytes(cols)..]);
        float sum = 0;
        for (int j = 0; j < cols / 32; j++)
        {
            int dot = 0;
            for (int c = 0; c < 32; c++)
            {
                int quad = (j * 8) + (c / 4);
                dot += (panel[(((quad * QuantPanel.Rows) + r) * 4) + (c % 4)] - 128) * codes[(j * 32) + c];
            }

            sum = MathF.FusedMultiplyAdd(dot, rowScales[(j * QuantPanel.Rows) + r] * scales[j], sum);
        }

        return sum;
    }
}
