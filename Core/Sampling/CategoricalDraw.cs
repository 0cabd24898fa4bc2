namespace QwenSharp.Sampling;

/// <summary>
/// One draw from softmax(logits) with one uniform number: the inverse of the cumulative distribution,
/// accumulated in double in index order over the tokens the filters left (finite logits).
/// </summary>
public static class CategoricalDraw
{
    public static int Draw(ReadOnlySpan<float> logits, double uniform)
    {
        double total = FiniteLogits.ExpSum(logits, out float max);

        double target = uniform * total;
        double cumulative = 0;
        int last = -1;
        for (int i = 0; i < logits.Length; i++)
        {
            if (logits[i] == float.NegativeInfinity)
            {
                continue;
            }

            cumulative += Math.Exp(logits[i] - max);
            last = i;
            if (cumulative > target)
            {
                return i;
            }
        }

        // Rounding can leave the target at the very top: it belongs to the last token with any mass.
        return last;
    }
}
