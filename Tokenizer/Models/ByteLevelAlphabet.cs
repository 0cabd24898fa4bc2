namespace QwenSharp.Tokenization.Models;

/// <summary>
/// GPT-2's byte-to-unicode table: every byte gets a printable character, so byte-level BPE vocabularies
/// are written as text. Printable Latin-1 bytes map to themselves; the other 68 map to U+0100 upwards.
/// </summary>
internal static class ByteLevelAlphabet
{
    private static readonly char[] s_byteToChar = BuildByteToChar();
    private static readonly short[] s_charToByte = BuildCharToByte();

    public static char CharOf(byte b) => s_byteToChar[b];

    /// <summary>The byte <paramref name="c"/> stands for, or -1 when it is not in the alphabet.</summary>
    public static int ByteOf(char c) => c < s_charToByte.Length ? s_charToByte[c] : -1;

    /// <summary>
    /// The bytes a byte-level token stands for, into <paramref name="bytes"/> (at least UTF-8's maximum for the token's
    /// length); a token with a character outside the alphabet (an added token's text) is its own UTF-8. Returns the count.
    /// </summary>
    public static int BytesOf(string token, Span<byte> bytes)
    {
        int count = 0;
        foreach (char c in token)
        {
            int b = ByteOf(c);
            if (b < 0)
            {
                return System.Text.Encoding.UTF8.GetBytes(token, bytes);
            }

            bytes[count++] = (byte)b;
        }

        return count;
    }

    private static char[] BuildByteToChar()
    {
        var table = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            table[b] = printable ? (char)b : (char)next++;
        }

        return table;
    }

    private static short[] BuildCharToByte()
    {
        var table = new short[324];
        Array.Fill(table, (short)-1);
        for (int b = 0; b < 256; b++)
        {
            table[s_byteToChar[b]] = (short)b;
        }

        return table;
    }
}
