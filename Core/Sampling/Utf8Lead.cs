namespace QwenSharp.Sampling;

/// <summary>
/// Well-formed UTF-8 a byte at a time, for the automata that step characters (<see cref="JsonScalar"/>'s strings,
/// <see cref="TextPatternPrefix"/>): what a lead byte owes, and the characters a partly written one can still become.
/// </summary>
internal static class Utf8Lead
{
    /// <summary>
    /// Whether <paramref name="b"/> begins a character of two to four bytes: the continuation bytes it owes, the range of
    /// the first of them (no overlong forms, no UTF-16 surrogates, nothing past U+10FFFF), and the character's bits so far.
    /// </summary>
    public static bool TryBegin(byte b, out int left, out byte lowest, out byte highest, out int bits)
    {
        (left, lowest, highest) = b switch
        {
            >= 0xC2 and <= 0xDF => (1, (byte)0x80, (byte)0xBF),
            0xE0 => (2, (byte)0xA0, (byte)0xBF),    // E0 needs A0 or more (not overlong)
            0xED => (2, (byte)0x80, (byte)0x9F),    // ED stops at 9F (no surrogates)
            >= 0xE1 and <= 0xEF => (2, (byte)0x80, (byte)0xBF),
            0xF0 => (3, (byte)0x90, (byte)0xBF),    // F0 needs 90 or more (not overlong)
            0xF4 => (3, (byte)0x80, (byte)0x8F),    // F4 stops at 8F (not past U+10FFFF)
            >= 0xF1 and <= 0xF3 => (3, (byte)0x80, (byte)0xBF),
            _ => (0, (byte)0, (byte)0),
        };
        bits = left == 0 ? 0 : b & (0x3F >> left);
        return left > 0;
    }

    /// <summary>
    /// The first and last characters a partly written one can still become: its bits so far, <paramref name="left"/>
    /// continuation bytes still owed, the next of them in [<paramref name="lowest"/>, <paramref name="highest"/>].
    /// </summary>
    public static (int First, int Last) Reach(int bits, int left, byte lowest, byte highest)
    {
        int rest = 6 * (left - 1);
        return ((bits << (6 * left)) | ((lowest & 0x3F) << rest), (bits << (6 * left)) | ((highest & 0x3F) << rest) | ((1 << rest) - 1));
    }
}
