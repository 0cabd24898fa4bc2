namespace QwenSharp.Sampling;

/// <summary>
/// An answer that is plain text matching a regular expression whole (vLLM's <c>guided_regex</c>): the pattern's automaton
/// (<see cref="StringPattern"/>) stepped a character at a time as the UTF-8 bytes come, each byte of a character taken only
/// where some character it can begin or go on may come next. The answer may end where the pattern matches, and must once
/// nothing more can.
/// </summary>
public struct TextPatternPrefix : ITextAutomaton
{
#pragma warning disable IDE0044 // Feed changes these: the state is a value copied per token tried.
    private StringPattern _pattern;
    private PatternState? _state;
    private Utf8Cursor _character;
#pragma warning restore IDE0044

    /// <summary>The state before the answer's first byte.</summary>
    internal static TextPatternPrefix Start(StringPattern pattern) => new() { _pattern = pattern, _state = pattern.Begin };

    /// <summary>
    /// A regular expression as vLLM takes it (the whole answer must match: a leading <c>^</c> and trailing <c>$</c> are
    /// implied and may be written) as a pattern; one <see cref="StringPattern"/> does not take is an ArgumentException
    /// saying what in it and where.
    /// </summary>
    public static TextPatternPrefix Start(string regex)
    {
        ArgumentNullException.ThrowIfNull(regex);
        string inner = regex.StartsWith('^') ? regex[1..] : regex;
        if (inner.EndsWith('$') && !inner.EndsWith("\\$", StringComparison.Ordinal))
        {
            inner = inner[..^1];
        }

        return Start(StringPattern.Parse($"^(?:{inner})$"));
    }

    public bool Feed(byte b)
    {
        if (_state is null)
        {
            return false;
        }

        int codePoint = _character.Take(b);
        return codePoint != Utf8Cursor.Refused && (codePoint == Utf8Cursor.Partial ? Partly() : Step(codePoint));
    }

    public readonly string KeyFor(int tokenBytes) => $"{_state?.Key}.{_character.Key}";

    /// <summary>The text so far matches (and no character is half written).</summary>
    public readonly bool CanEnd => !_character.Partway && _state is { Matches: true };

    /// <summary>The text so far matches and no character can follow.</summary>
    public readonly bool Complete => CanEnd && _state!.States.Length == 0;

    /// <summary>A whole character through the pattern (<see cref="StringPattern.StepCharacter"/>).</summary>
    private bool Step(int codePoint)
    {
        _state = _pattern.StepCharacter(_state!, codePoint);
        return _state is not null;
    }

    /// <summary>A character partly written: some character its remaining bytes can make may come next.</summary>
    private readonly bool Partly()
    {
        (int first, int last) = _character.Reach();
        return first > 0xFFFF ? _pattern.AllowsPastBmp(_state!, first, last) : _pattern.Allows(_state!, first, last);
    }
}
