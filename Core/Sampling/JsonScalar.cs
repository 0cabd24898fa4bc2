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
/// The byte steps inside one JSON string, number or literal (RFC 8259), for <see cref="JsonSchemaPrefix"/>. Strings take
/// any well-formed UTF-8 but control characters, with JSON's escapes (surrogates only in pairs), and a schema's
/// <c>minLength</c>/<c>maxLength</c> in code points; numbers follow JSON's grammar (integers only when asked), at most
/// <see cref="MaxNumberBytes"/> bytes long, and a schema's range (<see cref="JsonNumberRange"/>).
/// </summary>
internal struct JsonScalar
{
    public const int MaxNumberBytes = 40;

    private static readonly byte[][] s_literals = ["true"u8.ToArray(), "false"u8.ToArray(), "null"u8.ToArray()];

    private Kind _kind;
    private byte _step;         // String: escape state; Number: grammar state; Literal: bytes matched
    private byte _left;         // String: UTF-8 continuation bytes owed; Number: bytes used; Literal: which literal
    private byte _lowest, _highest;   // String: the range of the next continuation byte
    private byte _unit;         // String: the first hex digit of a \u escape
    private bool _integer;      // Number: no fraction or exponent
    private JsonSchemaNode? _bounds;  // String: its length limits; Number: its range (null: none)
    private int _length;        // String held to a length: characters so far
    private bool _negative;     // Number in a range: began with a minus
    private int _integerDigits, _fractionDigits;    // Number in a range: digits before the point, and after it (-1: no point)
    private decimal _magnitude; // Number in a range: the value of the digits so far
    private PatternState? _pattern;     // String held to a pattern: where it stands in it
    private int _codePoint;     // String held to a pattern: the bits of the character being written

    private enum Kind : byte
    {
        String,
        Number,
        Literal,
    }

    // String escape states (_step): 2..5 are that many \u hex digits still to come, less one; 6..9 the \u of a low
    // surrogate owed by a high one, byte by byte (backslash, u, D, [C-F]), its last two hex digits then 3 and 2.
    private const byte Plain = 0, Escaped = 1, FirstHex = 5, LastHex = 2, LowBackslash = 6, LowU = 7, LowD = 8, LowSecond = 9;

    // _unit after the second hex digit of a high surrogate: its low half must follow.
    private const byte HighSurrogate = 0x10;

    // Number grammar states (_step): -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
    private const byte NumberSign = 0, NumberZero = 1, NumberInteger = 2, NumberPoint = 3, NumberFraction = 4, NumberE = 5, NumberExponentSign = 6, NumberExponent = 7;

