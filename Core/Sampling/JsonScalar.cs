namespace QwenSharp.Sampling;

/// <summary>What one byte did to a <see cref="JsonScalar"/>.</summary>
internal enum ScalarStep : byte
{
    /// <summary>The byte cannot come here.</summary>
    Refused,

    /// <summary>Taken; the value goes on.</summary>
    Taken,

    /// <summary>Taken, and it ended the value (a string's closing quote, a literal's last letter).</summary>
    Finished,

    /// <summary>Not taken: the number ended before it, and the byte is the next thing after the value.</summary>
    Ended,
}

/// <summary>
/// The byte steps inside one JSON string, number or literal (RFC 8259), for <see cref="JsonSchemaPrefix"/>. Strings take any well-formed UTF-8 but control characters, with JSON's escapes;
/// numbers follow JSON's grammar (integers only when asked), at most <see cref="MaxNumberBytes"/> bytes long.
/// </summary>
internal struct JsonScalar
{
    public const int MaxNumberBytes = 40;

    private static readonly byte[][] s_literals = ["true"u8.ToArray(), "false"u8.ToArray(), "null"u8.ToArray()];

    private Kind _kind;
    private byte _step;         // String: escape state; Number: grammar state; Literal: bytes matched
    private byte _left;         // String: UTF-8 continuation bytes owed; Number: bytes used; Literal: which literal
    private byte _lowest, _highest;   // String: the range of the next continuation byte
    private bool _integer;      // Number: no fraction or exponent

    private enum Kind : byte
    {
        String,
        Number,
        Literal,
    }

    // String escape states (_step): 2..5 are that many \u hex digits still to come, less one.
    private const byte Plain = 0, Escaped = 1;

    // Number grammar states (_step): -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
    private const byte NumberSign = 0, NumberZero = 1, NumberInteger = 2, NumberPoint = 3, NumberFraction = 4, NumberE = 5, NumberExponentSign = 6, NumberExponent = 7;

    /// <summary>The state as text, for <see cref="JsonSchemaPrefix.Key"/>.</summary>
    public readonly string Key => string.Create(System.Globalization.CultureInfo.InvariantCulture,
        $"{(byte)_kind}.{_step}.{_left}.{_lowest}.{_highest}.{(_integer ? 1 : 0)}");

    /// <summary>Whether <paramref name="b"/> begins a value of one of <paramref name="kinds"/> that is a string, number or literal; the scalar it begins.</summary>
    public static bool TryBegin(byte b, JsonKinds kinds, out JsonScalar scalar)
    {
        scalar = default;
        switch (b)
        {
            case (byte)'"' when kinds.HasFlag(JsonKinds.String):
                scalar._kind = Kind.String;
                return true;
            case (byte)'-' or (>= (byte)'0' and <= (byte)'9') when (kinds & (JsonKinds.Number | JsonKinds.Integer)) != 0:
                scalar._kind = Kind.Number;
                scalar._integer = !kinds.HasFlag(JsonKinds.Number);
                scalar._step = b == '-' ? NumberSign : b == '0' ? NumberZero : NumberInteger;
                scalar._left = 1;
                return true;
            case (byte)'t' or (byte)'f' when kinds.HasFlag(JsonKinds.Boolean):
            case (byte)'n' when kinds.HasFlag(JsonKinds.Null):
                scalar._kind = Kind.Literal;
                scalar._left = (byte)(b == 't' ? 0 : b == 'f' ? 1 : 2);
                scalar._step = 1;
                return true;
            default:
                return false;
        }
    }

    public ScalarStep Feed(byte b) => _kind switch
    {
        Kind.String => FeedString(b),
        Kind.Number => FeedNumber(b),
        _ => FeedLiteral(b),
    };

