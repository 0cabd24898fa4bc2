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

    /// <summary>Removes the tokens this step does not allow (sets their logits to −∞); returns how many are left.</summary>
    public int Truncate(Span<float> logits)
    {
        int[] order = TopPFilter.SortedHead(logits, FiniteLogits.Count(logits));
        float max = logits[order[0]];
        double total = 0;
        foreach (int i in order)
        {
            total += Math.Exp(logits[i] - max);
        }

        int keep = _version == 2 ? KeepV2(logits, order, max, total) : KeepV1(logits, order);
        for (int r = keep; r < order.Length; r++)
        {
            logits[order[r]] = float.NegativeInfinity;
        }

        return keep;
    }

    /// <summary>Moves μ after the draw: <paramref name="probability"/> is the drawn token's in the renormalised, truncated distribution.</summary>
    public void Observe(double probability) => Mu -= _eta * (-Math.Log2(probability) - _tau);

    private int KeepV2(ReadOnlySpan<float> logits, int[] order, float max, double total)
    {
        int keep = 0;
        while (keep < order.Length && -Math.Log2(Math.Exp(logits[order[keep]] - max) / total) <= Mu)
        {
            keep++;
        }

        return Math.Max(keep, 1);
    }

    private int KeepV1(ReadOnlySpan<float> logits, int[] order)
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
        return (int)Math.Clamp(double.IsNaN(k) ? 1 : k, 1, order.Length);
    }
}
