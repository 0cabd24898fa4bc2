using System.Globalization;
using System.Text;

namespace QwenSharp.Sampling;

/// <summary>What an element of a compiled grammar is (<see cref="GrammarElement"/>).</summary>
internal enum GrammarOp : byte
{
    /// <summary>The end of a rule's last alternative.</summary>
    End,

    /// <summary>The end of an alternative that another of the same rule follows.</summary>
    Alternative,

    /// <summary>A reference to the rule numbered <see cref="GrammarElement.Value"/>.</summary>
    Rule,

    /// <summary>One character of the set numbered <see cref="GrammarElement.Value"/>.</summary>
    Characters,

    /// <summary>The token numbered <see cref="GrammarElement.Value"/>, whole (<c>&lt;[id]&gt;</c>, <c>&lt;text&gt;</c>).</summary>
    Token,

    /// <summary>Any one token but the one numbered <see cref="GrammarElement.Value"/> (<c>!&lt;[id]&gt;</c>, <c>!&lt;text&gt;</c>).</summary>
    TokenNot,
}

/// <summary>One element of a grammar's rules: a rule reference, a character set or a token, or the end of an alternative.</summary>
internal readonly record struct GrammarElement(GrammarOp Op, int Value);

/// <summary>
/// GBNF text read into rules, as llama.cpp's grammar parser reads it (<c>grammars/README.md</c>): <c>name ::= ...</c>
/// rules of alternatives (<c>|</c>) of sequences of strings (<c>"..."</c>), character classes (<c>[a-z]</c>,
/// <c>[^...]</c>), <c>.</c> (any character), rule names and groups (<c>(...)</c>), each symbol repeated by <c>*</c>,
/// <c>+</c>, <c>?</c>, <c>{m}</c>, <c>{m,}</c> or <c>{m,n}</c>; escapes <c>\x.. \u.... \U........ \t \r \n \\ \" \[ \] \-</c>;
/// <c>#</c> comments; a newline ends a rule except inside parentheses or after <c>|</c>. Repetitions and groups become
/// rules of their own, as llama.cpp writes them (<c>S*</c> is <c>S' ::= S S' |</c>). Stricter than llama.cpp where it
/// would go on quietly: a rule defined twice, an empty or backwards class, a repetition count over
/// <see cref="MaxRepetitions"/> (llama.cpp reads one over 2000 as unbounded). Token references, as llama.cpp has them
/// since its grammars took tokens (ggml-org/llama.cpp#17816): <c>&lt;[id]&gt;</c> a token by its id, <c>&lt;text&gt;</c>
/// the one token whose text that is, brackets included (<c>&lt;|im_end|&gt;</c>), and either after <c>!</c> any one token
/// but that one; the model's vocabulary says which token a text is (<c>tokenOf</c>) and how many there are. Errors say
/// what and where (line, column).
/// </summary>
internal sealed class GbnfParser
{
    /// <summary>The most a repetition count may be.</summary>
    public const int MaxRepetitions = 10_000;

    /// <summary>The most elements the rules may hold once repetitions are written out.</summary>
    private const int MaxElements = 1 << 22;

    /// <summary>The deepest groups may nest (each is a level of the parser's recursion).</summary>
    public const int MaxNesting = 256;

    private const int LastCodePoint = 0x10FFFF;

    private readonly string _text;
    private readonly List<List<List<GrammarElement>>?> _rules = [];
    private readonly List<string> _names = [];
    private readonly List<int> _owners = [];
    private readonly List<int> _usedAt = [];
    private readonly List<int> _definedAt = [];
    private readonly Dictionary<string, int> _ids = new(StringComparer.Ordinal);
    private readonly List<int[]> _sets = [];
    private readonly Dictionary<string, int> _setIds = new(StringComparer.Ordinal);
    private int _at;
    private long _elements;
    private int _nesting;

    private readonly Func<string, int?>? _tokenOf;
    private readonly int _vocabularySize;

    private GbnfParser(string text, Func<string, int?>? tokenOf, int vocabularySize) => (_text, _tokenOf, _vocabularySize) = (text, tokenOf, vocabularySize);

    /// <summary>Whether some rule names a token (<see cref="GrammarOp.Token"/>, <see cref="GrammarOp.TokenNot"/>).</summary>
    public bool HasTokens { get; private set; }

    /// <summary>Each rule's alternatives, each a sequence of elements.</summary>
    public IReadOnlyList<List<List<GrammarElement>>> Rules => [.. _rules.Select(r => r!)];

