using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
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
    /// <paramref name="count"/> (at most <see cref="QuantPanel.Rows"/>) consecutive IQ4_XS rows of <paramref name="cols"/> values
    /// (<see cref="Iq4XsBlocks"/>) as one panel of this layout, the rows past <paramref name="count"/> zero: each 32-value
    /// sub-block a block whose codes are its table values (int8, + 128 as stored here) and whose scale is d × (ls − 32), exact
    /// in f32 (an f16 times a 6-bit integer needs 17 bits). Every value as ggml dequantizes it, for a prefill's integer
    /// products (IQ4_XS has no panels kept: packed at every step, as Q5_K's are, since Q8_0's form takes 2.1 times its bytes).
    /// </summary>
    public static void PackIq4Xs(ReadOnlySpan<byte> rows, int count, int cols, Span<byte> panel)
    {
        const int SuperBlock = Iq4XsBlocks.BlockValues;
        int superBlocks = cols / SuperBlock, rowBytes = superBlocks * Iq4XsBlocks.BlockBytes;
        if (cols % SuperBlock != 0 || count is < 1 or > QuantPanel.Rows || rows.Length < count * rowBytes || panel.Length != PanelBytes(cols))
        {
            throw new ArgumentException($"a Q8_0 panel of {count} IQ4_XS rows of {cols} values: {rows.Length} bytes in, {panel.Length} out");
        }

        Span<uint> codes = MemoryMarshal.Cast<byte, uint>(panel[..CodeBytes(cols)]);
        Span<float> scales = MemoryMarshal.Cast<byte, float>(panel[CodeBytes(cols)..]);
        if (count < QuantPanel.Rows)
        {
            panel.Clear();
        }

        // The table + 128 (the unsigned codes this layout holds), and the sub-block's 16 bytes' nibbles looked up by it.
        Vector128<byte> table = Vector128.Create(Iq4XsBlocks.NonLinearValues).AsByte() ^ Vector128.Create((byte)0x80);
        Span<byte> values = stackalloc byte[32];
        for (int r = 0; r < count; r++)
        {
            for (int b = 0; b < superBlocks; b++)
            {
                ReadOnlySpan<byte> block = rows.Slice((r * rowBytes) + (b * Iq4XsBlocks.BlockBytes), Iq4XsBlocks.BlockBytes);
                float d = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block));
                for (int s = 0; s < 8; s++)
                {
                    int j = (b * 8) + s;
                    scales[(j * QuantPanel.Rows) + r] = d * Iq4XsBlocks.SubBlockScale(block, s);
                    var packed = Vector128.Create(block.Slice(8 + (16 * s), 16));
                    Vector128.Shuffle(table, packed & Vector128.Create((byte)0x0F)).CopyTo(values);
                    Vector128.Shuffle(table, Vector128.ShiftRightLogical(packed, 4)).CopyTo(values[16..]);
                    ReadOnlySpan<uint> quads = MemoryMarshal.Cast<byte, uint>(values);
                    for (int q = 0; q < 8; q++)
                    {
                        codes[(((j * 8) + q) * QuantPanel.Rows) + r] = quads[q];
                    }
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
