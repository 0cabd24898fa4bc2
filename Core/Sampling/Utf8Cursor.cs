using System.Globalization;

namespace QwenSharp.Sampling;

/// <summary>
/// A character of well-formed UTF-8 taken a byte at a time, for the automata that step whole characters
/// (<see cref="TextPatternPrefix"/>, <see cref="GrammarPrefix"/>): a byte either ends a character, leaves one partly
/// written (whose possible characters <see cref="Reach"/> gives, so a token may end there only if one of them can come),
/// or cannot come here at all.
/// </summary>
internal struct Utf8Cursor
{
    /// <summary>What <see cref="Take"/> gives for a byte that leaves a character partly written.</summary>
    public const int Partial = -1;

    /// <summary>What <see cref="Take"/> gives for a byte no well-formed UTF-8 has here.</summary>
    public const int Refused = -2;

    private int _left;              // continuation bytes owed
    private byte _lowest, _highest; // the range of the next continuation byte
    private int _bits;              // the bits of the character being written

    /// <summary>A character is partly written: the text cannot end here.</summary>
    public readonly bool Partway => _left > 0;

    /// <summary>The state as a string, for automata's keys.</summary>
    public readonly string Key => string.Create(CultureInfo.InvariantCulture, $"{_left}.{_lowest}.{_highest}.{_bits}");

    /// <summary>The code point <paramref name="b"/> completes, else <see cref="Partial"/> or <see cref="Refused"/>.</summary>
    public int Take(byte b)
    {
        if (_left > 0)
        {
            if (b < _lowest || b > _highest)
            {
                return Refused;
            }

            (_lowest, _highest) = (0x80, 0xBF);
            _left--;
            _bits = (_bits << 6) | (b & 0x3F);
            if (_left > 0)
            {
                return Partial;
            }

            int whole = _bits;
            _bits = 0;
            return whole;
        }

        if (b < 0x80)
        {
            return b;
        }

        return Utf8Lead.TryBegin(b, out _left, out _lowest, out _highest, out _bits) ? Partial : Refused;
    }

    /// <summary>The first and last characters the one partly written can still become.</summary>
    public readonly (int First, int Last) Reach() => Utf8Lead.Reach(_bits, _left, _lowest, _highest);
}
