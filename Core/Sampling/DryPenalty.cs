namespace QwenSharp.Sampling;

/// <summary>
/// DRY, "don't repeat yourself" (p-e-w's sampler, as llama.cpp runs it): a token that would extend a stretch of the
/// text repeating an earlier stretch of at least <c>allowedLength</c> tokens is penalised by
/// <c>multiplier · base^(length − allowedLength)</c>, the length the longest such stretch it would continue; repetitions
/// are not counted back past the last sequence breaker, and a token that is a breaker is never penalised. The lengths
/// come from the Z-algorithm over the text reversed (linear in its length). It goes with the penalties, before
/// temperature.
/// </summary>
public static class DryPenalty
{
    /// <summary>llama.cpp's bound on the exponent: log of float's largest value, so base^exponent stays finite.</summary>
    private const double FloatMaxLog = 88.7228391;

    /// <param name="lastN">How many of the last tokens are looked at; -1: the whole text.</param>
    /// <param name="scratch">Buffers kept from step to step (a sampler's own), so a step allocates nothing; null: new ones.</param>
    public static void Apply(Span<float> logits, double multiplier, double @base, int allowedLength, int lastN, DryBreakers breakers,
        IReadOnlyList<int> prompt, IReadOnlyList<int> generated, DryScratch? scratch = null)
    {
        ArgumentNullException.ThrowIfNull(breakers);
        int total = prompt.Count + generated.Count;
        int n = lastN < 0 ? total : Math.Min(lastN, total);
        if (multiplier == 0 || @base < 1 || n <= allowedLength)
        {
            return;
        }

        // The text's last n tokens, newest first.
        scratch ??= new DryScratch();
        int[] reversed = scratch.Reversed(n);
        for (int i = 0; i < n; i++)
        {
            int position = total - 1 - i;
            reversed[i] = position >= prompt.Count ? generated[position - prompt.Count] : prompt[position];
        }

        int limit = RepetitionLimit(reversed, n, breakers);
        if (limit < allowedLength)
        {
            return;
        }

        // z[k]: how many tokens from the end the text repeats k tokens earlier; the token after that earlier stretch
        // (reversed[k - 1]) would extend the repetition.
        int[] z = ZFunction(reversed, n, scratch.Z(n));
        Dictionary<int, int> longest = scratch.Longest;
        longest.Clear();
        for (int k = 1; k < n; k++)
        {
            int length = Math.Min(z[k], limit);
            if (length >= allowedLength)
            {
                int token = reversed[k - 1];
                longest[token] = Math.Max(longest.GetValueOrDefault(token), length);
            }
        }

        int maxExponent = @base > 1.000001 ? (int)(FloatMaxLog / Math.Log(@base)) : 0;
        foreach ((int token, int length) in longest)
        {
            if ((uint)token >= (uint)logits.Length || breakers.HoldsOne(token))
            {
                continue;
            }

            int exponent = length - allowedLength;
            exponent = maxExponent > 0 && exponent > maxExponent ? maxExponent : exponent;
            logits[token] -= (float)(multiplier * Math.Pow(@base, exponent));
        }
    }

    /// <summary>
    /// How far back a repetition may be counted: up to the newest complete breaker (its head <c>i</c> tokens from the end,
    /// the longest of the breakers that begin with it and fit), else the whole window.
    /// </summary>
    private static int RepetitionLimit(int[] reversed, int n, DryBreakers breakers)
    {
        for (int i = 0; i < n; i++)
        {
            int longestMatch = -1;
            foreach (int[] tail in breakers.TailsOf(reversed[i]))
            {
                int length = tail.Length;
                if (length <= longestMatch || length > i)
                {
                    continue;
                }

                bool match = true;
                for (int offset = 0; offset < length && match; offset++)
                {
                    match = tail[offset] == reversed[i - offset - 1];
                }

                longestMatch = match ? length : longestMatch;
            }

            if (longestMatch >= 0)
            {
                return i - longestMatch;
            }
        }

        return n;
    }

    /// <summary>
    /// The Z-function of the first <paramref name="n"/> of <paramref name="s"/>, into <paramref name="z"/>: z[k] is the
    /// length of the longest common prefix of the sequence and its suffix from k (z[0] = 0).
    /// </summary>
    internal static int[] ZFunction(int[] s, int n, int[] z)
    {
        Array.Clear(z, 0, n);
        for (int k = 1, left = 0, right = 0; k < n; k++)
        {
            if (k < right)
            {
                z[k] = Math.Min(right - k, z[k - left]);
            }

            while (k + z[k] < n && s[z[k]] == s[k + z[k]])
            {
                z[k]++;
            }

            if (k + z[k] > right)
            {
                (left, right) = (k, k + z[k]);
            }
        }

        return z;
    }
}
