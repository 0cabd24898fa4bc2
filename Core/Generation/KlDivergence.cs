using QwenSharp.Formats;

namespace QwenSharp.Generation;

/// <summary>An estimate and its standard error.</summary>
public readonly record struct Estimate(double Value, double Uncertainty);

/// <summary>One position compared (<see cref="KlDivergence.Measure"/>): both negative log-likelihoods of the next token, the divergence, whether the top tokens agree.</summary>
public readonly record struct PositionDivergence(double Nll, double BaseNll, double Divergence, bool SameTop);

/// <summary>
/// How far a model's next-token distributions are from a base model's on the same tokens, position by position, with
/// the statistics <c>llama-perplexity --kl-divergence</c> reports: both perplexities and their ratio, the
/// Kullback-Leibler divergence KL(base ‖ model) = Σ p_base (log p_base − log p), the change Δp = p − p_base of the actual
/// next token's probability, and how often both put the same token on top. The base's log-probs come from a
/// <see cref="LogitsBaseFile"/> row, tokens whose base log-prob is −16 or less left out of the sum as llama.cpp leaves
/// them.
/// </summary>
public sealed class KlDivergence
{
    private readonly List<float> _divergences = [];
    private readonly List<float> _probabilityChanges = [];
    private double _nll, _nll2, _baseNll, _baseNll2, _nllTimesBase, _kld, _kld2, _dp, _dp2, _dp4;
    private long _sameTop;

    /// <summary>Positions added.</summary>
    public int Count => _divergences.Count;

    /// <summary>
    /// Compares one position: the model's <paramref name="logits"/>, the base's <paramref name="baseRow"/> for the same
    /// position, and the token that came next. Reads nothing else, so positions can be measured on several threads.
    /// </summary>
    public static PositionDivergence Measure(ReadOnlySpan<float> logits, ReadOnlySpan<ushort> baseRow, int next)
    {
        if (baseRow.Length != LogitsBaseFile.RowValues(logits.Length))
        {
            throw new ArgumentException($"the base's row is for a vocabulary other than the model's {logits.Length} logits", nameof(baseRow));
        }

        double logSumExp = LogProbs.LogSumExp(logits);
        int top = LogProbs.ArgMax(logits);
        double nll = logSumExp - logits[next];

        float scale = LogitsBaseFile.ScaleOf(baseRow), least = LogitsBaseFile.LeastOf(baseRow);
        ReadOnlySpan<ushort> codes = baseRow[4..];
        double baseNll = -((scale * codes[next]) + least);
        double divergence = 0;
        int baseTop = 0;
        float baseTopLogProb = float.NegativeInfinity;
        for (int i = 0; i < logits.Length; i++)
        {
            float baseLogProb = (scale * codes[i]) + least;
            if (baseLogProb > baseTopLogProb)
            {
                baseTopLogProb = baseLogProb;
                baseTop = i;
            }

            if (baseLogProb > -LogitsBaseFile.Span)
            {
                divergence += Math.Exp(baseLogProb) * (baseLogProb - (logits[i] - logSumExp));
            }
        }

        return new PositionDivergence(nll, baseNll, divergence, top == baseTop);
    }

    /// <summary>Adds a measured position, in order (the sorted values do not depend on it, the sums only by rounding).</summary>
    public void Add(PositionDivergence position)
    {
        (double nll, double baseNll, double divergence, bool sameTop) = position;
        _nll += nll;
        _nll2 += nll * nll;
        _baseNll += baseNll;
        _baseNll2 += baseNll * baseNll;
        _nllTimesBase += nll * baseNll;
        _kld += divergence;
        _kld2 += divergence * divergence;
        _sameTop += sameTop ? 1 : 0;
        double change = Math.Exp(-nll) - Math.Exp(-baseNll);
        _dp += change;
        _dp2 += change * change;
        _dp4 += change * change * change * change;
        _divergences.Add((float)divergence);
        _probabilityChanges.Add((float)change);
    }

    /// <summary>The statistics over every position added so far (at least two).</summary>
    public KlDivergenceSummary Summarize()
    {
        int n = Count;
        if (n < 2)
        {
            throw new InvalidOperationException($"statistics need at least 2 positions, not {n}");
        }

        Estimate logPpl = Mean(_nll, _nll2, n), logPplBase = Mean(_baseNll, _baseNll2, n);
        double covariance = n < 10 ? 0 : ((_nllTimesBase / n) - (_nll / n * (_baseNll / n))) / (n - 1);
        double ratioLog = logPpl.Value - logPplBase.Value;
        double ratioLogUncertainty = Math.Sqrt(Math.Max(0, (logPpl.Uncertainty * logPpl.Uncertainty) + (logPplBase.Uncertainty * logPplBase.Uncertainty) - (2 * covariance)));
        double ppl = Math.Exp(logPpl.Value), pplBase = Math.Exp(logPplBase.Value);
        double pplUncertainty = ppl * logPpl.Uncertainty, pplBaseUncertainty = pplBase * logPplBase.Uncertainty;
        double pplCovariance = ppl * pplBase * covariance;
        Estimate squaredChange = Mean(_dp2, _dp4, n);
        double rms = Math.Sqrt(squaredChange.Value);
        double sameTop = (double)_sameTop / n;

        float[] divergences = [.. _divergences], changes = [.. _probabilityChanges];
        Array.Sort(divergences);
        Array.Sort(changes);
        return new KlDivergenceSummary(
            n,
            new Estimate(ppl, pplUncertainty),
            new Estimate(pplBase, pplBaseUncertainty),
            logPpl.Uncertainty > 0 && logPplBase.Uncertainty > 0 ? covariance / (logPpl.Uncertainty * logPplBase.Uncertainty) : double.NaN,
            new Estimate(ratioLog, ratioLogUncertainty),
            new Estimate(Math.Exp(ratioLog), Math.Exp(ratioLog) * ratioLogUncertainty),
            new Estimate(ppl - pplBase, Math.Sqrt(Math.Max(0, (pplUncertainty * pplUncertainty) + (pplBaseUncertainty * pplBaseUncertainty) - (2 * pplCovariance)))),
            Mean(_kld, _kld2, n),
            divergences,
            Mean(_dp, _dp2, n),
            changes,
            new Estimate(rms, rms > 0 ? 0.5 / rms * squaredChange.Uncertainty : 0),
            new Estimate(sameTop, Math.Sqrt(sameTop * (1 - sameTop) / (n - 1))));
    }

    /// <summary>The mean of n values from their sum and sum of squares, with its standard error (0 for ten values or fewer, as llama.cpp).</summary>
    private static Estimate Mean(double sum, double sum2, int n)
    {
        double mean = sum / n, variance = (sum2 / n) - (mean * mean);
        return new Estimate(mean, variance > 0 && n > 10 ? Math.Sqrt(variance / (n - 1)) : 0);
    }
}