    /// <summary>Each rule's name (a group's or repetition's: its rule's, with a number).</summary>
    public IReadOnlyList<string> Names => _names;

    /// <summary>The named rule each rule was written in (itself for a named one).</summary>
    public IReadOnlyList<int> Owners => _owners;

    /// <summary>The character sets, each as sorted, disjoint, inclusive code point ranges: first, last, first, last, ...</summary>
    public IReadOnlyList<int[]> Sets => _sets;

    /// <summary>The number of the rule named <paramref name="name"/>, if the grammar has it.</summary>
    public int? IdOf(string name) => _ids.TryGetValue(name, out int id) ? id : null;

    /// <summary>
    /// Reads <paramref name="text"/>; what is wrong with it is an ArgumentException saying what and where. Token references
    /// need a vocabulary: <paramref name="tokenOf"/> gives the one token a text is (null where it is none or several),
    /// <paramref name="vocabularySize"/> the count of ids; without them a reference is refused.
    /// </summary>
    public static GbnfParser Parse(string text, Func<string, int?>? tokenOf = null, int vocabularySize = 0)
    {
        var parser = new GbnfParser(text, tokenOf, vocabularySize);
        parser.ParseRules();
        return parser;
    }

    private void ParseRules()
    {
        SkipSpace(newlines: true);
        if (_at == _text.Length)
        {
            throw new ArgumentException("the grammar has no rules: give at least 'root ::= ...'");
        }

        while (_at < _text.Length)
        {
            ParseRule();
        }

        for (int id = 0; id < _rules.Count; id++)
        {
            if (_rules[id] is null)
            {
                throw Error(_usedAt[id], $"rule '{_names[id]}' is used but never defined");
            }
        }
    }

    private void ParseRule()
    {
        int nameAt = _at;
        string name = ParseName("a rule name");
        SkipSpace(newlines: false);
        if (!_text.AsSpan(_at).StartsWith("::=", StringComparison.Ordinal))
        {
            throw Error(_at, $"expected '::=' after the rule name '{name}'");
        }

        int id = Named(name, nameAt);
        if (_definedAt[id] >= 0)
        {
            throw Error(nameAt, $"rule '{name}' is defined twice (first at {Where(_definedAt[id])})");
        }

        _definedAt[id] = nameAt;
        _at += 3;
        SkipSpace(newlines: true);
        _rules[id] = ParseAlternatives(id, nested: false);
        if (_at < _text.Length)
        {
            if (_text[_at] is not ('\r' or '\n'))
            {
                throw Error(_at, $"unexpected {Describe(_at)} in rule '{name}'");
            }

            SkipSpace(newlines: true);
        }
    }

    private List<List<GrammarElement>> ParseAlternatives(int owner, bool nested)
    {
        List<List<GrammarElement>> alternatives = [ParseSequence(owner, nested)];
        while (_at < _text.Length && _text[_at] == '|')
        {
            _at++;
            SkipSpace(newlines: true);
            alternatives.Add(ParseSequence(owner, nested));
        }

        return alternatives;
    }

    private List<GrammarElement> ParseSequence(int owner, bool nested)
    {
        var sequence = new List<GrammarElement>();
        int last = -1;  // where the last symbol's elements begin (a string is one symbol of several)
        while (_at < _text.Length)
        {
            int symbolAt = _at;
            char c = _text[_at];
            if (c == '"')
            {
                last = sequence.Count;
                _at++;
                while (true)
                {
                    if (_at >= _text.Length)
                    {
                        throw Error(symbolAt, "this string is never closed (a '\"' is missing)");
                    }

                    if (_text[_at] == '"')
                    {
                        break;
                    }

                    int codePoint = ParseCharacter();
                    sequence.Add(Characters([codePoint, codePoint]));
                }

                _at++;
                Count(sequence.Count - last);
            }
            else if (c == '[')
            {
                last = sequence.Count;
                sequence.Add(ParseClass());
                Count(1);
            }
            else if (c == '.')
            {
                last = sequence.Count;
                _at++;
                sequence.Add(Characters([0, LastCodePoint]));
                Count(1);
            }
            else if (c == '(')
            {
                if (++_nesting > MaxNesting)
                {
                    throw Error(symbolAt, $"groups nest deeper than {MaxNesting}");
                }

                _at++;
                SkipSpace(newlines: true);
                int group = Generated(owner);
                _rules[group] = ParseAlternatives(owner, nested: true);
                _nesting--;
                if (_at >= _text.Length || _text[_at] != ')')
                {
                    throw Error(_at < _text.Length ? _at : symbolAt, $"expected ')' to close the group opened at {Where(symbolAt)}");
                }

                _at++;
                last = sequence.Count;
                sequence.Add(new GrammarElement(GrammarOp.Rule, group));
                Count(1);
            }
            else if (IsNameCharacter(c))
            {
                string name = ParseName("a rule name");
                last = sequence.Count;
                sequence.Add(new GrammarElement(GrammarOp.Rule, Named(name, symbolAt)));
                Count(1);
            }
            else if (c is '*' or '+' or '?' or '{')
            {
                (int least, int? most) = ParseRepetition();
                if (last < 0)
                {
                    throw Error(symbolAt, $"'{c}' repeats nothing: it goes after a string, class, rule name or group");
                }

                Repeat(sequence, last, least, most, owner);
            }
            else if (c is '<' || (c == '!' && _at + 1 < _text.Length && _text[_at + 1] == '<'))
            {
                last = sequence.Count;
                sequence.Add(ParseToken());
                Count(1);
            }
            else
            {
                break;
            }

            SkipSpace(nested);
        }

        return sequence;
    }

