using System.Collections.Concurrent;
using System.Globalization;

namespace QwenSharp.Sampling;

/// <summary>Where a string stands in its <see cref="StringPattern"/>: the automaton's states it may be in, and whether the text so far matches.</summary>
internal sealed class PatternState(int[] states, bool matches)
{
    public int[] States { get; } = states;

    public bool Matches { get; } = matches;

    public string Key { get; } = (matches ? "m" : "") + string.Join(',', states);
}

/// <summary>
/// A JSON schema's <c>pattern</c> (an ECMA-262 regular expression, found anywhere in the string unless anchored with
/// <c>^</c> and <c>$</c>) or <c>format</c> (<c>date</c>, <c>time</c>, <c>date-time</c>, <c>uuid</c>), as an automaton over
/// UTF-16 code units, as ECMAScript's and .NET's expressions see a string (Thompson's construction), that
/// <see cref="JsonScalar"/> steps a character at a time. Every state it
/// keeps can still reach a match, so a string never enters one it cannot finish. It takes literals, <c>.</c>, classes
/// (<c>[a-z]</c>, <c>[^...]</c>, <c>\d \w \s</c> and their negations, each kept to what both ECMAScript and .NET match,
/// <see cref="ClassEscapes"/>), groups (<c>(...)</c>,
/// <c>(?:...)</c>, <c>(?&lt;name&gt;...)</c>), <c>|</c>, and <c>* + ? {n} {n,} {n,m}</c> (lazy or not: the set of strings is
/// the same); lookarounds, back-references, word boundaries and anchors inside the pattern are refused by name.
/// </summary>
internal sealed class StringPattern
{
    private const int MaxStates = 4096;
    private const int MaxStepsKept = 1 << 20;

    private static readonly CharacterSet s_any = CharacterSet.Of((0, CharacterSet.MaxUnit));

    // '.' is any character but a line terminator.
    private static readonly CharacterSet s_dot = CharacterSet.Of((0, '\n' - 1), ('\n' + 1, '\r' - 1), ('\r' + 1, 0x2027), (0x202A, 0xFFFF));

    /// <summary>
    /// The formats kept, as patterns: every date a calendar has (29 February in leap years only, years 0001-9999), times
    /// to the 100 ns .NET keeps, no leap second, offsets within the ±14:00 .NET takes. A time has no offset (.NET's TimeOnly and pydantic's time read it so; RFC
    /// 3339's full-time would want one); a date-time has one, as RFC 3339 asks.
    /// </summary>
    private static readonly Dictionary<string, string> s_formats = new(StringComparer.Ordinal)
    {
        ["date"] = $"^{Date}$",
        ["time"] = $"^{Time}$",
        ["date-time"] = $"^{Date}T{Time}(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))$",
        ["uuid"] = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        ["ipv4"] = $"^{Ipv4}$",
        ["ipv6"] = $"^({Ipv6})$",
        ["hostname"] = $"^{Hostname}$",
        ["email"] = $"^{Atom}(\\.{Atom})*@({Label}\\.)+[A-Za-z]{{2,63}}$",
        ["duration"] = $"^P({DurationDate}({DurationTime})?|{DurationTime}|[0-9]+W)$",
    };

    /// <summary>The most characters a format's strings have (RFC 1123's hostname, RFC 5321's address), held beside its pattern.</summary>
    private static readonly Dictionary<string, int> s_formatLengths = new(StringComparer.Ordinal) { ["hostname"] = 253, ["email"] = 254 };

    /// <summary>Each format's automaton, built once and shared (its kept steps with it).</summary>
    private static readonly ConcurrentDictionary<string, StringPattern> s_formatPatterns = new(StringComparer.Ordinal);

    private const string Year = "([0-9]{3}[1-9]|[0-9]{2}[1-9][0-9]|[0-9][1-9][0-9]{2}|[1-9][0-9]{3})";
    private const string LeapYear = "([0-9]{2}(0[48]|[2468][048]|[13579][26])|([02468][48]|[13579][26]|[2468]0)00)";
    private const string Date = "(" + Year + "-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))|"
        + LeapYear + "-02-29)";
    private const string Time = "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,7})?";