    private ScalarStep FeedString(byte b)
    {
        if (_left > 0)
        {
            // A UTF-8 continuation byte owed by the character's lead byte; only the first can have a narrower range.
            _left--;
            bool inRange = b >= _lowest && b <= _highest;
            (_lowest, _highest) = (0x80, 0xBF);
            return inRange ? ScalarStep.Taken : ScalarStep.Refused;
        }

        if (_step == Escaped)
        {
            _step = b == 'u' ? (byte)5 : Plain;
            return b is (byte)'"' or (byte)'\\' or (byte)'/' or (byte)'b' or (byte)'f' or (byte)'n' or (byte)'r' or (byte)'t' or (byte)'u'
                ? ScalarStep.Taken : ScalarStep.Refused;
        }

        if (_step > Escaped)
        {
            _step = _step == 2 ? Plain : (byte)(_step - 1);
            return char.IsAsciiHexDigit((char)b) ? ScalarStep.Taken : ScalarStep.Refused;
        }

        switch (b)
        {
            case (byte)'"':
                return ScalarStep.Finished;
            case (byte)'\\':
                _step = Escaped;
                return ScalarStep.Taken;
            case < 0x20:
                return ScalarStep.Refused;
            case < 0x80:
                return ScalarStep.Taken;
            case >= 0xC2 and <= 0xDF:
                _left = 1;
                (_lowest, _highest) = (0x80, 0xBF);
                return ScalarStep.Taken;
            case >= 0xE0 and <= 0xEF:
                // Not overlong (E0 needs A0 or more), and no UTF-16 surrogates (ED stops at 9F).
                _left = 2;
                (_lowest, _highest) = b == 0xE0 ? ((byte)0xA0, (byte)0xBF) : b == 0xED ? ((byte)0x80, (byte)0x9F) : ((byte)0x80, (byte)0xBF);
                return ScalarStep.Taken;
            case >= 0xF0 and <= 0xF4:
                // Not overlong (F0 needs 90 or more), and not past U+10FFFF (F4 stops at 8F).
                _left = 3;
                (_lowest, _highest) = b == 0xF0 ? ((byte)0x90, (byte)0xBF) : b == 0xF4 ? ((byte)0x80, (byte)0x8F) : ((byte)0x80, (byte)0xBF);
                return ScalarStep.Taken;
            default:
                return ScalarStep.Refused;
        }
    }

    private ScalarStep FeedNumber(byte b)
    {
        bool digit = b is >= (byte)'0' and <= (byte)'9';
        bool point = b == '.' && !_integer;
        bool e = (b is (byte)'e' or (byte)'E') && !_integer;
        byte next = _step switch
        {
            NumberSign => digit ? (b == '0' ? NumberZero : NumberInteger) : byte.MaxValue,
            NumberZero => point ? NumberPoint : e ? NumberE : byte.MaxValue,
            NumberInteger => digit ? NumberInteger : point ? NumberPoint : e ? NumberE : byte.MaxValue,
            NumberPoint => digit ? NumberFraction : byte.MaxValue,
            NumberFraction => digit ? NumberFraction : e ? NumberE : byte.MaxValue,
            NumberE => digit ? NumberExponent : b is (byte)'+' or (byte)'-' ? NumberExponentSign : byte.MaxValue,
            NumberExponentSign => digit ? NumberExponent : byte.MaxValue,
            _ => digit ? NumberExponent : byte.MaxValue,
        };
        if (next != byte.MaxValue)
        {
            _step = next;
            return ++_left <= MaxNumberBytes ? ScalarStep.Taken : ScalarStep.Refused;
        }

        // The byte ends the number when the number can end here; it is then the next thing after a value.
        return _step is NumberZero or NumberInteger or NumberFraction or NumberExponent ? ScalarStep.Ended : ScalarStep.Refused;
    }

    private ScalarStep FeedLiteral(byte b)
    {
        byte[] literal = s_literals[_left];
        if (literal[_step] != b)
        {
            return ScalarStep.Refused;
        }

        return ++_step == literal.Length ? ScalarStep.Finished : ScalarStep.Taken;
    }
}

/// <summary>
/// The whitespace the JSON automata let an answer have between tokens, llama.cpp's rule for its JSON grammars: none, one
/// space, or a line break and at most <see cref="MaxIndent"/> spaces or tabs. A model cannot stall in whitespace, and the
/// answers stay as people and parsers expect them.
/// </summary>
internal static class JsonWhitespace
{
    public const int MaxIndent = 20;

    private const byte AfterSpace = 1, AfterLineBreak = 2;

    /// <summary>Whether <paramref name="b"/> may come in the whitespace <paramref name="run"/> describes (0 when there is none yet); advances it.</summary>
    public static bool Take(ref byte run, byte b)
    {
        switch (b)
        {
            case (byte)' ' when run == 0:
                run = AfterSpace;
                return true;
            case (byte)'\n' when run == 0:
                run = AfterLineBreak;
                return true;
            case (byte)' ' or (byte)'\t' when run >= AfterLineBreak && run < AfterLineBreak + MaxIndent:
                run++;
                return true;
            default:
                return false;
        }
    }
}
