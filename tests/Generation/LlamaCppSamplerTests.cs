using LLama.Native;
using QwenSharp.Sampling;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Generation;

/// <summary>
/// The samplers QwenSharp takes from llama.cpp (and typical-p, which transformers and llama.cpp share) against
/// llama.cpp's own, run in-process through LLamaSharp on the same candidate logits: the tokens each leaves are the same;
/// mirostat's truncation is the same at every step of a run in which μ follows the tokens llama.cpp drew.
/// </summary>
public sealed class LlamaCppSamplerTests
{
    private const int Vocabulary = 2000;

    /// <summary>Logits of a peaked distribution: a few likely tokens (<paramref name="peaks"/>) over a long tail, as a language model's are.</summary>
    private static float[] Logits(int seed, double spread = 3, int peaks = 4)
    {
        var random = new Random(seed);
        float[] logits = new float[Vocabulary];
        for (int i = 0; i < logits.Length; i++)
        {
            double u = 1 - random.NextDouble(), v = random.NextDouble();
            logits[i] = (float)(spread * Math.Sqrt(-2 * Math.Log(u)) * Math.Cos(2 * Math.PI * v));
        }

        for (int i = 0; i < peaks; i++)
        {
            logits[random.Next(Vocabulary)] += (float)(8 + (2 * i));
        }

        return logits;
    }

    private static int[] Kept(float[] logits) => [.. Enumerable.Range(0, logits.Length).Where(i => !float.IsNegativeInfinity(logits[i]))];

    [Theory]
    [InlineData(0.2, 1)]
    [InlineData(0.5, 2)]
    [InlineData(0.9, 3)]
    [InlineData(0.95, 4)]
    [InlineData(0.99, 5)]
    public void TypicalP_KeepsWhatLlamaCppsTypicalKeeps(double mass, int seed)
    {
        // No peaks: typical sampling keeps the one most likely token of a peaked distribution, which would say nothing.
        foreach (double spread in (double[])[1, 2])
        {
            float[] logits = Logits(seed, spread, peaks: 0);
            (int[] expected, _, _) = LlamaCpp.ApplySamplers(logits, c => c.AddTypical((float)mass, 1));

            float[] ours = (float[])logits.Clone();
            TypicalFilter.Apply(ours, mass);

            Assert.True(expected.Length > 1 && expected.Length < Vocabulary, $"mass {mass}: llama.cpp kept {expected.Length}: the case says nothing");
            Assert.Equal(expected, Kept(ours));
        }
    }

    [Theory]
    [InlineData(0.5)]
    [InlineData(1.0)]
    [InlineData(2.0)]
    [InlineData(3.0)]
    public void TopNSigma_KeepsWhatLlamaCppsKeeps(double n)
    {
        for (int seed = 10; seed < 13; seed++)
        {
            float[] logits = Logits(seed);
            (int[] expected, _, _) = LlamaCpp.ApplySamplers(logits, c => c.AddTopNSigma((float)n));

            float[] ours = (float[])logits.Clone();
            TopNSigmaFilter.Apply(ours, n);

            Assert.Equal(expected, Kept(ours));
        }
    }

    [Theory]
    [InlineData(0.01)]
    [InlineData(0.05)]
    [InlineData(0.1)]
    [InlineData(0.2)]
    [InlineData(0.6)]
    public void Xtc_AtCertainty_RemovesWhatLlamaCppsRemoves(double threshold)
    {
        var acted = 0;
        for (int seed = 20; seed < 26; seed++)
        {
            float[] logits = Logits(seed, spread: 1);
            (int[] expected, _, _) = LlamaCpp.ApplySamplers(logits, c => c.AddXTC(1f, (float)threshold, 1, 7));

            float[] ours = (float[])logits.Clone();
            XtcFilter.Apply(ours, 1, threshold, 0.5);

            Assert.Equal(expected, Kept(ours));
            acted += expected.Length < Vocabulary ? 1 : 0;
        }

        Assert.True(threshold > 0.5 ? acted == 0 : acted > 0, $"threshold {threshold}: XTC acted on {acted} of 6");
        float[] untouched = Logits(20, spread: 1);
        XtcFilter.Apply(untouched, 0.3, threshold, 0.31);
        Assert.Equal(Vocabulary, Kept(untouched).Length);
    }

