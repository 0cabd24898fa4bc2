namespace QwenSharp.Sampling;

/// <summary>
/// An answer a GBNF grammar with token references allows (<see cref="GbnfGrammar.HasTokens"/>: <c>&lt;[id]&gt;</c>,
/// <c>&lt;|im_end|&gt;</c>, <c>!&lt;[id]&gt;</c>, as llama.cpp's grammars take them): a token may continue the answer as
/// text, its bytes stepping the grammar's characters (<see cref="AutomatonConstraint{TState}"/> over
/// <see cref="GrammarPrefix"/>), or whole, where a stack's top names it (or, after <c>!</c>, names another); where both
/// parses take it, both go on. A reference can name a special token, which text never holds (<c>&lt;|im_end|&gt;</c>).
/// A reference waits for a character half written to be finished.
/// </summary>
public sealed class GrammarConstraint(TokenMasks masks, GbnfGrammar grammar, IReadOnlyList<int> endTokens) : ITokenConstraint
{
    private AutomatonConstraint<GrammarPrefix> _text = new(masks, GrammarPrefix.Start(grammar), endTokens);
    private float[] _before = [];

    public void Mask(Span<float> logits)
    {
        GrammarPrefix state = _text.State;
        if (!state.TakesTokens)
        {
            _text.Mask(logits);
            return;
        }

        (int[] only, int[] allBut) = grammar.TokenTops(state.Stacks!);
        if (allBut.Length > 1)
        {
            // Two references to any token but two different ones: between them every token passes.
            return;
        }

        // The text's mask, then each token a reference takes given back its logit.
        if (_before.Length < logits.Length)
        {
            _before = new float[logits.Length];
        }

        Span<float> before = _before.AsSpan(0, logits.Length);
        logits.CopyTo(before);
        _text.Mask(logits);
        if (!state.CanEnd)
        {
            // Where no character may come the text's mask lets the sequence end rather than leave nothing; here a token may.
            foreach (int end in endTokens)
            {
                if ((uint)end < (uint)logits.Length)
                {
                    logits[end] = float.NegativeInfinity;
                }
            }
        }

        foreach (int token in only)
        {
            if (token < logits.Length)
            {
                logits[token] = before[token];
            }
        }

        // Any token but one: all of them, and that one keeps what the text and the other references gave it.
        if (allBut is [int but])
        {
            float kept = but < logits.Length ? logits[but] : 0;
            before.CopyTo(logits);
            if (but < logits.Length)
            {
                logits[but] = kept;
            }
        }
    }

    public void Accept(int token)
    {
        GrammarPrefix state = _text.State;
        GrammarStacks? whole = state.TakesTokens ? grammar.StepToken(state.Stacks!, token) : null;
        if (whole is null)
        {
            _text.Accept(token);
            return;
        }

        // Its bytes as text too, on a copy: where they step the grammar, that parse goes on beside the reference's (unless
        // they end partway through a character, which a state cannot hold beside a whole token's).
        GrammarPrefix text = state;
        bool asText = !_text.Ends(token) && masks.Tokens.Of(token) is { Length: > 0 } bytes && Feeds(ref text, bytes);
        GrammarStacks next = asText && !text.Partway && text.Stacks is { } stacks ? grammar.Union(stacks, whole) : whole;
        _text = new AutomatonConstraint<GrammarPrefix>(masks, GrammarPrefix.At(grammar, next), endTokens);
    }

    private static bool Feeds(ref GrammarPrefix state, ReadOnlySpan<byte> bytes)
    {
        foreach (byte b in bytes)
        {
            if (!state.Feed(b))
            {
                return false;
            }
        }

        return true;
    }
}
