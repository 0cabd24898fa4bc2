using System.Text;
using System.Text.Json;

namespace QwenSharp.Server.Api;

/// <summary>
/// Held tool calls (<see cref="Sampling.ToolCallPrefix"/>) streamed while the model writes them, as llama-server and vLLM
/// stream them: a call's first delta carries its id and name once its arguments open, and every later one the arguments'
/// new text, so a client sees a long call grow instead of waiting for the whole answer. Only held calls stream this way:
/// their shape is the grammar's, <c>&lt;tool_call&gt;{"name": NAME, "arguments": {...}}&lt;/tool_call&gt;</c>, so the text
/// streamed is the text <see cref="ChatJson.ToolCallBlocks"/> finds in the whole answer. Text of another shape ends the
/// streaming; the calls not yet streamed then go out whole at the end, as before.
/// </summary>
/// <param name="openToken">
/// The <c>&lt;tool_call&gt;</c> token whose writing holds a call (tool_choice auto): calls stream from the one it opens. Null
/// where the answer is held from its first token (a forced call, or calls beside a response format): calls stream from the
/// first <c>&lt;tool_call&gt;</c> in the text.
/// </param>
internal sealed class StreamedToolCalls(int? openToken)
{
    private const string Open = "<tool_call>", Close = "</tool_call>";

    private readonly List<StreamedCall> _calls = [];
    private readonly StringBuilder _name = new();
    private State _state = State.Waiting;

    /// <summary>Where the block being read begins (its &lt;tool_call&gt;), -1 until the calls start; how far the text is read, or searched while waiting.</summary>
    private int _start = -1;
    private int _read;

    /// <summary>The literal being matched, how much of it is, and the state after it.</summary>
    private string _literal = "";
    private int _matched;
    private State _afterLiteral;

    /// <summary>In the arguments: the objects and arrays open, whether in a string, and whether after a backslash (in the name too).</summary>
    private int _depth;
    private bool _inString, _escaped;

    private enum State
    {
        Waiting,
        Literal,
        BetweenCalls,
        BeforeObject,
        NameColon,
        BeforeName,
        Name,
        AfterName,
        ArgumentsColon,
        BeforeArguments,
        Arguments,
        AfterArguments,
        Stopped,
    }

    /// <summary>The calls whose first delta has gone out, in order.</summary>
    public IReadOnlyList<StreamedCall> Calls => _calls;

    /// <summary>Tells the streamer a token is about to be appended at <paramref name="at"/>: the open token starts the calls there.</summary>
    public void Token(int token, int at)
    {
        if (_state == State.Waiting && _start < 0 && openToken == token)
        {
            _start = at;
        }
    }

    /// <summary>The deltas of the answer's text since the last read (the answer only grows).</summary>
    public List<ToolCallDelta> Read(string answer)
    {
        var deltas = new List<ToolCallDelta>();
        if (_state == State.Waiting && !Started(answer))
        {
            return deltas;
        }

        var arguments = new StringBuilder();
        for (; _read < answer.Length && _state != State.Stopped; _read++)
        {
            char c = answer[_read];
            if (_state == State.Arguments)
            {
                arguments.Append(c);
                Argument(c);
            }
            else if (_state == State.BeforeArguments && c == '{')
            {
                // The arguments' opening brace: the call is to this name for sure, and its first delta goes out.
                if (!Decoded(_name.ToString(), out string name))
                {
                    _state = State.Stopped;
                    break;
                }

                Flush(deltas, arguments);
                _calls.Add(new StreamedCall(_calls.Count, name, _start));
                arguments.Append(c);
                (_depth, _inString, _escaped, _state) = (1, false, false, State.Arguments);
            }
            else
            {
                Step(c);
            }
        }

        Flush(deltas, arguments);
        return deltas;
    }

    /// <summary>Whether the calls have started (the open token written, or a first &lt;tool_call&gt; in an answer held throughout).</summary>
    private bool Started(string answer)
    {
        if (_start < 0 && openToken is null)
        {
            int at = answer.IndexOf(Open, Math.Max(0, _read - (Open.Length - 1)), StringComparison.Ordinal);
            _read = answer.Length;
            _start = at;
        }

        if (_start < 0 || answer.Length <= _start)
        {
            return false;
        }

        _read = _start;
        Expect(Open, State.BeforeObject);
        return true;
    }

    /// <summary>The arguments read this time, as the last call's delta.</summary>
    private void Flush(List<ToolCallDelta> deltas, StringBuilder arguments)
    {
        if (_calls.Count == 0 || (arguments.Length == 0 && _calls[^1].Announced))
        {
            return;
        }

        StreamedCall call = _calls[^1];
        deltas.Add(new ToolCallDelta(call.Index, call.Announced ? null : call.Name, arguments.ToString()));
        call.Announced = true;
        arguments.Clear();
    }

