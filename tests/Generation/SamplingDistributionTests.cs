using QwenSharp.Generation;
using QwenSharp.Sampling;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Generation;

/// <summary>
/// Sampled frequencies against the exact distribution, computed here from the float64 reference logits of
/// stories260K by a plain transcription of transformers' processors (sort-based, in double). Each setting
/// also has a wrong variant (temperature after top-p, no repetition penalty, ...) whose distribution is
/// visibly different, and the samples must reject it: the test can tell the orders apart.
/// </summary>
public class SamplingDistributionTests
{
    private const int Draws = 20_000;

    public sealed record Setting(string Name, SamplingOptions Options, Func<double[], int[], double[]> Wrong)
    {
        public override string ToString() => Name;
    }

    public static TheoryData<Setting> Settings() =>
    [
        new Setting("temperature 0.7", new SamplingOptions { DoSample = true, Temperature = 0.7, TopK = 0 },
            (logits, prompt) => Exact(logits, prompt, new SamplingOptions { DoSample = true, Temperature = 1.0, TopK = 0 })),
        new Setting("temperature 1.5, top-k 20, top-p 0.9", new SamplingOptions { DoSample = true, Temperature = 1.5, TopK = 20, TopP = 0.9 },
            (logits, prompt) => Exact(logits, prompt, new SamplingOptions { DoSample = true, Temperature = 1.5, TopK = 20, TopP = 0.9 }, temperatureLast: true)),
        new Setting("temperature 2, top-p 0.6 (temperature after top-p is wrong)", new SamplingOptions { DoSample = true, Temperature = 2, TopK = 0, TopP = 0.6 },
            (logits, prompt) => Exact(logits, prompt, new SamplingOptions { DoSample = true, Temperature = 2, TopK = 0, TopP = 0.6 }, temperatureLast: true)),
        new Setting("repetition penalty 1.8, temperature 0.9", new SamplingOptions { DoSample = true, Temperature = 0.9, TopK = 0, RepetitionPenalty = 1.8 },
            (logits, prompt) => Exact(logits, prompt, new SamplingOptions { DoSample = true, Temperature = 0.9, TopK = 0 })),
        new Setting("min-p 0.05 after temperature 1.4", new SamplingOptions { DoSample = true, Temperature = 1.4, TopK = 0, MinP = 0.05 },
            (logits, prompt) => Exact(logits, prompt, new SamplingOptions { DoSample = true, Temperature = 1.4, TopK = 0, MinP = 0.05 }, temperatureLast: true)),
        new Setting("presence 1.0 and frequency 0.5 over generated tokens", new SamplingOptions { DoSample = true, TopK = 0, PresencePenalty = 1.0, FrequencyPenalty = 0.5 },
            (logits, prompt) => Exact(logits, prompt, new SamplingOptions { DoSample = true, TopK = 0 })),
    ];

    [Theory]
    [MemberData(nameof(Settings))]
    public void DrawsFollowTheExactDistributionAndRejectTheWrongOne(Setting setting)
    {
        // The presence/frequency setting penalises generated tokens: let the two likeliest next tokens stand
        // for them, the likeliest twice, so both penalties matter.
        (float[] logits, int[] prompt, int[] likeliest) = LastRow();
        int[] generated = setting.Options.PresencePenalty != 0 ? [likeliest[0], likeliest[1], likeliest[0]] : [];
        AssertDraws(logits, prompt, generated, setting.Options, setting.Wrong(Doubles(logits), prompt));
    }

