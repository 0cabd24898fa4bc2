using System.Globalization;
using System.Text.Json;
using QwenSharp.Generation;

namespace QwenSharp.Cli.Commands;

/// <summary>
/// A <see cref="KlDivergenceSummary"/> as text, line for line as llama-perplexity prints its three blocks (so a script
/// that reads "Mean    KLD:" or "Same top p:" from its output reads ours), or as JSON by name.
/// </summary>
internal static class KlDivergenceReport
{
    /// <summary>The percentiles of the divergence llama-perplexity lists, by label and fraction.</summary>
    private static readonly (string Label, string Key, double Fraction)[] s_divergencePercentiles =
    [
        ("99.9%", "p99_9", 0.999), ("99.0%", "p99", 0.99), ("95.0%", "p95", 0.95), ("90.0%", "p90", 0.9), ("Median", "median", 0.5),
        ("10.0%", "p10", 0.1), (" 5.0%", "p5", 0.05), (" 1.0%", "p1", 0.01), (" 0.1%", "p0_1", 0.001),
    ];

    /// <summary>Those of Δp, which add the quartiles.</summary>
    private static readonly (string Label, string Key, double Fraction)[] s_changePercentiles =
    [
        ("99.9%", "p99_9", 0.999), ("99.0%", "p99", 0.99), ("95.0%", "p95", 0.95), ("90.0%", "p90", 0.9), ("75.0%", "p75", 0.75),
        ("Median", "median", 0.5), ("25.0%", "p25", 0.25), ("10.0%", "p10", 0.1), (" 5.0%", "p5", 0.05), (" 1.0%", "p1", 0.01), (" 0.1%", "p0_1", 0.001),
    ];

    public static void WriteText(TextWriter output, KlDivergenceSummary s)
    {
        var c = CultureInfo.InvariantCulture;
        output.WriteLine("====== Perplexity statistics ======");
        output.WriteLine(string.Create(c, $"Mean PPL(Q)                   : {s.Perplexity.Value,10:F6} ± {s.Perplexity.Uncertainty,10:F6}"));
        output.WriteLine(string.Create(c, $"Mean PPL(base)                : {s.BasePerplexity.Value,10:F6} ± {s.BasePerplexity.Uncertainty,10:F6}"));
        output.WriteLine(string.Create(c, $"Cor(ln(PPL(Q)), ln(PPL(base))): {100 * s.LogPerplexityCorrelation,6:F2}%"));
        output.WriteLine(string.Create(c, $"Mean ln(PPL(Q)/PPL(base))     : {s.LogPerplexityRatio.Value,10:F6} ± {s.LogPerplexityRatio.Uncertainty,10:F6}"));
        output.WriteLine(string.Create(c, $"Mean PPL(Q)/PPL(base)         : {s.PerplexityRatio.Value,10:F6} ± {s.PerplexityRatio.Uncertainty,10:F6}"));
        output.WriteLine(string.Create(c, $"Mean PPL(Q)-PPL(base)         : {s.PerplexityDifference.Value,10:F6} ± {s.PerplexityDifference.Uncertainty,10:F6}"));
        output.WriteLine();

        output.WriteLine("====== KL divergence statistics ======");
        output.WriteLine(string.Create(c, $"Mean    KLD: {s.MeanDivergence.Value,10:F6} ± {s.MeanDivergence.Uncertainty,10:F6}"));
        output.WriteLine(string.Create(c, $"Maximum KLD: {s.SortedDivergences[^1],10:F6}"));
        foreach ((string label, _, double fraction) in s_divergencePercentiles)
        {
            output.WriteLine(string.Create(c, $"{Label(label)} KLD: {Value(s.SortedDivergences, fraction),10:F6}"));
        }

        output.WriteLine(string.Create(c, $"Minimum KLD: {s.SortedDivergences[0],10:F6}"));
        output.WriteLine();

        output.WriteLine("====== Token probability statistics ======");
        output.WriteLine(string.Create(c, $"Mean    Δp: {100 * s.MeanProbabilityChange.Value,6:F3} ± {100 * s.MeanProbabilityChange.Uncertainty,5:F3} %"));
        output.WriteLine(string.Create(c, $"Maximum Δp: {100 * s.SortedProbabilityChanges[^1],6:F3}%"));
        foreach ((string label, _, double fraction) in s_changePercentiles)
        {
            output.WriteLine(string.Create(c, $"{Label(label)} Δp: {100 * Value(s.SortedProbabilityChanges, fraction),6:F3}%"));
        }

        output.WriteLine(string.Create(c, $"Minimum Δp: {100 * s.SortedProbabilityChanges[0],6:F3}%"));
        output.WriteLine(string.Create(c, $"RMS Δp    : {100 * s.RmsProbabilityChange.Value,6:F3} ± {100 * s.RmsProbabilityChange.Uncertainty,5:F3} %"));
        output.WriteLine(string.Create(c, $"Same top p: {100 * s.SameTop.Value,6:F3} ± {100 * s.SameTop.Uncertainty,5:F3} %"));
    }

    public static void WriteJson(TextWriter output, KlDivergenceSummary s, int chunks, int context, double tokensPerSecond) =>
        JsonOutput.Write(output, w =>
        {
            w.WriteStartObject();
            w.WriteString("method", "kl-divergence");
            w.WriteNumber("chunks", chunks);
            w.WriteNumber("context", context);
            w.WriteNumber("positions", s.Positions);
            Write(w, "ppl", s.Perplexity);
            Write(w, "ppl_base", s.BasePerplexity);
            w.WriteNumberOrNull("log_ppl_correlation", s.LogPerplexityCorrelation);
            Write(w, "log_ppl_ratio", s.LogPerplexityRatio);
            Write(w, "ppl_ratio", s.PerplexityRatio);
            Write(w, "ppl_difference", s.PerplexityDifference);
            Distribution(w, "kld", s.MeanDivergence, s.SortedDivergences, s_divergencePercentiles);
            Distribution(w, "delta_p", s.MeanProbabilityChange, s.SortedProbabilityChanges, s_changePercentiles);
            Write(w, "rms_delta_p", s.RmsProbabilityChange);
            Write(w, "same_top_p", s.SameTop);
            w.WriteNumber("tokens_per_s", Math.Round(tokensPerSecond, 3));
            w.WriteEndObject();
        });

    /// <summary>"Median" as is, a percentage label padded to llama.cpp's column ("99.9%  ").</summary>
    private static string Label(string label) => label == "Median" ? "Median " : label + "  ";

    private static double Value(IReadOnlyList<float> sorted, double fraction) =>
        fraction == 0.5 ? KlDivergenceSummary.Median(sorted) : KlDivergenceSummary.Percentile(sorted, fraction);

    private static void Write(Utf8JsonWriter w, string name, Estimate estimate)
    {
        w.WriteStartObject(name);
        w.WriteNumberOrNull("value", estimate.Value);
        w.WriteNumberOrNull("uncertainty", estimate.Uncertainty);
        w.WriteEndObject();
    }

    private static void Distribution(Utf8JsonWriter w, string name, Estimate mean, IReadOnlyList<float> sorted, (string Label, string Key, double Fraction)[] percentiles)
    {
        w.WriteStartObject(name);
        w.WriteNumberOrNull("mean", mean.Value);
        w.WriteNumberOrNull("uncertainty", mean.Uncertainty);
        w.WriteNumberOrNull("max", sorted[^1]);
        foreach ((_, string key, double fraction) in percentiles)
        {
            w.WriteNumberOrNull(key, Value(sorted, fraction));
        }

        w.WriteNumberOrNull("min", sorted[0]);
        w.WriteEndObject();
    }
}