    /// <summary>
    /// A token reference at the cursor: <c>&lt;[id]&gt;</c> or <c>&lt;text&gt;</c>, after an optional <c>!</c> (any token
    /// but that one). The text, brackets included, must be one token of the vocabulary.
    /// </summary>
    private GrammarElement ParseToken()
    {
        int at = _at;
        bool not = _text[_at] == '!';
        _at += not ? 2 : 1;
        int close = _text.IndexOf('>', _at);
        int newline = _text.IndexOfAny(['\r', '\n'], _at);
        if (close < 0 || (newline >= 0 && newline < close))
        {
            throw Error(at, "this token reference is never closed (a '>' is missing)");
        }

        string inside = _text[_at..close];
        _at = close + 1;
        if (inside.Length == 0)
        {
            throw Error(at, "<> names no token: write <[id]> or the token's text, <|im_end|>");
        }

        if (_tokenOf is null || _vocabularySize == 0)
        {
            throw Error(at, $"the token reference <{inside}> needs the model's vocabulary, which this grammar was read without");
        }

        int token;
        if (inside.StartsWith('[') && inside.EndsWith(']'))
        {
            if (!int.TryParse(inside.AsSpan(1, inside.Length - 2), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out token))
            {
                throw Error(at, $"<{inside}> is not a token id: write <[id]> with the id's digits");
            }
        }
        else
        {
            string text = $"<{inside}>";
            token = _tokenOf(text) ?? throw Error(at, $"{text} is not one token of this model's vocabulary: write its text as a string, \"{text}\", or name a token by its id, <[id]>");
        }

        if (token >= _vocabularySize)
        {
            throw Error(at, $"token {token} is past this model's vocabulary of {_vocabularySize} tokens");
        }

        HasTokens = true;
        return new GrammarElement(not ? GrammarOp.TokenNot : GrammarOp.Token, token);
    }

    /// <summary>
    /// The last symbol, <c>sequence[last..]</c>, repeated <paramref name="least"/> to <paramref name="most"/> times (null:
    /// no limit), written as llama.cpp does: the symbol <paramref name="least"/> times, then a rule for the rest,
    /// <c>S' ::= S S' |</c> without a limit, else a chain of <c>S'(k) ::= S S'(k-1) |</c>.
    /// </summary>
    private void Repeat(List<GrammarElement> sequence, int last, int least, int? most, int owner)
    {
        GrammarElement[] symbol = [.. sequence.Skip(last)];
        sequence.RemoveRange(last, symbol.Length);
        for (int i = 0; i < least; i++)
        {
            sequence.AddRange(symbol);
        }

        long added = (long)symbol.Length * (least - 1);
        if (most is null)
        {
            int rest = Generated(owner);
            _rules[rest] = [[.. symbol, new GrammarElement(GrammarOp.Rule, rest)], []];
            sequence.Add(new GrammarElement(GrammarOp.Rule, rest));
            added += symbol.Length + 2;
        }
        else
        {
            int? previous = null;
            for (int i = 0; i < most.Value - least; i++)
            {
                int optional = Generated(owner);
                _rules[optional] = previous is int inner ? [[.. symbol, new GrammarElement(GrammarOp.Rule, inner)], []] : [[.. symbol], []];
                previous = optional;
                added += symbol.Length + 1;
            }

            if (previous is int outer)
            {
                sequence.Add(new GrammarElement(GrammarOp.Rule, outer));
                added++;
            }
        }

        Count(added);
    }

