namespace QwenSharp.Sampling;

/// <summary>
/// OpenAI's <c>response_format: json_object</c>: the text must be a JSON object (<see cref="JsonPrefix"/>), and it ends
/// when the object closes. A token is allowed when all its bytes continue the text validly (its bytes as
/// <see cref="TokenBytes"/> holds them); end-of-sequence tokens only once the object is complete, and then only they.
/// The mask is exact, every token of the vocabulary checked (<see cref="JsonObjectMasks"/>), and comes before
/// penalties and sampling, as vLLM's guided decoding masks.
/// </summary>
public sealed class JsonObjectConstraint(JsonObjectMasks masks, IReadOnlyList<int> endTokens) : ITokenConstraint
{
    private readonly int[] _ends = [.. endTokens.Where(t => t >= 0 && t < masks.Tokens.Count)];
    private float[]? _endLogits;
    private JsonPrefix _state;

    public void Mask(Span<float> logits)
    {
        _endLogits ??= new float[_ends.Length];
        for (int i = 0; i < _ends.Length; i++)
        {
            _endLogits[i] = _ends[i] < logits.Length ? logits[_ends[i]] : float.NegativeInfinity;
        }

        bool onlyEnds = _state.Complete;
        if (!onlyEnds)
        {
            JsonObjectMasks.Mask mask = masks.For(_state);
            int count = Math.Min(logits.Length, masks.Tokens.Count);
            for (int t = 0; t < count; t++)
            {
                if (!mask.Has(t))
                {
                    logits[t] = float.NegativeInfinity;
                }
            }

            logits[count..].Fill(float.NegativeInfinity);
            // No token continuing the object (a vocabulary without single-byte tokens can get here): the sequence ends
            // rather than the draw failing.
            onlyEnds = mask.Allowed == 0;
        }
        else
        {
            logits.Fill(float.NegativeInfinity);
        }

        if (onlyEnds)
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
        if (_state.Complete)
        {
            return;
        }

        foreach (byte b in masks.Tokens.Of(token))
        {
            if (!_state.Feed(b))
            {
                throw new ArgumentException($"token {token} does not continue the JSON object (it was masked)", nameof(token));
            }
        }
    }
}