    /// <summary>One character of the block: the next state, or <see cref="State.Stopped"/> where it is not the grammar's shape.</summary>
    private void Step(char c)
    {
        bool space = c is ' ' or '\n' or '\r' or '\t';
        switch (_state)
        {
            case State.Literal:
                if (_matched == 0 && space && _literal != Open)
                {
                    return;
                }

                if (c != _literal[_matched])
                {
                    _state = State.Stopped;
                }
                else if (++_matched == _literal.Length)
                {
                    LiteralDone();
                }

                return;
            case State.BetweenCalls:
                if (!space)
                {
                    Expect(Open, State.BeforeObject);
                    _start = _read;
                    Step(c);
                }

                return;
            case State.BeforeObject:
                if (Expected(c, space, '{'))
                {
                    Expect("\"name\"", State.NameColon);
                }

                return;
            case State.NameColon:
                if (Expected(c, space, ':'))
                {
                    _state = State.BeforeName;
                }

                return;
            case State.BeforeName:
                if (Expected(c, space, '"'))
                {
                    _name.Clear();
                    (_escaped, _state) = (false, State.Name);
                }

                return;
            case State.Name:
                if (c == '"' && !_escaped)
                {
                    _state = State.AfterName;
                }
                else
                {
                    _escaped = c == '\\' && !_escaped;
                    _name.Append(c);
                }

                return;
            case State.AfterName:
                if (Expected(c, space, ','))
                {
                    Expect("\"arguments\"", State.ArgumentsColon);
                }

                return;
            case State.ArgumentsColon:
                if (Expected(c, space, ':'))
                {
                    _state = State.BeforeArguments;
                }

                return;
            case State.BeforeArguments:
                if (!space)
                {
                    _state = State.Stopped;    // arguments other than an object: ToolCallBlocks reads them as {}
                }

                return;
            case State.AfterArguments:
                if (Expected(c, space, '}'))
                {
                    Expect(Close, State.BetweenCalls);
                }

                return;
        }
    }

    /// <summary>A character of the arguments' object: strings, escapes and nesting followed to the object's closing brace.</summary>
    private void Argument(char c)
    {
        if (_inString)
        {
            if (_escaped)
            {
                _escaped = false;
            }
            else if (c == '\\')
            {
                _escaped = true;
            }
            else if (c == '"')
            {
                _inString = false;
            }

            return;
        }

        switch (c)
        {
            case '"':
                _inString = true;
                break;
            case '{' or '[':
                _depth++;
                break;
            case '}' or ']':
                if (--_depth == 0)
                {
                    _state = State.AfterArguments;
                }

                break;
        }
    }

    /// <summary>Whether <paramref name="c"/> is the character expected next; whitespace waits, and anything else stops the streaming.</summary>
    private bool Expected(char c, bool space, char expected)
    {
        if (c != expected && !space)
        {
            _state = State.Stopped;
        }

        return c == expected;
    }

    private void Expect(string literal, State then) => (_literal, _matched, _afterLiteral, _state) = (literal, 0, then, State.Literal);

    private void LiteralDone()
    {
        if (_literal == Close && _calls.Count > 0)
        {
            _calls[^1].End = _read + 1;
        }

        _state = _afterLiteral;
    }

    /// <summary>A name's JSON string text as the string it writes (escapes and all); false where it is not a valid one.</summary>
    private static bool Decoded(string raw, out string name)
    {
        name = "";
        try
        {
            var reader = new Utf8JsonReader(Encoding.UTF8.GetBytes($"\"{raw}\""));
            if (!reader.Read() || reader.TokenType != JsonTokenType.String)
            {
                return false;
            }

            name = reader.GetString()!;
            return true;
        }
        catch (JsonException)
        {
            return false;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }
}

/// <summary>A call streamed: its number in the answer's tool_calls, its function, and where its block lies (End -1 while open).</summary>
internal sealed class StreamedCall(int index, string name, int start)
{
    public int Index { get; } = index;

    public string Name { get; } = name;

    public int Start { get; } = start;

    public int End { get; set; } = -1;

    /// <summary>Whether the first delta (id and name) has gone out.</summary>
    public bool Announced { get; set; }
}

/// <summary>One tool_calls entry of a streamed chunk: the call's first (with its name) or the arguments' next text.</summary>
internal readonly record struct ToolCallDelta(int Index, string? Name, string Arguments);
