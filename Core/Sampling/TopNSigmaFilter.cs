namespace QwenSharp.Sampling;

/// <summary>
/// llama.cpp's top-n-sigma (Tang et al. 2024): tokens whose logit is more than n standard deviations below the largest
/// are removed, the mean and (population) deviation taken over the finite logits. A scale of all logits moves the
/// bound with them, so temperature before or after it leaves the same tokens.
/// </summary>
public static class TopNSigmaFilter
{
    public static void Apply(Span<float> logits, double n)
    {
        if (n <= 0)
        {
            return;
        }

        double max = double.NegativeInfinity, sum = 0;
        int count = 0;
        foreach (float logit in logits)
        {
            if (logit != float.NegativeInfinity)
            {
                max = Math.Max(max, logit);
                sum += logit;
                count++;
            }
        }

        if (count <= 1)
        {
            return;
        }

        double mean = sum / count, squares = 0;
        foreach (float logit in logits)
        {
            if (logit != float.NegativeInfinity)
            {
                squares += (logit - mean) * (logit - mean);
            }
        }

        double bound = max - (n * Math.Sqrt(squares / count));
        for (int i = 0; i < logits.Length; i++)
        {
            if (logits[i] < bound)
            {
                logits[i] = float.NegativeInfinity;
            }
        }
    }
}
