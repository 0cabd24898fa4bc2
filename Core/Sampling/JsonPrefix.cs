namespace QwenSharp.Sampling;

/// <summary>
/// Whether the bytes fed so far begin a JSON object (RFC 8259) that can still be finished, one byte at a time: the
/// pushdown automaton behind OpenAI's <c>response_format: json_object</c>. It is a value type of a few fields (the
/// nesting is a bit stack), so checking a token is a copy and a few byte steps (<see cref="JsonObjectConstraint"/>).
/// </summary>
/// <remarks>
/// Strings take any UTF-8 but control characters, escapes as JSON has them; numbers are JSON's grammar. Limits keep a
/// model from stalling in one place: no whitespace before the object and at most <see cref="MaxWhitespace"/> bytes of it
/// in a row (llama.cpp's JSON grammar allows 20 too), numbers of at most <see cref="MaxNumberBytes"/> bytes and nesting <see cref="MaxDepth"/>
/// deep. Whatever the automaton accepts and calls <see cref="Complete"/> is an object <c>System.Text.Json</c> parses.
/// </remarks>
public struct JsonPrefix
{
    public const int MaxDepth = 64;
    public const int MaxWhitespace = 20;
    public const int MaxNumberBytes = 40;

    private static readonly byte[][] s_literals = ["true"u8.ToArray(), "false"u8.ToArray(), "null"u8.ToArray()];

    private Mode _mode;
    private ulong _objects;     // bit d set: the container at depth d + 1 is an object, else an array
    private byte _depth;
    private byte _step;         // Number: its grammar state; Literal: bytes matched; String: escape state
    private byte _left;         // Number: bytes used; Literal: which literal; String: UTF-8 continuation bytes owed
    private bool _key;          // String: it is an object's key
    private byte _whitespace;   // whitespace bytes in a row
    private byte _lowest, _highest;   // String: the range of the next continuation byte

    private enum Mode : byte
    {
        Start,          // before the top-level object
        ValueOrClose,   // after '[': a value or ']'
        Value,          // after ':' or an array's ','
        KeyOrClose,     // after '{': a key or '}'
        Key,            // after an object's ','
        Colon,          // after a key
        AfterValue,     // ',' or the container's closing bracket
        String,
        Number,
        Literal,
        Done,
    }

    // String escape states (_step).
    private const byte Plain = 0, Escaped = 1;    // 2..5: that many \u hex digits still to come, less one

    /// <summary>
    /// The whole state as two numbers: equal keys take the same bytes, so what a vocabulary's tokens may do next can be
    /// worked out once per key (<see cref="JsonObjectMasks"/>).
    /// </summary>
    public readonly (ulong Nesting, ulong Fields) Key => (_objects, (ulong)_mode | ((ulong)_step << 8) | ((ulong)_left << 16) | ((ulong)_depth << 24)
        | ((ulong)_whitespace << 32) | ((ulong)_lowest << 40) | ((ulong)_highest << 48) | ((_key ? 1UL : 0) << 56));

    /// <summary>The top-level object is closed: nothing may follow but the end of the text.</summary>
    public readonly bool Complete => _mode == Mode.Done;

    /// <summary>Takes one byte; false (and the state is then undefined) when no JSON object text begins with the bytes so far.</summary>
    public bool Feed(byte b)
    {
        switch (_mode)
        {
            case Mode.String:
                return FeedString(b);
            case Mode.Number:
                return FeedNumber(b);
            case Mode.Literal:
                return FeedLiteral(b);
            case Mode.Done:
                return false;
        }

        if (b is (byte)' ' or (byte)'\t' or (byte)'\n' or (byte)'\r')
        {
            // None before the object: the answer starts with its brace.
            return _mode != Mode.Start && ++_whitespace <= MaxWhitespace;
        }

        _whitespace = 0;
        return _mode switch
        {
            Mode.Start => b == '{' && Open(isObject: true),
            Mode.ValueOrClose => b == ']' ? Close(isObject: false) : BeginValue(b),
            Mode.Value => BeginValue(b),
            Mode.KeyOrClose => b == '}' ? Close(isObject: true) : BeginKey(b),
            Mode.Key => BeginKey(b),
            Mode.Colon => b == ':' && Become(Mode.Value),
            _ => FeedAfterValue(b),
        };
    }

    private bool Become(Mode mode)
    {
        _mode = mode;
        return true;
    }

    private readonly bool InObject => ((_objects >> (_depth - 1)) & 1) != 0;

    private bool Open(bool isObject)
    {
        if (_depth == MaxDepth)
        {
            return false;
        }

        _objects = isObject ? _objects | (1UL << _depth) : _objects & ~(1UL << _depth);
        _depth++;
        return Become(isObject ? Mode.KeyOrClose : Mode.ValueOrClose);
    }

    private bool Close(bool isObject)
    {
        if (_depth == 0 || InObject != isObject)
        {
            return false;
        }

        _depth--;
        return Become(_depth == 0 ? Mode.Done : Mode.AfterValue);
    }

    private bool BeginKey(byte b)
    {
        if (b != '"')
        {
            return false;
        }

        _key = true;
        _step = Plain;
        _left = 0;
        return Become(Mode.String);
    }

