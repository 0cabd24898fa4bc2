namespace QwenSharp.Sampling;

/// <summary>
/// llama.cpp's dynamic temperature (its temp-ext, "entropy-based" temperature): the temperature of a step lies in
/// [T − range, T + range] (not below 0), placed by the normalised entropy of the candidates left: H / log(n), raised to
/// <c>exponent</c>. A confident step is sampled cooler, an uncertain one hotter. llama.cpp runs it last, after the
/// filters, on the candidates they left; so does QwenSharp when it is on (in place of the plain temperature).
/// </summary>
public static class DynamicTemperature
{
    /// <summary>The temperature of this step (the step's own divisor), or <paramref name="temperature"/> where one candidate is left.</summary>
    public static double Of(ReadOnlySpan<float> logits, double temperature, double range, double exponent)
    {
        int count = FiniteLogits.Count(logits);
        if (count <= 1)
        {
            return temperature;
        }

        double total = FiniteLogits.ExpSum(logits, out float max);
        double entropy = 0;
        foreach (float logit in logits)
        {
            if (logit != float.NegativeInfinity)
            {
                double p = Math.Exp(logit - max) / total;
                entropy -= p > 0 ? p * Math.Log(p) : 0;
            }
        }

        double low = Math.Max(0, temperature - range), high = temperature + range;
        return low + ((high - low) * Math.Pow(entropy / Math.Log(count), exponent));
    }

    /// <summary>Divides the logits by this step's temperature (<see cref="Of"/>); a range of 0 (off) leaves them.</summary>
    public static void Apply(Span<float> logits, double temperature, double range, double exponent)
    {
        if (range <= 0)
        {
            return;
        }

        double step = Of(logits, temperature, range, exponent);
        System.Numerics.Tensors.TensorPrimitives.Divide(logits, (float)step, logits);
    }
}
