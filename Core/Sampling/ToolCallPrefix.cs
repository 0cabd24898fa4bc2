using System.Globalization;
using System.Text;

namespace QwenSharp.Sampling;

/// <summary>
/// Whether the bytes fed so far begin Qwen's tool calls, as its chat template asks for them, to the functions of a
/// <see cref="ToolCallGrammar"/>: <c>&lt;tool_call&gt;\n{"name": "NAME", "arguments": ARGUMENTS}\n&lt;/tool_call&gt;</c>,
/// NAME one of the tools' and ARGUMENTS a JSON object its schema allows (<see cref="JsonSchemaPrefix"/>). The answer may
/// end after a call's closing brace (a call without its closing tag, which the parsers read too) or after the tag, and
/// where the grammar is <see cref="ToolCallGrammar.Parallel"/> another call may follow on the next line, as the template
/// writes several. Names are matched a byte at a time against the sorted names that still begin the same way.
/// </summary>
public struct ToolCallPrefix : ITextAutomaton
{
    private static readonly byte[][] s_literals =
    [
        "<tool_call>\n{\"name\": \""u8.ToArray(),
        "\", \"arguments\": "u8.ToArray(),
        "}\n</tool_call>"u8.ToArray(),
        "\n<tool_call>\n{\"name\": \""u8.ToArray(),
    ];

    private ToolCallGrammar _grammar;
    private Mode _mode;
    private Literal _literal;           // Mode.Literal: which
    private int _position;              // Mode.Literal: bytes of it matched; Mode.Name: bytes of the name matched
    private int _low, _high;            // Mode.Name: the names (sorted) that begin with the bytes matched
    private int _tool;                  // from the name on: the function called
    private JsonSchemaPrefix _arguments;

    private enum Mode : byte
    {
        Literal,
        Name,
        Arguments,
        Done,
    }

    private enum Literal : byte
    {
        Open,
        BeforeArguments,
        Close,
        NextCall,
    }

    /// <summary>
    /// The state before a call's first byte, or after <paramref name="written"/> (an answer's forced beginning, such as the
    /// <c>&lt;tool_call&gt;</c> token); an <see cref="ArgumentException"/> when that text does not begin a call.
    /// </summary>
    public static ToolCallPrefix Start(ToolCallGrammar grammar, ReadOnlySpan<byte> written = default)
    {
        ArgumentNullException.ThrowIfNull(grammar);
        var state = new ToolCallPrefix { _grammar = grammar, _mode = Mode.Literal, _literal = Literal.Open };
        foreach (byte b in written)
        {
            if (!state.Feed(b))
            {
                throw new ArgumentException($"'{Encoding.UTF8.GetString(written)}' does not begin a call to one of the tools", nameof(written));
            }
        }

        return state;
    }

    public readonly bool Complete => _mode == Mode.Done;

    /// <summary>After a call's closing brace, after its closing tag, and at the end of the last call allowed.</summary>
    public readonly bool CanEnd => _mode == Mode.Done
        || (_mode == Mode.Literal && ((_literal == Literal.Close && _position == 1) || (_literal == Literal.NextCall && _position == 0)));

    public readonly string KeyFor(int tokenBytes) =>
        string.Create(CultureInfo.InvariantCulture, $"{(byte)_mode}.{(byte)_literal}.{_position}.{_low}.{_high}.{_tool}|")
        + (_mode == Mode.Arguments ? _arguments.KeyFor(tokenBytes) : "");

    public bool Feed(byte b)
    {
        switch (_mode)
        {
            case Mode.Literal:
                return FeedLiteral(b);
            case Mode.Name:
                return FeedName(b);
            case Mode.Arguments when _arguments.Complete:
                // The arguments' object is whole: the call's own brace comes next.
                Begin(Literal.Close);
                return FeedLiteral(b);
            case Mode.Arguments:
                return _arguments.Feed(b);
            default:
                return false;
        }
    }

    private void Begin(Literal literal)
    {
        _mode = Mode.Literal;
        _literal = literal;
        _position = 0;
    }

    private bool FeedLiteral(byte b)
    {
        byte[] literal = s_literals[(int)_literal];
        if (b != literal[_position])
        {
            return false;
        }

        if (++_position < literal.Length)
        {
            return true;
        }

        switch (_literal)
        {
            case Literal.Open or Literal.NextCall:
                _mode = Mode.Name;
                _position = 0;
                _low = 0;
                _high = _grammar.Names.Length;
                break;
            case Literal.BeforeArguments:
                _mode = Mode.Arguments;
                _arguments = JsonSchemaPrefix.Start(_grammar.Arguments[_tool]);
                break;
            default:
                if (_grammar.Parallel)
                {
                    Begin(Literal.NextCall);
                }
                else
                {
                    _mode = Mode.Done;
                }

                break;
        }

        return true;
    }

    /// <summary>A byte of the name, or the quote that ends it: the names still matching are the sorted range [_low, _high).</summary>
    private bool FeedName(byte b)
    {
        byte[][] names = _grammar.Names;
        // A name equal to the bytes matched sorts first among those that begin with them. (A quote inside a written name
        // follows a backslash, so while a name is whole a quote can only end it.)
        if (b == '"' && names[_low].Length == _position)
        {
            _tool = _low;
            Begin(Literal.BeforeArguments);
            _position = 1;
            return true;
        }

        int low = _low;
        while (low < _high && (names[low].Length <= _position || names[low][_position] < b))
        {
            low++;
        }

        int high = low;
        while (high < _high && names[high].Length > _position && names[high][_position] == b)
        {
            high++;
        }

        if (high == low)
        {
            return false;
        }

        _low = low;
        _high = high;
        _position++;
        return true;
    }
}