    /// <summary><c>*</c>, <c>+</c>, <c>?</c> or <c>{m}</c>, <c>{m,}</c>, <c>{m,n}</c>: the least and most (null: no limit) times.</summary>
    private (int Least, int? Most) ParseRepetition()
    {
        int at = _at;
        char c = _text[_at++];
        if (c != '{')
        {
            return c switch { '*' => (0, null), '+' => (1, null), _ => (0, 1) };
        }

        SkipSpace(newlines: false);
        int least = ParseCount(at);
        SkipSpace(newlines: false);
        int? most = least;
        if (_at < _text.Length && _text[_at] == ',')
        {
            _at++;
            SkipSpace(newlines: false);
            most = _at < _text.Length && char.IsAsciiDigit(_text[_at]) ? ParseCount(at) : null;
            SkipSpace(newlines: false);
        }

        if (_at >= _text.Length || _text[_at] != '}')
        {
            throw Error(_at < _text.Length ? _at : at, "expected '}' to close the repetition {m}, {m,} or {m,n}");
        }

        _at++;
        if (most < least)
        {
            throw Error(at, $"the repetition {{{least},{most}}} asks for at most fewer than at least");
        }

        return (least, most);
    }

    private int ParseCount(int repetitionAt)
    {
        int start = _at;
        while (_at < _text.Length && char.IsAsciiDigit(_text[_at]))
        {
            _at++;
        }

        if (_at == start)
        {
            throw Error(_at < _text.Length ? _at : repetitionAt, "expected a number in the repetition {m}, {m,} or {m,n}");
        }

        if (!int.TryParse(_text.AsSpan(start, _at - start), NumberStyles.None, CultureInfo.InvariantCulture, out int count) || count > MaxRepetitions)
        {
            throw Error(start, $"a repetition count of {_text[start.._at]} is more than the {MaxRepetitions} taken");
        }

        return count;
    }

    /// <summary>A class, <c>[...]</c> or <c>[^...]</c>, of characters and ranges (<c>a-z</c>; a <c>-</c> first or last is itself).</summary>
    private GrammarElement ParseClass()
    {
        int openAt = _at++;
        bool negated = _at < _text.Length && _text[_at] == '^';
        _at += negated ? 1 : 0;
        var ranges = new List<(int First, int Last)>();
        while (true)
        {
            if (_at >= _text.Length)
            {
                throw Error(openAt, "this character class is never closed (a ']' is missing)");
            }

            if (_text[_at] == ']')
            {
                break;
            }

            int rangeAt = _at;
            int first = ParseCharacter(), last = first;
            if (_at + 1 < _text.Length && _text[_at] == '-' && _text[_at + 1] != ']')
            {
                _at++;
                last = ParseCharacter();
                if (last < first)
                {
                    throw Error(rangeAt, $"the range {_text[rangeAt.._at]} runs backwards");
                }
            }

            ranges.Add((first, last));
        }

        _at++;
        if (ranges.Count == 0)
        {
            throw Error(openAt, "an empty character class matches nothing");
        }

        ranges.Sort();
        var merged = new List<int>();
        foreach ((int first, int last) in ranges)
        {
            if (merged.Count > 0 && first <= merged[^1] + 1)
            {
                merged[^1] = Math.Max(merged[^1], last);
            }
            else
            {
                merged.Add(first);
                merged.Add(last);
            }
        }

        if (!negated)
        {
            return Characters([.. merged]);
        }

        var complement = new List<int>();
        int next = 0;
        for (int i = 0; i < merged.Count; i += 2)
        {
            if (merged[i] > next)
            {
                complement.Add(next);
                complement.Add(merged[i] - 1);
            }

            next = merged[i + 1] + 1;
        }

        if (next <= LastCodePoint)
        {
            complement.Add(next);
            complement.Add(LastCodePoint);
        }

        if (complement.Count == 0)
        {
            throw Error(openAt, "this negated class leaves no character");
        }

        return Characters([.. complement]);
    }

