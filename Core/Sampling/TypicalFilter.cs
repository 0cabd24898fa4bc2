namespace QwenSharp.Sampling;

/// <summary>
/// transformers' TypicalLogitsWarper (locally typical sampling, Meister et al. 2022; llama.cpp's typical_p): with
/// H the entropy of softmax(logits), tokens are ordered by how far their surprise −log p lies from H, and the closest
/// are kept until their probability reaches the mass; the rest (beyond the first token to reach it, ties with it kept)
/// are removed. At least one token stays.
/// </summary>
public static class TypicalFilter
{
    public static void Apply(Span<float> logits, double mass)
    {
        if (mass >= 1)
        {
            return;
        }

        double total = FiniteLogits.ExpSum(logits, out float max);

        double logTotal = Math.Log(total);
        double entropy = 0;
        foreach (float logit in logits)
        {
            if (logit != float.NegativeInfinity)
            {
                double logP = logit - max - logTotal;
                entropy -= Math.Exp(logP) * logP;
            }
        }

        // Finite tokens by their distance from the entropy (ties by index, as a stable sort leaves them).
        var order = new List<(double Shift, int Index)>();
        for (int i = 0; i < logits.Length; i++)
        {
            if (logits[i] != float.NegativeInfinity)
            {
                order.Add((Math.Abs(-(logits[i] - max - logTotal) - entropy), i));
            }
        }

        order.Sort();
        double cumulative = 0;
        int last = order.Count - 1;
        for (int r = 0; r < order.Count; r++)
        {
            cumulative += Math.Exp(logits[order[r].Index] - max - logTotal);
            if (cumulative >= mass)
            {
                last = r;
                break;
            }
        }

        double limit = order[last].Shift;
        foreach ((double shift, int index) in order)
        {
            if (shift > limit)
            {
                logits[index] = float.NegativeInfinity;
            }
        }
    }
}
