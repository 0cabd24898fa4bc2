namespace QwenSharp.Sampling;

/// <summary>
/// An answer an automaton recognises (OpenAI's <c>response_format</c>: a JSON object, or one a JSON schema describes,
/// <see cref="JsonSchemaPrefix"/>; tool calls, <see cref="ToolCallPrefix"/>). A token is allowed when all its bytes
/// continue the text (its bytes as <see cref="TokenBytes"/> holds them); end-of-sequence tokens only where the automaton
/// may end (<see cref="ITextAutomaton.CanEnd"/>), and only they once it is <see cref="ITextAutomaton.Complete"/>. The mask
/// is exact, every token of the vocabulary checked (<see cref="TokenMasks"/>), and comes before penalties and sampling, as
/// vLLM's guided decoding masks.
/// </summary>
public sealed class AutomatonConstraint<TState>(TokenMasks masks, TState start, IReadOnlyList<int> endTokens) : ITokenConstraint
    where TState : struct, ITextAutomaton
{
    private readonly int[] _ends = [.. endTokens.Where(t => t >= 0 && t < masks.Tokens.Count)];
    private float[]? _endLogits;
#pragma warning disable IDE0044 // Feed changes the state in place: a readonly field would feed a copy.
    private TState _state = start;
#pragma warning restore IDE0044

    /// <summary>Where the answer stands: the automaton after every byte accepted so far.</summary>
    internal TState State => _state;

    /// <summary>Whether <paramref name="token"/> ends the sequence here (an end token, taken without a step of the automaton).</summary>
    internal bool Ends(int token) => Array.IndexOf(_ends, token) >= 0;

    public void Mask(Span<float> logits)
    {
        _endLogits ??= new float[_ends.Length];
        for (int i = 0; i < _ends.Length; i++)
        {
            _endLogits[i] = _ends[i] < logits.Length ? logits[_ends[i]] : float.NegativeInfinity;
        }

        bool ends = _state.Complete;
        if (!ends)
        {
            TokenMask mask = masks.For(_state);
            int count = Math.Min(logits.Length, masks.Tokens.Count);
            for (int t = 0; t < count; t++)
            {
                if (!mask.Has(t))
                {
                    logits[t] = float.NegativeInfinity;
                }
            }

            logits[count..].Fill(float.NegativeInfinity);
            // No token continuing the answer (a vocabulary without single-byte tokens can get here): the sequence ends
            // rather than the draw failing.
            ends = mask.Allowed == 0 || _state.CanEnd;
        }
        else
        {
            logits.Fill(float.NegativeInfinity);
        }

        if (ends)
        {
            for (int i = 0; i < _ends.Length; i++)
            {
                if (_ends[i] < logits.Length)
                {
                    logits[_ends[i]] = _endLogits[i];
                }
            }
        }
    }

    public void Accept(int token)
    {
        if (_state.Complete || Array.IndexOf(_ends, token) >= 0)
        {
            return;
        }

        foreach (byte b in masks.Tokens.Of(token))
        {
            if (!_state.Feed(b))
            {
                throw new ArgumentException($"token {token} does not continue the answer (it was masked)", nameof(token));
            }
        }
    }
}
