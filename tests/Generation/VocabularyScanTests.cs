using QwenSharp.Generation;
using QwenSharp.Sampling;

namespace QwenSharp.Tests.Generation;

/// <summary>
/// The scans a sampled (or greedy) token makes over the whole vocabulary, eight logits at a time: the k-th largest, the
/// top-k mask, the argmax, and top-k's candidates gathered before the temperature divides them. Each against the definition
/// written out here with LINQ over the same floats (sorting, dividing every logit), on vocabularies with ties, −∞, signed
/// zeros and lengths that leave a tail.
/// </summary>
public sealed class VocabularyScanTests
{
    public static TheoryData<int, int> Shapes() => new() { { 7, 3 }, { 8, 1 }, { 67, 5 }, { 1000, 20 }, { 151_936, 40 }, { 4099, 4098 } };

    /// <summary>Random logits with many ties (a coarse grid), some removed (−∞), and both zeros.</summary>
    private static float[] Logits(int length, int seed)
    {
        var random = new Random(seed);
        float[] logits = [.. Enumerable.Range(0, length).Select(_ => (float)Math.Round((random.NextDouble() * 12) - 6, 1))];
        for (int i = 0; i < length; i += 13)
        {
            logits[i] = float.NegativeInfinity;
        }

        logits[length / 2] = -0f;
        logits[length - 1] = 0f;
        return logits;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void TheKthLargestAndTheTopKMaskAreTheSortedVocabularys(int length, int k)
    {
        float[] logits = Logits(length, length + k);
        float expected = logits.OrderByDescending(l => l).ElementAt(k - 1);

        Assert.Equal(expected, TopKFilter.KthLargest(logits, k));

        float[] masked = (float[])logits.Clone();
        TopKFilter.Apply(masked, k);
        Assert.Equal(logits.Select(l => l < expected ? float.NegativeInfinity : l), masked);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void TheArgmaxIsTheFirstOfTheLargest(int length, int k)
    {
        float[] logits = Logits(length, k);
        // The largest twice, the second time first: the earlier one wins; −0 and +0 tie, the earlier one wins.
        logits[length - 1] = 9f;
        logits[length / 3] = 9f;

        Assert.Equal(Array.IndexOf(logits, 9f), LogProbs.ArgMax(logits));

        float[] zeros = [.. logits.Select(_ => float.NegativeInfinity)];
        zeros[length / 2] = -0f;
        zeros[length - 1] = 0f;
        Assert.Equal(length / 2, LogProbs.ArgMax(zeros));
        Assert.Equal(0, LogProbs.ArgMax([.. logits.Select(_ => float.NegativeInfinity)]));
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void LogProbsAreTheLogSoftmaxAndTheTopAreTheSortedVocabularys(int length, int k)
    {
        // log Σ exp in double against the sum written out (an ulp or two per exp apart), and the k likeliest in order, the
        // lower id first on ties (the grid makes many).
        float[] logits = Logits(length, 5 * k);
        double max = logits.Max();
        double expected = max + Math.Log(logits.Sum(l => Math.Exp(l - max)));
        double logSumExp = LogProbs.LogSumExp(logits);
        int top = Math.Min(k, 50);

        Assert.Equal(expected, logSumExp, 1e-12);
        TokenLogprob[] likeliest = LogProbs.Top(logits, top, logSumExp);
        int[] order = [.. Enumerable.Range(0, length).OrderByDescending(i => logits[i]).ThenBy(i => i).Take(top)];
        Assert.Equal(order, likeliest.Select(t => t.Id));
        Assert.All(likeliest, t => Assert.Equal(logits[t.Id] - logSumExp, t.Logprob));
    }

    [Fact]
    public void AnArgmaxOverANaNIsTheOneAtATimeLoops()
    {
        // No logit is greater than NaN, nor NaN than any: the loop keeps its first pick.
        float[] logits = Logits(100, 3);
        logits[40] = float.NaN;
        logits[70] = 8f;

        Assert.Equal(70, LogProbs.ArgMax(logits));
        logits[0] = float.NaN;
        Assert.Equal(0, LogProbs.ArgMax(logits));
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void ADrawIsTheInverseOfTheCumulativeDistribution(int length, int k)
    {
        // The token where the running sum of exp(l - max), in index order, passes u times the total; removed tokens never.
        float[] logits = Logits(length, 3 * k);
        for (int i = 0; i < Math.Min(length, 40); i++)
        {
            logits[i] = float.NegativeInfinity;   // whole blocks removed
        }

        logits[length - 1] = 1f;
        float max = logits.Max();
        double[] cumulative = new double[length];
        double running = 0;
        for (int i = 0; i < length; i++)
        {
            running += logits[i] == float.NegativeInfinity ? 0 : Math.Exp(logits[i] - max);
            cumulative[i] = running;
        }

        var random = new Random(k);
        foreach (double u in (double[])[0, 1e-300, .. Enumerable.Range(0, 300).Select(_ => random.NextDouble()), 1 - 1e-16])
        {
            double target = u * running;
            int expected = Array.FindIndex(cumulative, c => c > target);
            int drawn = CategoricalDraw.Draw(logits, u);

            Assert.NotEqual(float.NegativeInfinity, logits[drawn]);
            // The vector exp and the blocks' sums may move a boundary by a few ulps: only a target that close may differ.
            if (drawn != expected)
            {
                Assert.True(Math.Abs(cumulative[Math.Min(drawn, expected)] - target) < 1e-9 * running, $"u {u}: drew {drawn}, the definition {expected}");
            }
        }
    }

    [Theory]
    [InlineData(3f)]
    [InlineData(0.7f)]
    [InlineData(7.3f)]
    public void TopKKeepsWhatTheTemperatureMakesTieWithTheKth(float temperature)
    {
        // Two logits one float apart whose quotients round to the same float: after the temperature they tie, and top-k
        // keeps ties with the k-th. Dividing only what top-k keeps must keep the lower one too.
        float upper = 1f;
        while (MathF.BitDecrement(upper) / temperature != upper / temperature)
        {
            upper = MathF.BitIncrement(upper);
        }

        float lower = MathF.BitDecrement(upper);
        float[] logits = [.. Enumerable.Range(0, 300).Select(i => -2f + (i * 0.001f))];
        logits[17] = 2f;
        logits[250] = upper;
        logits[90] = lower;
        const int K = 2;
        float[] divided = [.. logits.Select(l => l / temperature)];
        float kth = divided.OrderByDescending(d => d).ElementAt(K - 1);
        int[] kept = [.. Enumerable.Range(0, logits.Length).Where(i => divided[i] >= kth)];
        double[] weights = [.. kept.Select(i => Math.Exp(divided[i] - divided.Max()))];

        var sampler = new TokenSampler(new SamplingOptions { DoSample = true, Temperature = temperature, TopK = K }, logits.Length, 5);
        int token = sampler.Next(logits, [], []);
        TokenLogprobs drawn = sampler.LastDraw(token, 10);

        Assert.Equal([17, 90, 250], kept);
        Assert.Equal(kept, drawn.Top.Select(t => t.Id).Order());
        Assert.All(drawn.Top, t => Assert.Equal(weights[Array.IndexOf(kept, t.Id)] / weights.Sum(), Math.Exp(t.Logprob), 1e-6));
    }

    [Theory]
    [InlineData(0.5f, 20)]
    [InlineData(1.3f, 3)]
    public void GatheredCandidatesAreTheDividedVocabularysTopK(float temperature, int k)
    {
        // The draw's distribution over what top-k left, against every logit divided and masked the definition's way.
        float[] logits = Logits(151_936, 17);
        float[] divided = [.. logits.Select(l => l / temperature)];
        float kth = divided.OrderByDescending(d => d).ElementAt(k - 1);
        int[] kept = [.. Enumerable.Range(0, logits.Length).Where(i => divided[i] >= kth && divided[i] != float.NegativeInfinity)];
        double max = divided.Max();
        double total = kept.Sum(i => Math.Exp(divided[i] - max));

        var sampler = new TokenSampler(new SamplingOptions { DoSample = true, Temperature = temperature, TopK = k }, logits.Length, 9);
        int token = sampler.Next(logits, [], []);
        TokenLogprobs drawn = sampler.LastDraw(token, kept.Length + 5);

        Assert.Contains(token, kept);
        Assert.Equal(kept, drawn.Top.Select(t => t.Id).Order());
        Assert.All(drawn.Top, t => Assert.Equal(Math.Exp(divided[t.Id] - max) / total, Math.Exp(t.Logprob), 1e-6));
    }
}
