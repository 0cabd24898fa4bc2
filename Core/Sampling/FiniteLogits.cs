namespace QwenSharp.Sampling;

/// <summary>What the filters share about a step's finite logits (those no filter removed): how many, and their softmax's normaliser.</summary>
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

    /// <summary>How many of the logits are finite (not removed by a filter).</summary>
    public static int Count(ReadOnlySpan<float> logits)
    {
        int count = 0;
        foreach (float logit in logits)
        {
            count += logit != float.NegativeInfinity ? 1 : 0;
        }

        return count;
    }
}
