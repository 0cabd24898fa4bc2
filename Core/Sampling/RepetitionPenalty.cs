namespace QwenSharp.Sampling;

/// <summary>
/// transformers' RepetitionPenaltyLogitsProcessor (CTRL paper): every token that occurs in the prompt or
/// the generated text has its logit divided by the penalty when positive and multiplied when negative,
/// once however often it occurs.
/// </summary>
public static class RepetitionPenalty
{
    public static void Apply(Span<float> logits, float penalty, IReadOnlyList<int> prompt, IReadOnlyList<int> generated, TokenMarks seen)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(generated);
        ArgumentNullException.ThrowIfNull(seen);
        if (penalty == 1f)
        {
            return;
        }

        seen.Clear();
        Penalize(logits, penalty, prompt, seen);
        Penalize(logits, penalty, generated, seen);
    }

    private static void Penalize(Span<float> logits, float penalty, IReadOnlyList<int> tokens, TokenMarks seen)
    {
        for (int i = 0; i < tokens.Count; i++)
        {
            int token = tokens[i];
            if (seen.Mark(token))
            {
                float logit = logits[token];
                logits[token] = logit < 0 ? logit * penalty : logit / penalty;
            }
        }
    }
}

/// <summary>
/// OpenAI's presence and frequency penalties over the generated tokens only:
/// <c>logit -= presence * (count > 0) + frequency * count</c>.
/// </summary>
public static class OccurrencePenalties
{
    public static void Apply(Span<float> logits, float presence, float frequency, IReadOnlyList<int> generated, TokenMarks counts)
    {
        ArgumentNullException.ThrowIfNull(generated);
        ArgumentNullException.ThrowIfNull(counts);
        if (presence == 0f && frequency == 0f)
        {
            return;
        }

        counts.Clear();
        for (int i = 0; i < generated.Count; i++)
        {
            counts.Count(generated[i]);
        }

        for (int i = 0; i < generated.Count; i++)
        {
            int token = generated[i];
            int count = counts.Take(token);
            if (count > 0)
            {
                logits[token] -= presence + frequency * count;
            }
        }
    }
}

/// <summary>Per-token marks and counts over the vocabulary, cleared in O(1) by an epoch stamp.</summary>
public sealed class TokenMarks(int vocabularySize)
{
    private readonly int[] _stamp = new int[vocabularySize];
    private readonly int[] _count = new int[vocabularySize];
    private int _epoch = 1;

    public void Clear()
    {
        if (++_epoch == int.MaxValue)
        {
            Array.Clear(_stamp);
            _epoch = 1;
        }
    }

    /// <summary>Marks the token; true the first time since <see cref="Clear"/>.</summary>
    public bool Mark(int token)
    {
        if (_stamp[token] == _epoch)
        {
            return false;
        }

        _stamp[token] = _epoch;
        _count[token] = 0;
        return true;
    }

    /// <summary>Adds one occurrence.</summary>
    public void Count(int token)
    {
        Mark(token);
        _count[token]++;
    }

    /// <summary>The count since <see cref="Clear"/>, once: later calls for the same token give 0.</summary>
    public int Take(int token)
    {
        if (_stamp[token] != _epoch)
        {
            return 0;
        }

        int count = _count[token];
        _count[token] = 0;
        return count;
    }
}