    [Theory]
    [InlineData(1.0, 0.5, 1.0)]
    [InlineData(0.8, 0.6, 2.0)]
    [InlineData(0.3, 1.0, 0.5)]
    public void DynamicTemperature_ScalesAsLlamaCppsTempExt(double temperature, double range, double exponent)
    {
        foreach ((int seed, double spread) in ((int, double)[])[(30, 1), (31, 3), (32, 0.3)])
        {
            float[] logits = Logits(seed, spread);
            LlamaCpp.ApplySamplers(logits, c => c.AddDynamicTemperature((float)temperature, (float)range, (float)exponent), out float[] expected);

            float[] ours = (float[])logits.Clone();
            DynamicTemperature.Apply(ours, temperature, range, exponent);

            for (int i = 0; i < ours.Length; i++)
            {
                Assert.True(Math.Abs(expected[i] - ours[i]) <= 1e-4 * Math.Max(1, Math.Abs(expected[i])), $"token {i}: {ours[i]} against llama.cpp's {expected[i]}");
            }
        }

        double step = DynamicTemperature.Of(Logits(31, 3), temperature, range, exponent);
        Assert.InRange(step, Math.Max(0, temperature - range), temperature + range);
    }

    /// <summary>
    /// The sampler with a dynamic temperature: at a tiny one every draw is the argmax (the filters' candidates divided by
    /// it); at a wide one the draws spread, as with the plain temperature.
    /// </summary>
    [Fact]
    public void TheSampler_TakesTheDynamicTemperature()
    {
        float[] logits = Logits(40, spread: 1, peaks: 0);
        int argmax = Array.IndexOf(logits, logits.Max());
        var cool = new TokenSampler(new SamplingOptions { DoSample = true, Temperature = 0.001, DynamicTemperatureRange = 0.0005 }, Vocabulary, 5);
        var warm = new TokenSampler(new SamplingOptions { DoSample = true, Temperature = 1, DynamicTemperatureRange = 0.5 }, Vocabulary, 5);

        int[] cooled = [.. Enumerable.Range(0, 50).Select(_ => cool.Next(logits, [], []))];
        int[] warmed = [.. Enumerable.Range(0, 50).Select(_ => warm.Next(logits, [], []))];

        Assert.All(cooled, t => Assert.Equal(argmax, t));
        Assert.True(warmed.Distinct().Count() > 10, $"{warmed.Distinct().Count()} distinct tokens in 50 warm draws");
    }

    [Theory]
    [InlineData(1, 5.0, 0.1)]
    [InlineData(1, 3.0, 0.5)]
    [InlineData(2, 5.0, 0.1)]
    [InlineData(2, 2.0, 0.3)]
    public void Mirostat_TruncatesAsLlamaCppDoes_StepAfterStep(int version, double tau, double eta)
    {
        var ours = new Mirostat(version, tau, eta, Vocabulary);
        using SafeLLamaSamplerChainHandle llama = LlamaCpp.SamplerChain();
        if (version == 1)
        {
            llama.AddMirostat1Sampler(Vocabulary, 42, (float)tau, (float)eta, Mirostat.ZipfTokens);
        }
        else
        {
            llama.AddMirostat2Sampler(42, (float)tau, (float)eta);
        }

        var sizes = new HashSet<int>();
        for (int step = 0; step < 24; step++)
        {
            float[] logits = Logits(100 + step, spread: 1 + (step % 3));
            (int size, int drawn) = Apply(llama, logits);

            float[] truncated = (float[])logits.Clone();
            Assert.Equal(size, ours.Truncate(truncated));
            Assert.False(float.IsNegativeInfinity(truncated[drawn]), $"step {step}: llama.cpp drew token {drawn}, which our truncation removed");
            ours.Observe(Probability(truncated, drawn));
            sizes.Add(size);
        }

        Assert.True(sizes.Count > 2, $"the truncation took {sizes.Count} sizes: the case says nothing");
    }

    /// <summary>One step of a chain that keeps its state: how many candidates it left, and the id it drew.</summary>
    private static (int Size, int Drawn) Apply(SafeLLamaSamplerChainHandle chain, float[] logits)
    {
        LLamaTokenDataArray array = LLamaTokenDataArray.Create(logits);
        using (LLamaTokenDataArrayNative.Create(array, out LLamaTokenDataArrayNative native))
        {
            chain.Apply(ref native);
            return ((int)native.Size, (int)native.Data[(int)native.Selected].ID);
        }
    }

    private static double Probability(float[] logits, int token)
    {
        double max = logits.Max(), total = logits.Sum(l => float.IsNegativeInfinity(l) ? 0 : Math.Exp(l - max));
        return Math.Exp(logits[token] - max) / total;
    }
}
