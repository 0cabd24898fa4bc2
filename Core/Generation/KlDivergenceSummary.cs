namespace QwenSharp.Generation;

/// <summary>
/// What <see cref="KlDivergence"/> found over <see cref="Positions"/> positions: the model's perplexity (Q) and the
/// base's, the correlation of their per-token log-likelihoods, their ratio and difference; the divergence's mean and
/// its sorted values; Δp's mean, sorted values and root mean square; the share of positions with the same top token.
/// </summary>
public sealed record KlDivergenceSummary(
    int Positions,
    Estimate Perplexity,
    Estimate BasePerplexity,
    double LogPerplexityCorrelation,
    Estimate LogPerplexityRatio,
    Estimate PerplexityRatio,
    Estimate PerplexityDifference,
    Estimate MeanDivergence,
    IReadOnlyList<float> SortedDivergences,
    Estimate MeanProbabilityChange,
    IReadOnlyList<float> SortedProbabilityChanges,
    Estimate RmsProbabilityChange,
    Estimate SameTop)
{
    /// <summary>The value a <paramref name="fraction"/> of the way through <paramref name="sorted"/>, between neighbours linearly (llama.cpp's percentiles).</summary>
    public static double Percentile(IReadOnlyList<float> sorted, double fraction)
    {
        if (fraction <= 0)
        {
            return sorted[0];
        }

        if (fraction >= 1)
        {
            return sorted[^1];
        }

        double at = fraction * (sorted.Count - 1);
        int below = (int)at;
        double part = at - below;
        return ((1 - part) * sorted[below]) + (part * sorted[Math.Min(below + 1, sorted.Count - 1)]);
    }

    /// <summary>The middle value, or the mean of the middle two.</summary>
    public static double Median(IReadOnlyList<float> sorted) =>
        sorted.Count % 2 == 0 ? 0.5 * (sorted[(sorted.Count / 2) - 1] + sorted[sorted.Count / 2]) : sorted[sorted.Count / 2];
}
