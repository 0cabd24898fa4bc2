namespace QwenSharp.Sampling;

/// <summary>What the filters share about a step's finite logits: their softmax's normaliser, the largest subtracted first.</summary>
internal static class FiniteLogits
{
    /// <summary>Σ exp(l − max) over the finite logits, and the largest logit (so that p = exp(l − max) / Σ).</summary>
    public static double ExpSum(ReadOnlySpan<float> logits, out float max)
    {
        max = System.Numerics.Tensors.TensorPrimitives.Max(logits);
        double total = 0;
        foreach (float logit in logits)
        {
            total += logit == float.NegativeInfinity ? 0 : Math.Exp(logit - max);
        }

        return total;
    }
}