    [Theory]
    [MemberData(nameof(Settings))]
    public void EachDrawReportsTheExactDistributionItWasDrawnFrom(Setting setting)
    {
        // llama-server's post_sampling_probs: the token's probability after every sampler, and the likeliest tokens left.
        (float[] logits, int[] prompt, int[] likeliest) = LastRow();
        int[] generated = setting.Options.PresencePenalty != 0 ? [likeliest[0], likeliest[1], likeliest[0]] : [];
        double[] exact = Exact(Doubles(logits), prompt, setting.Options, generated: generated);
        int[] order = [.. Enumerable.Range(0, exact.Length).Where(t => exact[t] > 0).OrderByDescending(t => exact[t]).ThenBy(t => t)];
        var sampler = new TokenSampler(setting.Options, logits.Length, 99);
        for (int draw = 0; draw < 20; draw++)
        {
            int token = sampler.Next(logits, prompt, generated);
            TokenLogprobs reported = sampler.LastDraw(token, 8);

            Assert.Equal(token, reported.Id);
            Assert.Equal(exact[token], Math.Exp(reported.Logprob), 1e-5);
            Assert.Equal(order.Take(8), reported.Top.Select(t => t.Id));
            Assert.All(reported.Top, t => Assert.Equal(exact[t.Id], Math.Exp(t.Logprob), 1e-5));
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AGreedyDrawReportsAllItsMassOnTheTokenTaken(bool penalised)
    {
        // Greedy with a penalty reads processed logits; without, the raw ones: either way the draw is certain.
        (float[] logits, int[] prompt, int[] likeliest) = LastRow();
        var options = new SamplingOptions { DoSample = false, RepetitionPenalty = penalised ? 50 : 1 };
        var sampler = new TokenSampler(options, logits.Length, 0);

        int token = sampler.Next(logits, prompt, []);
        TokenLogprobs reported = sampler.LastDraw(token, 5);

        Assert.Equal(penalised ? Exact(Doubles(logits), prompt, options with { DoSample = true, TopK = 0 }).Index().MaxBy(p => p.Item).Index : likeliest[0], token);
        Assert.Equal(0, reported.Logprob);
        Assert.Equal([new TokenLogprob(token, 0)], reported.Top);
    }

    [Fact]
    public void TopKWithOnlyOneTokenLeftReportsOnlyThatToken()
    {
        // Tokens a filter removed have no probability left, and llama-server leaves those out of top_probs.
        (float[] logits, int[] prompt, int[] likeliest) = LastRow();
        var sampler = new TokenSampler(new SamplingOptions { DoSample = true, TopK = 1 }, logits.Length, 3);

        int token = sampler.Next(logits, prompt, []);
        TokenLogprobs reported = sampler.LastDraw(token, 10);

        Assert.Equal(likeliest[0], token);
        Assert.Equal([new TokenLogprob(token, 0)], reported.Top);
    }

    [Fact]
    public void LogitBiasComesBeforeThePenaltiesAsInLlamaCppAndVllm()
    {
        // Biases on the two likeliest tokens, which were also generated (so the repetition penalty takes them too): the
        // penalty divides a positive biased logit, where applied first it would have been divided before the bias.
        (float[] logits, int[] prompt, int[] likeliest) = LastRow();
        int[] generated = [likeliest[0], likeliest[1]];
        var bias = new Dictionary<int, float> { [likeliest[0]] = 3f, [likeliest[1]] = -1.5f };
        var options = new SamplingOptions { DoSample = true, TopK = 0, RepetitionPenalty = 1.8, LogitBias = bias };
        double[] biasLast = Exact(Doubles(logits), prompt, options with { LogitBias = null }, generated: generated);
        foreach ((int token, float value) in bias)
        {
            biasLast[token] = Math.Log(biasLast[token]) + value;
        }

        AssertDraws(logits, prompt, generated, options, Softmax(biasLast));
    }

    /// <summary>The logits after reading stories260K's whole prompt (the last full-logits row), the tokens read so far, and the two likeliest next ones.</summary>
    private static (float[] Logits, int[] Prompt, int[] Likeliest) LastRow()
    {
        Reference reference = Reference.Load("stories260K");
        int vocab = reference.FullLogits.Length / reference.FullLogitsPositions.Length;
        int row = reference.FullLogitsPositions.Length - 1;
        int position = reference.FullLogitsPositions[row];
        float[] logits = reference.FullLogits[(row * vocab)..((row + 1) * vocab)];
        return (logits, reference.PromptIds[..(position + 1)], [.. Enumerable.Range(0, vocab).OrderByDescending(t => logits[t]).Take(2)]);
    }

    private static double[] Doubles(float[] logits) => [.. logits.Select(l => (double)l)];

    /// <summary>Draws from the sampler fit the exact distribution of <paramref name="options"/> and reject <paramref name="wrong"/>.</summary>
    private static void AssertDraws(float[] logits, int[] prompt, int[] generated, SamplingOptions options, double[] wrong)
    {
        int vocab = logits.Length;
        double[] exact = Exact(Doubles(logits), prompt, options, generated: generated);
        Assert.True(TotalVariation(exact, wrong) > 0.03, $"the wrong variant is too close to tell apart ({TotalVariation(exact, wrong):F4})");

        var sampler = new TokenSampler(options with { Seed = 1234 }, vocab, 1234);
        var counts = new int[vocab];
        for (int i = 0; i < Draws; i++)
        {
            counts[sampler.Next(logits, prompt, generated)]++;
        }

        Assert.All(Enumerable.Range(0, vocab).Where(t => exact[t] == 0), t => Assert.Equal(0, counts[t]));
        (double statistic, double critical) = ChiSquare(counts, exact);
        Assert.True(statistic < critical, $"chi-square {statistic:F1} >= {critical:F1} against the exact distribution");
        (double wrongStatistic, double wrongCritical) = ChiSquare(counts, wrong);
        Assert.True(wrongStatistic > wrongCritical || Enumerable.Range(0, vocab).Any(t => wrong[t] == 0 && counts[t] > 0),
            $"the samples do not reject the wrong distribution (chi-square {wrongStatistic:F1})");
    }

    [Fact]
    public void SameSeedSameTokensOtherSeedOtherTokens()
    {
        Reference reference = Reference.Load("stories260K");
        int vocab = reference.FullLogits.Length / reference.FullLogitsPositions.Length;
        float[] logits = reference.FullLogits[..vocab];
        var options = new SamplingOptions { DoSample = true, Temperature = 1.5, TopK = 0 };
        int[] Draw(ulong seed)
        {
            var sampler = new TokenSampler(options, vocab, seed);
            return [.. Enumerable.Range(0, 200).Select(_ => sampler.Next(logits, [], []))];
        }

        Assert.Equal(Draw(7), Draw(7));
        Assert.NotEqual(Draw(7), Draw(8));
    }

    [Fact]
    public void TheRandomStreamIsFixedAcrossMachines()
    {
        // xoshiro256** seeded by SplitMix64 from 0: the first outputs are fixed by the algorithm's definition.
        var random = new SeededRandom(0);
        Assert.Equal(0x99EC5F36CB75F2B4UL, random.NextUInt64());
        Assert.Equal(0xBF6E1F784956452AUL, random.NextUInt64());
    }

    /// <summary>
    /// transformers' processors, transcribed: repetition penalty, temperature, top-k, top-p (ascending sort, cumsum &lt;= 1 - p
    /// removed), min-p; before them OpenAI's logit bias, added first as llama.cpp's and vLLM's samplers add it.
    /// </summary>
    private static double[] Exact(double[] logits, int[] prompt, SamplingOptions o, bool temperatureLast = false, int[]? generated = null)
    {
        double[] s = (double[])logits.Clone();
        foreach ((int token, float bias) in o.LogitBias ?? new Dictionary<int, float>())
        {
            s[token] += bias;
        }

        foreach (int id in prompt.Concat(generated ?? []).Distinct())
        {
            s[id] = s[id] < 0 ? s[id] * o.RepetitionPenalty : s[id] / o.RepetitionPenalty;
        }

        if (generated is not null)
        {
            foreach (IGrouping<int, int> group in generated.GroupBy(t => t))
            {
                s[group.Key] -= o.PresencePenalty + o.FrequencyPenalty * group.Count();
            }
        }

        if (!temperatureLast)
        {
            s = [.. s.Select(x => x / o.Temperature)];
        }

        if (o.TopK > 0)
        {
            double kth = s.OrderByDescending(x => x).ElementAt(o.TopK - 1);
            s = [.. s.Select(x => x < kth ? double.NegativeInfinity : x)];
        }

        if (o.TopP < 1)
        {
            int[] ascending = [.. Enumerable.Range(0, s.Length).OrderBy(i => s[i]).ThenByDescending(i => i)];
            double[] p = Softmax(s);
            double cumulative = 0;
            for (int r = 0; r < ascending.Length - 1; r++)
            {
                cumulative += p[ascending[r]];
                if (cumulative <= 1 - o.TopP)
                {
                    s[ascending[r]] = double.NegativeInfinity;
                }
            }
        }

        if (o.MinP > 0)
        {
            double[] p = Softmax(s);
            double top = p.Max();
            s = [.. s.Select((x, i) => p[i] < o.MinP * top ? double.NegativeInfinity : x)];
        }

        if (temperatureLast)
        {
            s = [.. s.Select(x => x / o.Temperature)];
        }

        return Softmax(s);
    }

    private static double[] Softmax(double[] s)
    {
        double max = s.Max();
        double[] e = [.. s.Select(x => double.IsNegativeInfinity(x) ? 0 : Math.Exp(x - max))];
        double sum = e.Sum();
        return [.. e.Select(x => x / sum)];
    }

    private static double TotalVariation(double[] a, double[] b) => 0.5 * a.Zip(b).Sum(p => Math.Abs(p.First - p.Second));

    /// <summary>Pearson's statistic over bins expecting at least 5 draws (the rest pooled), and its 0.1% critical value.</summary>
    private static (double Statistic, double Critical) ChiSquare(int[] counts, double[] probabilities)
    {
        double statistic = 0, pooledExpected = 0, pooledObserved = 0;
        int bins = 0;
        for (int t = 0; t < counts.Length; t++)
        {
            double expected = probabilities[t] * Draws;
            if (expected >= 5)
            {
                statistic += (counts[t] - expected) * (counts[t] - expected) / expected;
                bins++;
            }
            else
            {
                pooledExpected += expected;
                pooledObserved += counts[t];
            }
        }

        if (pooledExpected > 0)
        {
            statistic += (pooledObserved - pooledExpected) * (pooledObserved - pooledExpected) / Math.Max(pooledExpected, 1e-9);
            bins++;
        }

        int df = Math.Max(1, bins - 1);
        // Wilson–Hilferty: the chi-square quantile for p = 0.001 (z = 3.09).
        double h = 2.0 / (9 * df);
        double critical = df * Math.Pow(1 - h + 3.09 * Math.Sqrt(h), 3);
        return (statistic, critical);
    }
}
