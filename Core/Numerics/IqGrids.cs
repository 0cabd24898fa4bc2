namespace QwenSharp.Numerics;

/// <summary>
/// The lattice points GGUF's 1-3-bit i-quants index (ggml's <c>iq2xxs_grid</c>, <c>iq2xs_grid</c>, <c>iq2s_grid</c>,
/// <c>iq3xxs_grid</c>, <c>iq3s_grid</c>, <c>iq1s_grid</c>): fixed tables that are part of the format (no rule derives them),
/// embedded as <c>IqGrids.bin</c>, which <c>tools/iq-grids.py</c> copies out of the ggml library the tests' llama.cpp ships.
/// A point is 8 bytes (IQ2: magnitudes 8, 25, 43; IQ1: -1, 0, 1 as int8) or 4 (IQ3_XXS: 4, 12, ..., 52, 62; IQ3_S: the odd
/// values 1..15), one per weight of its group, byte j weight j's (so a point read as a little-endian word is its weights'
/// bytes in order).
/// </summary>
public static class IqGrids
{
    private const int Iq2XxsAt = 0, Iq2XsAt = Iq2XxsAt + (256 * 8), Iq2SAt = Iq2XsAt + (512 * 8), Iq3XxsAt = Iq2SAt + (1024 * 8),
        Iq3SAt = Iq3XxsAt + (256 * 4), Iq1SAt = Iq3SAt + (512 * 4), TotalBytes = Iq1SAt + (2048 * 8);

    private static readonly byte[] s_tables = Load();

    /// <summary>IQ2_XXS's point <paramref name="index"/> (0..255): eight magnitudes.</summary>
    public static ReadOnlySpan<byte> Iq2Xxs(int index) => Point(Iq2XxsAt, 256, 8, index);

    /// <summary>IQ2_XS's point <paramref name="index"/> (0..511).</summary>
    public static ReadOnlySpan<byte> Iq2Xs(int index) => Point(Iq2XsAt, 512, 8, index);

    /// <summary>IQ2_S's point <paramref name="index"/> (0..1023).</summary>
    public static ReadOnlySpan<byte> Iq2S(int index) => Point(Iq2SAt, 1024, 8, index);

    /// <summary>IQ3_XXS's point <paramref name="index"/> (0..255): four magnitudes.</summary>
    public static ReadOnlySpan<byte> Iq3Xxs(int index) => Point(Iq3XxsAt, 256, 4, index);

    /// <summary>IQ3_S's point <paramref name="index"/> (0..511): four magnitudes.</summary>
    public static ReadOnlySpan<byte> Iq3S(int index) => Point(Iq3SAt, 512, 4, index);

    /// <summary>IQ1_S's and IQ1_M's point <paramref name="index"/> (0..2047): eight values of -1, 0 or 1.</summary>
    public static ReadOnlySpan<sbyte> Iq1S(int index) => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, sbyte>(Point(Iq1SAt, 2048, 8, index));

    /// <summary>
    /// IQ2's and IQ3's sign patterns (ggml's <c>ksigns_iq2xs</c>): seven stored bits, the eighth making the count of minus
    /// signs even. Bit j set: weight j of the group is negative.
    /// </summary>
    public static byte Signs(int sevenBits) => (byte)(sevenBits | (int.PopCount(sevenBits) % 2 == 1 ? 0x80 : 0));

    private static ReadOnlySpan<byte> Point(int at, int count, int size, int index) =>
        (uint)index < (uint)count ? s_tables.AsSpan(at + (index * size), size) : throw new ArgumentOutOfRangeException(nameof(index), index, $"a point of a table of {count}");

    private static byte[] Load()
    {
        using Stream stream = typeof(IqGrids).Assembly.GetManifestResourceStream("IqGrids.bin")
            ?? throw new InvalidOperationException("QwenSharp.Core was built without its IqGrids.bin resource");
        var tables = new byte[TotalBytes];
        stream.ReadExactly(tables);
        if (stream.ReadByte() != -1)
        {
            throw new InvalidOperationException($"IqGrids.bin holds more than the {TotalBytes} bytes of the i-quant tables");
        }

        return tables;
    }
}