    /// <summary>
    /// The state as text, for <see cref="JsonSchemaPrefix.KeyFor"/> (the bounds are the node's, whose id the prefix's key
    /// holds). A held string's characters to go until its least and its most length count only up to
    /// <paramref name="tokenBytes"/>: a token of that many bytes adds no more characters, so farther from either limit the
    /// same tokens are allowed, and a long bounded string keeps one mask until it nears them.
    /// </summary>
    public readonly string KeyFor(int tokenBytes)
    {
        (int toLeast, int toMost) = _bounds is not { HasLength: true } bounds ? (0, 0)
            : bounds.Pattern is not { } pattern ? (Math.Clamp(bounds.MinLength - _length, 0, tokenBytes), Math.Min(bounds.MaxLength - _length, tokenBytes))
            : HeldToLengthKey(bounds, pattern, tokenBytes);
        return string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"{(byte)_kind}.{_step}.{_left}.{_lowest}.{_highest}.{_unit}.{(_integer ? 1 : 0)}.{toLeast}.{toMost}.{(_negative ? 1 : 0)}.{_integerDigits}.{_fractionDigits}.{_magnitude}.{_codePoint}.{_pattern?.Key}");
    }

    /// <summary>
    /// <see cref="KeyFor"/>'s characters to go for a string held to a pattern and a length. Until its least is reached, the
    /// mask depends on both counts exactly (whether the pattern can end within them is no simple function of them). After,
    /// a token of <paramref name="tokenBytes"/> characters leaves every state it passes a way to a match when the most is
    /// at least that plus the farthest any state's shortest way to a match is, so from there the count stops there.
    /// </summary>
    private readonly (int ToLeast, int ToMost) HeldToLengthKey(JsonSchemaNode bounds, StringPattern pattern, int tokenBytes)
    {
        int toLeast = Math.Max(bounds.MinLength - _length, 0), toMost = bounds.MaxLength - _length;
        return toLeast > 0 ? (toLeast, toMost) : (0, (int)Math.Min(toMost, (long)tokenBytes + pattern.LongestShortest));
    }

    /// <summary>
    /// Whether <paramref name="b"/> begins a value of one of <paramref name="kinds"/> that is a string, number or literal;
    /// the scalar it begins, held to <paramref name="bounds"/>' length limits or number range where it has them.
    /// </summary>
    public static bool TryBegin(byte b, JsonKinds kinds, JsonSchemaNode? bounds, out JsonScalar scalar)
    {
        scalar = default;
        switch (b)
        {
            case (byte)'"' when kinds.HasFlag(JsonKinds.String):
                scalar._kind = Kind.String;
                scalar._bounds = bounds is { HasLength: true } or { Pattern: not null } ? bounds : null;
                scalar._pattern = bounds?.Pattern?.Begin;
                return true;
            case (byte)'-' or (>= (byte)'0' and <= (byte)'9') when (kinds & (JsonKinds.Number | JsonKinds.Integer)) != 0:
                scalar._kind = Kind.Number;
                scalar._integer = !kinds.HasFlag(JsonKinds.Number);
                scalar._step = NumberSign;
                scalar._bounds = bounds?.Range is not null ? bounds : null;
                scalar._fractionDigits = -1;
                if (b == '-')
                {
                    // A ranged number takes a minus only where the range has negative numbers (no "-0" for a range of 0..5);
                    // its lowest then is one a minus begins (or -1, when that lowest is unbounded).
                    scalar._negative = true;
                    scalar._left = 1;
                    return bounds?.Range is not { } range || range.Lowest < 0m;
                }

                return scalar.FeedNumber(b) == ScalarStep.Taken;
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
            if (!inRange || _pattern is null)
            {
                return inRange ? ScalarStep.Taken : ScalarStep.Refused;
            }

            _codePoint = (_codePoint << 6) | (b & 0x3F);
            return _left == 0 ? StepPattern(_codePoint) : AllowsPartly();
        }

        if (_step != Plain)
        {
            return FeedEscape(b);
        }

        if (b == '"')
        {
            return (_bounds is { } shortest && _length < shortest.MinLength) || _pattern is { Matches: false } ? ScalarStep.Refused : ScalarStep.Finished;
        }

        // Every other byte here begins a character (one code point, as JSON Schema counts a string's length).
        if (_bounds is { } bounded)
        {
            if (_length == bounded.MaxLength)
            {
                return ScalarStep.Refused;
            }

            _length++;
        }

        switch (b)
        {
            case (byte)'\\':
                // An escape writes any character of the Basic Multilingual Plane (a held string's escapes: no surrogates).
                _step = Escaped;
                return _pattern is null || Reaches(0, 0xFFFF) ? ScalarStep.Taken : ScalarStep.Refused;
            case < 0x20:
                return ScalarStep.Refused;
            case < 0x80:
                return _pattern is null ? ScalarStep.Taken : StepPattern(b);
            case >= 0xF0 when HeldToBoth:
                // Not in a string held to a pattern and a length: there a character is one pattern step, as FinishesWithin counts.
                return ScalarStep.Refused;
            default:
                if (!Utf8Lead.TryBegin(b, out int left, out _lowest, out _highest, out _codePoint))
                {
                    return ScalarStep.Refused;
                }

                _left = (byte)left;
                break;
        }

        // A lead byte: whether some character it can begin may come.
        return _pattern is null ? ScalarStep.Taken : AllowsPartly();
    }

    private readonly StringPattern Pattern => _bounds!.Pattern!;

    /// <summary>Whether the string is held to a pattern and a length both (so each character must leave the pattern a way to match within the length).</summary>
    private readonly bool HeldToBoth => _pattern is not null && _bounds!.HasLength;

    /// <summary>The characters still to come, at least and at most, after those counted so far.</summary>
    private readonly (int Least, int Most) CharactersLeft => (Math.Max(_bounds!.MinLength - _length, 0), _bounds.MaxLength - _length);

    /// <summary>Whether some character from <paramref name="first"/> to <paramref name="last"/>, not a surrogate, can come next (held to a length as well, with a way to match left after it).</summary>
    private readonly bool Reaches(int first, int last)
    {
        if (HeldToBoth)
        {
            (int least, int most) = CharactersLeft;
            return Pattern.ContinuesWithin(_pattern!, first, last, least, most);
        }

        return Pattern.Allows(_pattern!, first, Math.Min(last, 0xD7FF)) || (last >= 0xE000 && Pattern.Allows(_pattern!, Math.Max(first, 0xE000), last));
    }

    /// <summary>A whole character through the pattern (<see cref="StringPattern.StepCharacter"/>), held to a length as well: with a way to match left after it.</summary>
    private ScalarStep StepPattern(int codePoint)
    {
        _codePoint = 0;
        _pattern = Pattern.StepCharacter(_pattern!, codePoint);
        if (_pattern is null)
        {
            return ScalarStep.Refused;
        }

        if (!HeldToBoth)
        {
            return ScalarStep.Taken;
        }

        (int least, int most) = CharactersLeft;
        return Pattern.FinishesWithin(_pattern, least, most) ? ScalarStep.Taken : ScalarStep.Refused;
    }

    /// <summary>A character partly written in UTF-8: some character its remaining bytes can make may come next.</summary>
    private readonly ScalarStep AllowsPartly()
    {
        (int first, int last) = Utf8Lead.Reach(_codePoint, _left, _lowest, _highest);
        bool allowed = first > 0xFFFF ? Pattern.AllowsPastBmp(_pattern!, first, last) : Reaches(first, last);
        return allowed ? ScalarStep.Taken : ScalarStep.Refused;
    }

    /// <summary>
    /// The bytes of an escape. A <c>\u</c> escape of a UTF-16 surrogate must be a high one followed by its low one (one
    /// character), as a string with a lone surrogate is not text a parser will read.
    /// </summary>
    private ScalarStep FeedEscape(byte b)
    {
        bool hex = char.IsAsciiHexDigit((char)b);
        int nibble = !hex ? -1 : b <= '9' ? b - '0' : (b | 0x20) - 'a' + 10;
        if (_pattern is not null)
        {
            return FeedHeldEscape(b, hex, nibble);
        }

        switch (_step)
        {
            case Escaped:
                _step = b == 'u' ? FirstHex : Plain;
                return b == 'u' || EscapeWrites(b) >= 0 ? ScalarStep.Taken : ScalarStep.Refused;
            case FirstHex:
                _unit = (byte)Math.Max(nibble, 0);
                _step--;
                return hex ? ScalarStep.Taken : ScalarStep.Refused;
            case FirstHex - 1 when _unit == 0xD:
                // D800-DBFF opens a pair; DC00-DFFF would be a lone low surrogate.
                _step--;
                _unit = nibble is >= 0x8 and < 0xC ? HighSurrogate : (byte)0;
                return hex && nibble < 0xC ? ScalarStep.Taken : ScalarStep.Refused;
            case LastHex:
                _step = _unit == HighSurrogate ? LowBackslash : Plain;
                _unit = 0;
                return hex ? ScalarStep.Taken : ScalarStep.Refused;
            case LowBackslash:
                _step = LowU;
                return b == '\\' ? ScalarStep.Taken : ScalarStep.Refused;
            case LowU:
                _step = LowD;
                return b == 'u' ? ScalarStep.Taken : ScalarStep.Refused;
            case LowD:
                _step = LowSecond;
                return nibble == 0xD ? ScalarStep.Taken : ScalarStep.Refused;
            case LowSecond:
                _step = 3;
                return nibble >= 0xC ? ScalarStep.Taken : ScalarStep.Refused;
            default:
                _step--;
                return hex ? ScalarStep.Taken : ScalarStep.Refused;
        }
    }

    /// <summary>The character a one-letter escape <c>\b</c> writes (JSON's <c>\" \\ \/ \b \f \n \r \t</c>), or -1 for any other letter.</summary>
    private static int EscapeWrites(byte b) => b switch
    {
        (byte)'"' or (byte)'\\' or (byte)'/' => b,
        (byte)'b' => '\b',
        (byte)'f' => '\f',
        (byte)'n' => '\n',
        (byte)'r' => '\r',
        (byte)'t' => '\t',
        _ => -1,
    };

    /// <summary>An escape in a string held to a pattern: the character it writes stepped through the pattern, a <c>\u</c> one's hex digits narrowing it as they come; no surrogates.</summary>
    private ScalarStep FeedHeldEscape(byte b, bool hex, int nibble)
    {
        if (_step == Escaped)
        {
            _step = b == 'u' ? FirstHex : Plain;
            int written = EscapeWrites(b);
            return b == 'u' ? ScalarStep.Taken : written < 0 ? ScalarStep.Refused : StepPattern(written);
        }

        _codePoint = (_codePoint << 4) | Math.Max(nibble, 0);
        int left = _step - LastHex;
        _step = left == 0 ? Plain : (byte)(_step - 1);
        if (!hex || (left == 2 && _codePoint >= 0xD8 && _codePoint <= 0xDF))
        {
            return ScalarStep.Refused;
        }

        return left == 0 ? StepPattern(_codePoint)
            : Reaches(_codePoint << (4 * left), (_codePoint << (4 * left)) | ((1 << (4 * left)) - 1)) ? ScalarStep.Taken : ScalarStep.Refused;
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
            return ++_left <= MaxNumberBytes && (_bounds?.Range is not { } range || TakeInRange(range, b, next)) ? ScalarStep.Taken : ScalarStep.Refused;
        }

        // The byte ends the number when the number can end here; it is then the next thing after a value.
        bool whole = _step is NumberZero or NumberInteger or NumberFraction or NumberExponent;
        return whole && (_bounds?.Range is not { } held || held.Holds(_negative ? -_magnitude : _magnitude)) ? ScalarStep.Ended : ScalarStep.Refused;
    }

    /// <summary>A number held to a range: no exponent, the digit or point added to the value so far, and a way still open to end in the range.</summary>
    private bool TakeInRange(JsonNumberRange range, byte b, byte next)
    {
        if (next is NumberE)
        {
            return false;
        }

        if (b == '.')
        {
            _fractionDigits = 0;
        }
        else if (_fractionDigits >= 0)
        {
            if (_fractionDigits == JsonNumberRange.MaxFractionDigits)
            {
                return false;
            }

            _fractionDigits++;
            _magnitude += new decimal(b - '0', 0, 0, false, (byte)_fractionDigits);
        }
        else
        {
            if (_integerDigits == JsonNumberRange.MaxIntegerDigits)
            {
                return false;
            }

            _integerDigits++;
            _magnitude = (_magnitude * 10m) + (b - '0');
        }

        return range.Reaches(_negative, _magnitude, _integerDigits, _fractionDigits);
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
