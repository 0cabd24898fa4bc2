namespace QwenSharp.Sampling;

/// <summary>
/// Mirostat (Basu et al. 2021), as llama.cpp runs it: a feedback loop that holds the answer's surprise (−log₂ p of each
/// token drawn) near the target <c>tau</c>. Its state μ starts at 2τ; each step keeps only the tokens it allows, the
/// draw is made from them renormalised, and μ moves by <c>eta</c> times the drawn token's surprise above τ. Version 2
/// keeps the tokens whose surprise is at most μ (at least the most likely); version 1 keeps the k most likely, k from
/// a Zipf exponent fitted to the 100 most likely tokens and μ. Like llama.cpp, it takes the place of top-k, top-p and
/// the other filters: only the penalties and temperature come before it.
/// </summary>
public sealed class Mirostat
{
    /// <summary>llama.cpp's m: the most likely tokens version 1 fits its Zipf exponent to.</summary>
    public const int ZipfTokens = 100;

    private readonly int _version;
    private readonly double _tau;
    private readonly double _eta;
    private readonly int _vocabularySize;

    public Mirostat(int version, double tau, double eta, int vocabularySize)
    {
        if (version is not (1 or 2))
        {
            throw new ArgumentOutOfRangeException(nameof(version), version, "mirostat is version 1 or 2 (0 is off)");
        }

        (_version, _tau, _eta, _vocabularySize) = (version, tau, eta, vocabularySize);
        Mu = 2 * tau;
    }

    /// <summary>The surprise bound the next step uses.</summary>
    public double Mu { get; private set; }

    /// <summary>
    /// Removes the tokens this step does not allow (sets their logits to −∞); returns how many are left. Neither version
    /// sorts the vocabulary: version 2's tokens are those above a surprise bound, version 1's the k most likely.
    /// </summary>
    public int Truncate(Span<float> logits) => _version == 2 ? TruncateV2(logits) : TruncateV1(logits);

    /// <summary>Keeps each token whose surprise −log₂ p is at most μ (those are the most likely ones), else the most likely alone.</summary>
    private int TruncateV2(Span<float> logits)
    {
        double total = FiniteLogits.ExpSum(logits, out float max);
        int keep = 0;
        foreach (float logit in logits)
        {
            keep += logit != float.NegativeInfinity && Allowed(logit, max, total) ? 1 : 0;
        }

        // None within μ: the most likely alone (the first of the largest logits, as a sort by logit then index puts it).
        int alone = keep == 0 ? logits.IndexOf(max) : -1;
        for (int i = 0; i < logits.Length; i++)
        {
            if (logits[i] != float.NegativeInfinity && (keep == 0 ? i != alone : !Allowed(logits[i], max, total)))
            {
                logits[i] = float.NegativeInfinity;
            }
        }

        return Math.Max(keep, 1);
    }

    private bool Allowed(float logit, float max, double total) => -Math.Log2(Math.Exp(logit - max) / total) <= Mu;

    /// <summary>Keeps the k most likely tokens (by logit, then index), k from the Zipf exponent of the 100 most likely and μ.</summary>
    private int TruncateV1(Span<float> logits)
    {
        int finite = FiniteLogits.Count(logits);
        int[] head = TopPFilter.SortedHead(logits, Math.Min(ZipfTokens, finite));
        int keep = KeepV1(logits, head, finite);
        int[] kept = keep <= head.Length ? head : TopPFilter.SortedHead(logits, keep);
        float smallestKept = logits[kept[keep - 1]];
        int lastKeptIndex = kept[keep - 1];
        for (int i = 0; i < logits.Length; i++)
        {
            // Below the smallest kept logit, or equal to it but after it in the (logit desc, index asc) order.
            if (logits[i] < smallestKept || (logits[i] == smallestKept && i > lastKeptIndex))
            {
                logits[i] = float.NegativeInfinity;
            }
        }

        return keep;
    }

    /// <summary>Moves μ after the draw: <paramref name="probability"/> is the drawn token's in the renormalised, truncated distribution.</summary>
    public void Observe(double probability) => Mu -= _eta * (-Math.Log2(probability) - _tau);

    /// <summary>Version 1's k, at most <paramref name="finite"/>: <paramref name="order"/> holds the most likely tokens, best first.</summary>
    private int KeepV1(ReadOnlySpan<float> logits, int[] order, int finite)
    {
        // The Zipf exponent s fitted by least squares to log(p_i / p_{i+1}) against log((i + 2) / (i + 1)).
        double sumTB = 0, sumTT = 0;
        for (int i = 0; i < ZipfTokens - 1 && i < order.Length - 1; i++)
        {
            double t = Math.Log((i + 2) / (double)(i + 1));
            double b = logits[order[i]] - logits[order[i + 1]];
            sumTB += t * b;
            sumTT += t * t;
        }

        double s = sumTB / sumTT;
        double epsilon = s - 1;
        double k = Math.Pow(epsilon * Math.Pow(2, Mu) / (1 - Math.Pow(_vocabularySize, -epsilon)), 1 / s);
        return (int)Math.Clamp(double.IsNaN(k) ? 1 : k, 1, finite);
    }
}