    /// <summary>One character of a string or class: itself (a surrogate pair whole) or an escape.</summary>
    private int ParseCharacter()
    {
        int at = _at;
        char c = _text[_at];
        if (c != '\\')
        {
            if (char.IsHighSurrogate(c) && _at + 1 < _text.Length && char.IsLowSurrogate(_text[_at + 1]))
            {
                _at += 2;
                return char.ConvertToUtf32(c, _text[_at - 1]);
            }

            if (char.IsSurrogate(c))
            {
                throw Error(at, "a lone UTF-16 surrogate is not a character");
            }

            _at++;
            return c;
        }

        if (_at + 1 >= _text.Length)
        {
            throw Error(at, "the grammar ends in the middle of an escape");
        }

        char kind = _text[_at + 1];
        _at += 2;
        return kind switch
        {
            'x' => ParseHex(2, at),
            'u' => ParseHex(4, at),
            'U' => ParseHex(8, at),
            't' => '\t',
            'r' => '\r',
            'n' => '\n',
            '\\' or '"' or '[' or ']' or '-' => kind,
            _ => throw Error(at, $"unknown escape '\\{kind}' (escapes are \\x.. \\u.... \\U........ \\t \\r \\n \\\\ \\\" \\[ \\] \\-)"),
        };
    }

    private int ParseHex(int digits, int escapeAt)
    {
        if (_at + digits > _text.Length
            || !int.TryParse(_text.AsSpan(_at, digits), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int value)
            || _text.AsSpan(_at, digits).ContainsAnyExcept("0123456789abcdefABCDEF"))
        {
            throw Error(escapeAt, $"'\\{_text[escapeAt + 1]}' takes {digits} hex digits");
        }

        _at += digits;
        if (value is < 0 or > LastCodePoint || (value >= 0xD800 && value <= 0xDFFF))
        {
            throw Error(escapeAt, $"{_text[escapeAt.._at]} is not a Unicode character");
        }

        return value;
    }

    private string ParseName(string what)
    {
        int start = _at;
        while (_at < _text.Length && IsNameCharacter(_text[_at]))
        {
            _at++;
        }

        if (_at == start)
        {
            throw Error(start, $"expected {what}, found {Describe(start)}");
        }

        return _text[start.._at];
    }

    /// <summary>Letters, digits, '-' (llama.cpp's) and '_' (its README's).</summary>
    private static bool IsNameCharacter(char c) => char.IsAsciiLetterOrDigit(c) || c is '-' or '_';

    /// <summary>Spaces, tabs and comments; newlines too where a rule goes on past them.</summary>
    private void SkipSpace(bool newlines)
    {
        while (_at < _text.Length)
        {
            char c = _text[_at];
            if (c == '#')
            {
                while (_at < _text.Length && _text[_at] is not ('\r' or '\n'))
                {
                    _at++;
                }
            }
            else if (c is ' ' or '\t' || (newlines && c is '\r' or '\n'))
            {
                _at++;
            }
            else
            {
                return;
            }
        }
    }

    /// <summary>The number of a named rule, numbered at its first mention.</summary>
    private int Named(string name, int at)
    {
        if (!_ids.TryGetValue(name, out int id))
        {
            id = Add(name, owner: null, at);
            _ids[name] = id;
        }

        return id;
    }

    /// <summary>A rule for a group or repetition inside <paramref name="owner"/>.</summary>
    private int Generated(int owner) => Add($"{_names[owner]}_{_rules.Count}", owner, -1);

    private int Add(string name, int? owner, int usedAt)
    {
        int id = _rules.Count;
        _rules.Add(null);
        _names.Add(name);
        _owners.Add(owner ?? id);
        _usedAt.Add(usedAt);
        _definedAt.Add(owner is null ? -1 : usedAt);
        return id;
    }

    private GrammarElement Characters(int[] ranges)
    {
        string key = string.Join(',', ranges);
        if (!_setIds.TryGetValue(key, out int id))
        {
            id = _sets.Count;
            _sets.Add(ranges);
            _setIds[key] = id;
        }

        return new GrammarElement(GrammarOp.Characters, id);
    }

    private void Count(long elements)
    {
        _elements += elements;
        if (_elements > MaxElements)
        {
            throw Error(_at - 1, $"the grammar grows past {MaxElements} elements once its repetitions are written out");
        }
    }

    private string Describe(int at) => at >= _text.Length ? "the end" : _text[at] switch
    {
        '\n' or '\r' => "a newline",
        char c => $"'{c}'",
    };

    /// <summary>"line L, column C" of an offset (both from 1).</summary>
    private string Where(int at)
    {
        int line = 1, lineStart = 0;
        for (int i = 0; i < Math.Min(at, _text.Length); i++)
        {
            if (_text[i] == '\n')
            {
                line++;
                lineStart = i + 1;
            }
        }

        return string.Create(CultureInfo.InvariantCulture, $"line {line}, column {at - lineStart + 1}");
    }

    private ArgumentException Error(int at, string message) => new($"{Where(at)}: {message}");
}
