namespace QwenSharp.Sampling;

/// <summary>
/// An answer that is text a GBNF grammar allows (<see cref="GbnfGrammar"/>: llama.cpp's <c>--grammar</c>, llama-server's
/// <c>grammar</c>, vLLM's <c>guided_grammar</c>): the grammar stepped a character at a time as the UTF-8 bytes come, each
/// byte of a character taken only where some character it can begin or go on may come next. The answer may end where a
/// parse of the root rule is whole, and must once nothing more can follow.
/// </summary>
public struct GrammarPrefix : ITextAutomaton
{
#pragma warning disable IDE0044 // Feed changes these: the state is a value copied per token tried.
    private GbnfGrammar _grammar;
    private GrammarStacks? _state;
    private Utf8Cursor _character;
#pragma warning restore IDE0044

    /// <summary>The state before the answer's first byte.</summary>
    public static GrammarPrefix Start(GbnfGrammar grammar)
    {
        ArgumentNullException.ThrowIfNull(grammar);
        return new GrammarPrefix { _grammar = grammar, _state = grammar.Begin };
    }

    /// <summary>The state where <paramref name="stacks"/> stand, no character half written (after a whole token a reference took).</summary>
    internal static GrammarPrefix At(GbnfGrammar grammar, GrammarStacks stacks) => new() { _grammar = grammar, _state = stacks };

    /// <summary>The grammar's state, null once no parse can go on.</summary>
    internal readonly GrammarStacks? Stacks => _state;

    /// <summary>Whether a whole token may come next as a reference (<c>&lt;[id]&gt;</c>, <c>!&lt;...&gt;</c>): a stack's top is one, and no character is half written.</summary>
    internal readonly bool TakesTokens => !_character.Partway && _state is not null && _grammar.TokenTops(_state) is not { Only.Length: 0, AllBut.Length: 0 };

    public bool Feed(byte b)
    {
        if (_state is null)
        {
            return false;
        }

        int codePoint = _character.Take(b);
        if (codePoint == Utf8Cursor.Partial)
        {
            (int first, int last) = _character.Reach();
            return _grammar.Allows(_state, first, last);
        }

        _state = codePoint == Utf8Cursor.Refused ? null : _grammar.Step(_state, codePoint);
        return _state is not null;
    }

    public readonly string KeyFor(int tokenBytes) => $"{_state?.Key}.{_character.Key}";

    /// <summary>Whether a character is half written.</summary>
    internal readonly bool Partway => _character.Partway;

    /// <summary>A parse is whole (and no character is half written).</summary>
    public readonly bool CanEnd => !_character.Partway && _state is { CanEnd: true };

    /// <summary>Every parse is whole: nothing may follow.</summary>
    public readonly bool Complete => CanEnd && _state!.Complete;
}