    // RFC 2673's dotted quad (no leading zeros), and RFC 3986's IPv6address, its last 32 bits two groups or a quad.
    private const string Octet = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])";
    private const string Ipv4 = Octet + "(\\." + Octet + "){3}";
    private const string H16 = "[0-9a-fA-F]{1,4}";
    private const string Ls32 = "(" + H16 + ":" + H16 + "|" + Ipv4 + ")";
    private const string Ipv6 = "(" + H16 + ":){6}" + Ls32 + "|::(" + H16 + ":){5}" + Ls32 + "|(" + H16 + ")?::(" + H16 + ":){4}" + Ls32
        + "|((" + H16 + ":){0,1}" + H16 + ")?::(" + H16 + ":){3}" + Ls32 + "|((" + H16 + ":){0,2}" + H16 + ")?::(" + H16 + ":){2}" + Ls32
        + "|((" + H16 + ":){0,3}" + H16 + ")?::" + H16 + ":" + Ls32 + "|((" + H16 + ":){0,4}" + H16 + ")?::" + Ls32
        + "|((" + H16 + ":){0,5}" + H16 + ")?::" + H16 + "|((" + H16 + ":){0,6}" + H16 + ")?::";

    // RFC 1123's host names: labels of letters, digits and inner hyphens, 63 at most. An address: a dot-atom (RFC 5322) at a
    // domain of two labels or more, its last of letters, as address validators (JsonSchema.Net's, pydantic's) want it.
    private const string Label = "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
    private const string Hostname = Label + "(\\." + Label + ")*";
    private const string Atom = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+";

    // RFC 3339's duration (appendix A): P, then years, months, days and a time, each unit following the one before, or weeks.
    private const string DurationDate = "([0-9]+Y([0-9]+M([0-9]+D)?)?|[0-9]+M([0-9]+D)?|[0-9]+D)";
    private const string DurationTime = "T([0-9]+H([0-9]+M([0-9]+S)?)?|[0-9]+M([0-9]+S)?|[0-9]+S)";

    // The automaton: a state with a label steps on a code point in it to its one next state; one without steps on nothing to its next states.
    private readonly List<CharacterSet?> _labels = [];
    private readonly List<List<int>> _next = [];
    private readonly int _accept;
    private readonly bool[] _live;
    private readonly ConcurrentDictionary<(PatternState, int), PatternState?> _steps = new();
    private readonly ConcurrentDictionary<string, PatternState> _states = new(StringComparer.Ordinal);
    private int _stepsKept;

    // For strings held to a length as well (FinishesWithin): each state's steps on any character and on several, each
    // labelled state's states after its character, and the fewest characters from a labelled state (its own included) to
    // a match.
    private readonly ConcurrentDictionary<PatternState, PatternState?> _anySteps = new();
    private readonly ConcurrentDictionary<(PatternState, int), PatternState?> _ahead = new();
    private int _aheadKept;
    private readonly Lazy<PatternState?[]> _after;
    private readonly Lazy<int[]> _shortest;
    private readonly Lazy<int> _longestShortest;

    private StringPattern(Node pattern)
    {
        (int start, int end) = Build(pattern);
        _accept = end;
        _live = Live();
        Begin = Closure([start]) ?? throw new ArgumentException("the pattern matches no string");
        _states[Begin.Key] = Begin;
        _after = new Lazy<PatternState?[]>(() => [.. Enumerable.Range(0, _labels.Count).Select(s => _labels[s] is null || !_live[s] ? null : Closure([.. _next[s]]) is { } after ? Interned(after) : null)]);
        _shortest = new Lazy<int[]>(Shortest);
        _longestShortest = new Lazy<int>(() => _shortest.Value.Where(d => d < int.MaxValue).DefaultIfEmpty(0).Max());
    }

    /// <summary>Before the string's first character.</summary>
    public PatternState Begin { get; }

    /// <summary>The pattern, or an <see cref="ArgumentException"/> saying what in it is not supported and where.</summary>
    public static StringPattern Parse(string pattern) => new(new Parser(pattern).Whole());

    private static readonly Lazy<StringPattern> s_base64 = new(() => Parse("^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"));

    /// <summary>RFC 4648's base64, padded (<c>contentEncoding: base64</c>, .NET's [Base64String]).</summary>
    public static StringPattern Base64 => s_base64.Value;

    /// <summary>The most characters a <c>format</c>'s strings have, where its pattern does not say (hostname, email), or null.</summary>
    public static int? MaxLengthOf(string format) => s_formatLengths.TryGetValue(format, out int most) ? most : null;

    /// <summary>The pattern a <c>format</c> keeps, or null for a format that is only an annotation here (uri, ...).</summary>
    public static StringPattern? ForFormat(string format) =>
        s_formats.TryGetValue(format, out string? pattern) ? s_formatPatterns.GetOrAdd(format, _ => Parse(pattern)) : null;

    /// <summary>
    /// The state after the UTF-16 code unit <paramref name="codePoint"/>, or null when no match can go on with it. Steps
    /// are kept (states are one object per key), as a token mask steps every token of the vocabulary from one state:
    /// 400 ms a mask unkept on Qwen2's vocabulary.
    /// </summary>
    public PatternState? Step(PatternState state, int codePoint)
    {
        if (_steps.TryGetValue((state, codePoint), out PatternState? known))
        {
            return known;
        }

        PatternState? next = Unkept(state, codePoint);
        next = next is null ? null : _states.GetOrAdd(next.Key, next);
        // (ConcurrentDictionary.Count takes every lock: the steps are counted here.)
        if (Interlocked.Increment(ref _stepsKept) >= MaxStepsKept)
        {
            _steps.Clear();
            _stepsKept = 0;
        }

        _steps[(state, codePoint)] = next;
        return next;
    }

    /// <summary>
    /// The state after a whole character, stepped as its UTF-16 code units (a pattern is an ECMAScript and .NET regular
    /// expression, which sees a character past U+FFFF as its two surrogates: <c>^.$</c> does not match an emoji); null
    /// when no match can go on with it.
    /// </summary>
    public PatternState? StepCharacter(PatternState state, int codePoint)
    {
        Span<char> units = stackalloc char[2];
        PatternState? at = state;
        foreach (char unit in units[..new System.Text.Rune(codePoint).EncodeToUtf16(units)])
        {
            at = at is null ? null : Step(at, unit);
        }

        return at;
    }

    private PatternState? Unkept(PatternState state, int codePoint)
    {
        var next = new List<int>();
        foreach (int s in state.States)
        {
            if (_labels[s]!.Contains(codePoint))
            {
                next.AddRange(_next[s]);
            }
        }

        return Closure(next);
    }

    /// <summary>Whether some code unit from <paramref name="first"/> to <paramref name="last"/> can come next (a character partly written).</summary>
    public bool Allows(PatternState state, int first, int last)
    {
        foreach (int s in state.States)
        {
            if (_labels[s]!.Meets(first, last))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Whether some character from <paramref name="first"/> to <paramref name="last"/>, all past U+FFFF (a four-byte
    /// character partly written), can come next: its high surrogate, then its low one. High surrogates that the same
    /// states take lead to the same state, so each such group is stepped once.
    /// </summary>
    public bool AllowsPastBmp(PatternState state, int first, int last)
    {
        (char highFirst, char lowOfFirst) = Surrogates(first);
        (char highLast, char lowOfLast) = Surrogates(last);
        (int lowFirst, int lowLast) = highFirst == highLast ? (lowOfFirst, lowOfLast) : (0xDC00, 0xDFFF);
        var tried = new HashSet<string>();
        for (int high = highFirst; high <= highLast; high++)
        {
            string takers = string.Join(',', state.States.Where(s => _labels[s]!.Contains(high)));
            if (takers.Length > 0 && tried.Add(takers) && Step(state, high) is { } after && Allows(after, lowFirst, lowLast))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Whether a string at <paramref name="state"/> can still match in <paramref name="least"/> to <paramref name="most"/>
    /// more characters of the Basic Multilingual Plane (a string held to a length as well: <see cref="JsonScalar"/> writes
    /// no others there, so a character counts once for its length and once for the pattern). After exactly
    /// <paramref name="least"/> characters, any of them, the string stands in some set of states; from there any path to a
    /// match no longer than what is left will do, so it is the shortest that counts.
    /// </summary>
    public bool FinishesWithin(PatternState state, int least, int most) =>
        least <= most && Ahead(state, least) is { } at && Shortest(at) is int fewest && fewest != int.MaxValue && most - least >= fewest;

    /// <summary>
    /// The states after <paramref name="steps"/> characters, any of them (null when none gets that far). Kept for every
    /// state and count on the way: a mask's tokens all start from one state and count, and their walks soon meet.
    /// </summary>
    private PatternState? Ahead(PatternState state, int steps)
    {
        var path = new List<PatternState>();
        PatternState? at = state;
        int left = steps;
        PatternState? known = null;
        bool found = false;
        while (left > 0 && at is not null && !(found = _ahead.TryGetValue((at, left), out known)))
        {
            path.Add(at);
            at = AnyStep(at);
            left--;
        }

        PatternState? result = found ? known : at;
        if (Interlocked.Add(ref _aheadKept, path.Count) >= MaxStepsKept)
        {
            _ahead.Clear();
            _aheadKept = 0;
        }

        for (int i = 0; i < path.Count; i++)
        {
            _ahead[(path[i], steps - i)] = result;
        }

        return result;
    }

    /// <summary>
    /// Whether some character of the Basic Multilingual Plane from <paramref name="first"/> to <paramref name="last"/> (a
    /// character partly written) can come next and leave a string that can match in <paramref name="least"/> to
    /// <paramref name="most"/> more (<see cref="FinishesWithin"/>). A character's next states are the union of what each
    /// state that takes it steps to, and a union can finish when one of its parts can, so each state is tried alone.
    /// </summary>
    public bool ContinuesWithin(PatternState state, int first, int last, int least, int most)
    {
        foreach (int s in state.States)
        {
            CharacterSet label = _labels[s]!;
            bool takes = label.Meets(first, Math.Min(last, 0xD7FF)) || label.Meets(Math.Max(first, 0xE000), last);
            if (takes && _after.Value[s] is { } after && FinishesWithin(after, least, most))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>The most characters <see cref="Shortest(PatternState)"/> can be from a live state (a string held to a length keys its masks by no more).</summary>
    public int LongestShortest => _longestShortest.Value;

    /// <summary>The fewest characters of the Basic Multilingual Plane from <paramref name="state"/> to a match (int.MaxValue: none).</summary>
    private int Shortest(PatternState state)
    {
        int fewest = state.Matches ? 0 : int.MaxValue;
        foreach (int s in state.States)
        {
            fewest = Math.Min(fewest, _shortest.Value[s]);
        }

        return fewest;
    }

    /// <summary>The states after any character of the Basic Multilingual Plane, but the surrogates; null when none steps.</summary>
    private PatternState? AnyStep(PatternState state)
    {
        if (_anySteps.TryGetValue(state, out PatternState? known))
        {
            return known;
        }

        var next = new List<int>();
        foreach (int s in state.States.Where(Writable))
        {
            next.AddRange(_next[s]);
        }

        PatternState? after = Closure(next) is { } found ? Interned(found) : null;
        _anySteps[state] = after;
        return after;
    }

    /// <summary>Whether a labelled state takes some character of the Basic Multilingual Plane that is not a surrogate.</summary>
    private bool Writable(int s) => _labels[s]!.Meets(0, 0xD7FF) || _labels[s]!.Meets(0xE000, 0xFFFF);

    private PatternState Interned(PatternState state) => _states.GetOrAdd(state.Key, state);

    /// <summary>
    /// Each labelled state's fewest characters to a match, its own first (breadth first, backwards from the states whose
    /// character can end the string); int.MaxValue for unlabelled states and those with none.
    /// </summary>
    private int[] Shortest()
    {
        int[] fewest = new int[_labels.Count];
        Array.Fill(fewest, int.MaxValue);
        var before = new List<int>[_labels.Count];
        var queue = new Queue<int>();
        for (int s = 0; s < _labels.Count; s++)
        {
            if (_labels[s] is null || !Writable(s) || _after.Value[s] is not { } after)
            {
                continue;
            }

            foreach (int t in after.States)
            {
                (before[t] ??= []).Add(s);
            }

            if (after.Matches)
            {
                fewest[s] = 1;
                queue.Enqueue(s);
            }
        }

        while (queue.Count > 0)
        {
            int t = queue.Dequeue();
            foreach (int s in before[t] ?? [])
            {
                if (fewest[s] == int.MaxValue)
                {
                    fewest[s] = fewest[t] + 1;
                    queue.Enqueue(s);
                }
            }
        }

        return fewest;
    }

    private static (char High, char Low) Surrogates(int codePoint)
    {
        Span<char> units = stackalloc char[2];
        new System.Text.Rune(codePoint).EncodeToUtf16(units);
        return (units[0], units[1]);
    }

    /// <summary>The labelled states reached from <paramref name="states"/> by unlabelled steps, those that can still reach a match; null when none can and none matches.</summary>
    private PatternState? Closure(List<int> states)
    {
        var seen = new HashSet<int>();
        var stack = new Stack<int>(states);
        while (stack.Count > 0)
        {
            int s = stack.Pop();
            if (!seen.Add(s) || _labels[s] is not null)
            {
                continue;
            }

            foreach (int n in _next[s])
            {
                stack.Push(n);
            }
        }

        int[] labelled = [.. seen.Where(s => _labels[s] is not null && _live[s]).Order()];
        bool matches = seen.Contains(_accept);
        return labelled.Length == 0 && !matches ? null : new PatternState(labelled, matches);
    }

    /// <summary>The states from which the accepting one can be reached.</summary>
    private bool[] Live()
    {
        var before = new List<int>[_labels.Count];
        for (int s = 0; s < _labels.Count; s++)
        {
            // A label no character can take leads nowhere.
            if (_labels[s] is { IsEmpty: true })
            {
                continue;
            }

            foreach (int n in _next[s])
            {
                (before[n] ??= []).Add(s);
            }
        }

        bool[] live = new bool[_labels.Count];
        var stack = new Stack<int>([_accept]);
        while (stack.Count > 0)
        {
            int s = stack.Pop();
            if (live[s])
            {
                continue;
            }

            live[s] = true;
            foreach (int p in before[s] ?? [])
            {
                stack.Push(p);
            }
        }

        return live;
    }

    private int NewState(CharacterSet? label)
    {
        if (_labels.Count == MaxStates)
        {
            throw new ArgumentException($"the pattern is too large (more than {MaxStates} states once its repeats are written out)");
        }

        _labels.Add(label);
        _next.Add([]);
        return _labels.Count - 1;
    }

    /// <summary>Thompson's construction: the pattern's start and end states, the end with no next states yet.</summary>
    private (int Start, int End) Build(Node node)
    {
        switch (node)
        {
            case Chars chars:
            {
                int start = NewState(chars.Set), end = NewState(null);
                _next[start].Add(end);
                return (start, end);
            }

            case Sequence sequence:
            {
                int start = NewState(null), end = start;
                foreach (Node part in sequence.Parts)
                {
                    (int s, int e) = Build(part);
                    _next[end].Add(s);
                    end = e;
                }

                return (start, end);
            }

            case Alternatives alternatives:
            {
                int start = NewState(null), end = NewState(null);
                foreach (Node choice in alternatives.Choices)
                {
                    (int s, int e) = Build(choice);
                    _next[start].Add(s);
                    _next[e].Add(end);
                }

                return (start, end);
            }

            default:
            {
                // x{n,m}: n copies, then m - n optional ones (or one repeated, when m is unbounded).
                var repeat = (Repeat)node;
                int start = NewState(null), end = start;
                for (int i = 0; i < repeat.Least; i++)
                {
                    (int s, int e) = Build(repeat.Body);
                    _next[end].Add(s);
                    end = e;
                }

                int last = NewState(null);
                if (repeat.Most < 0)
                {
                    (int s, int e) = Build(repeat.Body);
                    _next[end].Add(s);
                    _next[end].Add(last);
                    _next[e].Add(s);
                    _next[e].Add(last);
                    return (start, last);
                }

                for (int i = repeat.Least; i < repeat.Most; i++)
                {
                    (int s, int e) = Build(repeat.Body);
                    _next[end].Add(s);
                    _next[end].Add(last);
                    end = e;
                }

                _next[end].Add(last);
                return (start, last);
            }
        }
    }

    private abstract record Node;

    private sealed record Chars(CharacterSet Set) : Node;

    private sealed record Sequence(IReadOnlyList<Node> Parts) : Node;

    private sealed record Alternatives(IReadOnlyList<Node> Choices) : Node;

    private sealed record Repeat(Node Body, int Least, int Most) : Node;

    /// <summary>A recursive-descent reader of the pattern's text; errors name the character's position.</summary>
    private sealed class Parser(string text)
    {
        private const int MaxRepeat = 1000;

        /// <summary>The deepest groups may nest: the parser and the automaton's construction recurse per group.</summary>
        private const int MaxNesting = 256;
        private int _at;
        private int _nesting;

        public Node Whole()
        {
            // Anchors only around the whole pattern; without one, the match may begin (or end) anywhere.
            bool start = text.StartsWith('^');
            _at = start ? 1 : 0;
            Node body = Alternation();
            bool end = _at < text.Length && text[_at] == '$' && _at == text.Length - 1;
            if (end)
            {
                _at++;
            }

            if (_at < text.Length)
            {
                throw Error(text[_at] == ')' ? "a ')' without its '('" : $"'{text[_at]}' is not supported here");
            }

            if ((start || end) && body is Alternatives)
            {
                throw Error("'^' or '$' beside a '|' at the top: put the alternatives in a group, ^(a|b)$", 0);
            }

            var anything = new Repeat(new Chars(s_any), 0, -1);
            return new Sequence([.. start ? [] : new[] { anything }, body, .. end ? [] : new[] { anything }]);
        }

        private ArgumentException Error(string message, int? at = null) =>
            new($"{message} (at character {(at ?? _at) + 1} of the pattern)");

        private bool Next(char c)
        {
            if (_at < text.Length && text[_at] == c)
            {
                _at++;
                return true;
            }

            return false;
        }

        private Node Alternation()
        {
            var choices = new List<Node> { Concatenation() };
            while (Next('|'))
            {
                choices.Add(Concatenation());
            }

            return choices.Count == 1 ? choices[0] : new Alternatives(choices);
        }

        private Node Concatenation()
        {
            var parts = new List<Node>();
            while (_at < text.Length && text[_at] is not ('|' or ')') && !(text[_at] == '$' && _at == text.Length - 1))
            {
                parts.Add(Quantified(Atom()));
            }

            return new Sequence(parts);
        }

        private Node Quantified(Node atom)
        {
            while (_at < text.Length)
            {
                int at = _at;
                (int least, int most) = text[_at] switch
                {
                    '*' => (0, -1),
                    '+' => (1, -1),
                    '?' => (0, 1),
                    '{' when Bounds() is { } bounds => bounds,
                    _ => (-1, -1),
                };
                if (least < 0)
                {
                    return atom;
                }

                if (text[at] != '{')
                {
                    _at++;
                }

                Next('?');   // lazy: the same strings
                if (least > MaxRepeat || most > MaxRepeat)
                {
                    throw Error($"a repeat of more than {MaxRepeat}", at);
                }

                atom = new Repeat(atom, least, most);
            }

            return atom;
        }

        /// <summary>{n}, {n,} or {n,m} at the position (then past it), or null where the brace is a plain character.</summary>
        private (int, int)? Bounds()
        {
            int close = text.IndexOf('}', _at);
            string[] parts = close < 0 ? [] : text[(_at + 1)..close].Split(',');
            if (parts.Length is < 1 or > 2 || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int least))
            {
                return null;
            }

            int most = least;
            if (parts.Length == 2 && !(parts[1].Length == 0 ? (most = -1) < 0 : int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out most)))
            {
                return null;
            }

            if (most >= 0 && most < least)
            {
                throw Error($"{{{least},{most}}}: the least is more than the most");
            }

            _at = close + 1;
            return (least, most);
        }

        private Node Atom()
        {
            int at = _at;
            char c = text[_at++];
            switch (c)
            {
                case '(':
                {
                    if (Next('?'))
                    {
                        if (Next('<') && _at < text.Length && text[_at] is not ('=' or '!'))
                        {
                            int close = text.IndexOf('>', _at);
                            _at = close < 0 ? throw Error("a group name without its '>'", at) : close + 1;
                        }
                        else if (!Next(':'))
                        {
                            throw Error("lookarounds are not supported", at);
                        }
                    }

                    if (++_nesting > MaxNesting)
                    {
                        throw Error($"groups nest deeper than {MaxNesting}", at);
                    }

                    Node inner = Alternation();
                    _nesting--;
                    return Next(')') ? inner : throw Error("a '(' without its ')'", at);
                }

                case '[':
                    return new Chars(Class(at));
                case '.':
                    return new Chars(s_dot);
                case '\\':
                    return new Chars(Escape(inClass: false).Narrow);
                case '^' or '$':
                    throw Error($"'{c}' is supported only at the pattern's start ('^') or end ('$')", at);
                case '*' or '+' or '?':
                    throw Error($"'{c}' repeats nothing", at);
                case ')':
                    throw Error("a ')' without its '('", at);
                default:
                    return new Chars(CharacterSet.Single(c));
            }
        }

        /// <summary>A class's members: those both engines match, or for <c>[^...]</c> those neither counts among its members.</summary>
        private CharacterSet Class(int at)
        {
            bool negated = Next('^');
            var set = ClassEscapes.Members.Exactly(CharacterSet.Of());
            bool first = true;
            while (_at < text.Length && (text[_at] != ']' || first))
            {
                first = false;
                ClassEscapes.Members low = Member();
                if (_at + 1 < text.Length && text[_at] == '-' && text[_at + 1] != ']')
                {
                    _at++;
                    ClassEscapes.Members high = Member();
                    int from = Lone(low, at), to = Lone(high, at);
                    set = set.Union(ClassEscapes.Members.Exactly(from <= to ? CharacterSet.Of((from, to)) : throw Error("a range whose end comes before its start", at)));
                }
                else
                {
                    set = set.Union(low);
                }
            }

            if (!Next(']'))
            {
                throw Error("a '[' without its ']'", at);
            }

            return negated ? set.Complement().Narrow : set.Narrow;
        }

        private ClassEscapes.Members Member()
        {
            char c = text[_at++];
            return c == '\\' ? Escape(inClass: true) : ClassEscapes.Members.Exactly(CharacterSet.Single(c));
        }

        private int Lone(ClassEscapes.Members set, int at) =>
            set.Narrow.OnlyMember is int member && set.Wide.OnlyMember == member ? member : throw Error("a class escape (\\d, \\w, ...) as a range's end", at);

        private ClassEscapes.Members Escape(bool inClass)
        {
            int at = _at - 1;
            if (_at >= text.Length)
            {
                throw Error("a '\\' at the end", at);
            }

            char c = text[_at++];
            return c switch
            {
                'd' => ClassEscapes.Digits,
                'D' => ClassEscapes.Digits.Complement(),
                'w' => ClassEscapes.Word,
                'W' => ClassEscapes.Word.Complement(),
                's' => ClassEscapes.Space,
                'S' => ClassEscapes.Space.Complement(),
                _ => ClassEscapes.Members.Exactly(Character(c, inClass, at)),
            };
        }

        private CharacterSet Character(char c, bool inClass, int at) => c switch
        {
            'n' => CharacterSet.Single('\n'),
            't' => CharacterSet.Single('\t'),
            'r' => CharacterSet.Single('\r'),
            'f' => CharacterSet.Single('\f'),
            'v' => CharacterSet.Single('\v'),
            '0' => CharacterSet.Single(0),
            'b' when inClass => CharacterSet.Single('\b'),
            'u' or 'x' => CharacterSet.Single(Hex(c == 'u' ? 4 : 2, at)),
            _ when !char.IsAsciiLetterOrDigit(c) => CharacterSet.Single(c),
            _ => throw Error($"'\\{c}' is not supported", at),
        };

        private int Hex(int digits, int at)
        {
            if (_at + digits > text.Length || !int.TryParse(text.AsSpan(_at, digits), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int value))
            {
                throw Error($"an escape needs {digits} hex digits", at);
            }

            _at += digits;
            return value;
        }
    }
}