    private bool BeginValue(byte b)
    {
        switch (b)
        {
            case (byte)'{':
                return Open(isObject: true);
            case (byte)'[':
                return Open(isObject: false);
            case (byte)'"':
                _key = false;
                _step = Plain;
                _left = 0;
                return Become(Mode.String);
            case (byte)'t' or (byte)'f' or (byte)'n':
                _left = (byte)(b == 't' ? 0 : b == 'f' ? 1 : 2);
                _step = 1;
                return Become(Mode.Literal);
            case (byte)'-' or (>= (byte)'0' and <= (byte)'9'):
                _step = b == '-' ? NumberSign : b == '0' ? NumberZero : NumberInteger;
                _left = 1;
                return Become(Mode.Number);
            default:
                return false;
        }
    }

    private bool FeedAfterValue(byte b) => b switch
    {
        (byte)',' => Become(InObject ? Mode.Key : Mode.Value),
        (byte)'}' => Close(isObject: true),
        (byte)']' => Close(isObject: false),
        _ => false,
    };

    private bool FeedString(byte b)
    {
        if (_left > 0)
        {
            // A UTF-8 continuation byte owed by the character's lead byte; only the first can have a narrower range.
            _left--;
            bool inRange = b >= _lowest && b <= _highest;
            (_lowest, _highest) = (0x80, 0xBF);
            return inRange;
        }

        if (_step == Escaped)
        {
            _step = b == 'u' ? (byte)5 : Plain;
            return b is (byte)'"' or (byte)'\\' or (byte)'/' or (byte)'b' or (byte)'f' or (byte)'n' or (byte)'r' or (byte)'t' or (byte)'u';
        }

        if (_step > Escaped)
        {
            _step = _step == 2 ? Plain : (byte)(_step - 1);
            return char.IsAsciiHexDigit((char)b);
        }

        switch (b)
        {
            case (byte)'"':
                return Become(_key ? Mode.Colon : Mode.AfterValue);
            case (byte)'\\':
                _step = Escaped;
                return true;
            case < 0x20:
                return false;
            case < 0x80:
                return true;
            case >= 0xC2 and <= 0xDF:
                _left = 1;
                (_lowest, _highest) = (0x80, 0xBF);
                return true;
            case >= 0xE0 and <= 0xEF:
                // Not overlong (E0 needs A0 or more), and no UTF-16 surrogates (ED stops at 9F).
                _left = 2;
                (_lowest, _highest) = b == 0xE0 ? ((byte)0xA0, (byte)0xBF) : b == 0xED ? ((byte)0x80, (byte)0x9F) : ((byte)0x80, (byte)0xBF);
                return true;
            case >= 0xF0 and <= 0xF4:
                // Not overlong (F0 needs 90 or more), and not past U+10FFFF (F4 stops at 8F).
                _left = 3;
                (_lowest, _highest) = b == 0xF0 ? ((byte)0x90, (byte)0xBF) : b == 0xF4 ? ((byte)0x80, (byte)0x8F) : ((byte)0x80, (byte)0xBF);
                return true;
            default:
                return false;
        }
    }

    // Number grammar states (_step): -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
    private const byte NumberSign = 0, NumberZero = 1, NumberInteger = 2, NumberPoint = 3, NumberFraction = 4, NumberE = 5, NumberExponentSign = 6, NumberExponent = 7;

    private bool FeedNumber(byte b)
    {
        bool digit = b is >= (byte)'0' and <= (byte)'9';
        byte next = _step switch
        {
            NumberSign => digit ? (b == '0' ? NumberZero : NumberInteger) : byte.MaxValue,
            NumberZero => b == '.' ? NumberPoint : b is (byte)'e' or (byte)'E' ? NumberE : byte.MaxValue,
            NumberInteger => digit ? NumberInteger : b == '.' ? NumberPoint : b is (byte)'e' or (byte)'E' ? NumberE : byte.MaxValue,
            NumberPoint => digit ? NumberFraction : byte.MaxValue,
            NumberFraction => digit ? NumberFraction : b is (byte)'e' or (byte)'E' ? NumberE : byte.MaxValue,
            NumberE => digit ? NumberExponent : b is (byte)'+' or (byte)'-' ? NumberExponentSign : byte.MaxValue,
            NumberExponentSign => digit ? NumberExponent : byte.MaxValue,
            _ => digit ? NumberExponent : byte.MaxValue,
        };
        if (next != byte.MaxValue)
        {
            _step = next;
            return ++_left <= MaxNumberBytes;
        }

        // The byte ends the number when the number can end here; it is then the next thing after a value.
        if (_step is not (NumberZero or NumberInteger or NumberFraction or NumberExponent))
        {
            return false;
        }

        _mode = Mode.AfterValue;
        _whitespace = 0;
        return Feed(b);
    }

    private bool FeedLiteral(byte b)
    {
        byte[] literal = s_literals[_left];
        if (literal[_step] != b)
        {
            return false;
        }

        if (++_step == literal.Length)
        {
            _mode = Mode.AfterValue;
        }

        return true;
    }
}
