namespace QwenSharp.Sampling;

/// <summary>
/// transformers' MinPLogitsWarper: tokens whose probability is below MinP times the most likely token's are
/// removed. p_i &lt; MinP · p_max is exp(l_i - l_max) &lt; MinP: the normaliser cancels.
/// </summary>
public static class MinPFilter
{
    public static void Apply(Span<float> logits, double minP)
    {
        if (minP <= 0)
        {
            return;
        }

        float max = System.Numerics.Tensors.TensorPrimitives.Max(logits);
        for (int i = 0; i < logits.Length; i++)
        {
            if (Math.Exp(logits[i] - max) < minP)
            {
                logits[i] = float.NegativeInfinity;
            }
        }
    }
}
