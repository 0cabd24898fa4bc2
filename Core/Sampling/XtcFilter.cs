namespace QwenSharp.Sampling;

/// <summary>
/// llama.cpp's XTC, "exclude top choices": with chance <c>probability</c> a step removes every token at least
/// <c>threshold</c> likely except the least likely of them, so the answer leaves its most predictable path while a
/// viable choice stays. Nothing happens unless two or more tokens reach the threshold (so a threshold above 0.5 never
/// acts). The draw that decides is one uniform number, drawn whenever the step is on.
/// </summary>
public static class XtcFilter
{
    /// <summary>Whether the step acts at all (llama.cpp's bounds): a chance above 0 and a threshold two tokens can reach.</summary>
    public static bool IsOn(double probability, double threshold) => probability > 0 && threshold <= 0.5;

    public static void Apply(Span<float> logits, double probability, double threshold, double uniform)
    {
        if (!IsOn(probability, threshold) || uniform > probability)
        {
            return;
        }

        double total = FiniteLogits.ExpSum(logits, out float max);

        // The tokens at or above the threshold; the least likely of them (the last in logit-descending, index-ascending order) stays.
        int above = 0, kept = -1;
        for (int i = 0; i < logits.Length; i++)
        {
            if (logits[i] != float.NegativeInfinity && Math.Exp(logits[i] - max) / total >= threshold)
            {
                above++;
                kept = kept < 0 || logits[i] <= logits[kept] ? i : kept;
            }
        }

        if (above < 2)
        {
            return;
        }

        float keptLogit = logits[kept];
        for (int i = 0; i < logits.Length; i++)
        {
            if (i != kept && logits[i] != float.NegativeInfinity && logits[i] >= keptLogit && Math.Exp(logits[i] - max) / total >= threshold)
            {
                logits[i] = float.NegativeInfinity;
            }
        }
    }
}
