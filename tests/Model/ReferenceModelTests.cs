using QwenSharp.Backend;
using QwenSharp.Generation;
using QwenSharp.Qwen2;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Model;

/// <summary>
/// The forward pass against the fixtures' independent float64 reference: every position's top-10
/// log-probs, full logits at the listed positions, next-token log-probs, mean NLL, and the greedy
/// continuation through the KV cache. Each model runs on every CPU kernel path and on the GPU.
/// </summary>
public sealed class ReferenceModelTests
{
    public static TheoryData<string, string> ModelsAndBackends() => Every(TestBackends.All);

    public static TheoryData<string, string> ModelsOnCpuAndGpu() => Every(TestBackends.CpuAndGpu);

    private static TheoryData<string, string> Every(IReadOnlyList<string> backends)
    {
        var data = new TheoryData<string, string>();
        foreach (string model in Models)
        {
            foreach (string backend in backends)
            {
                data.Add(model, backend);
            }
        }

        return data;
    }

    private static readonly string[] Models = ["stories260K", "stories260K-qwen2-bf16", "tiny-qwen2", "tiny-qwen2-f16-sharded"];

    [SkippableTheory]
    [MemberData(nameof(ModelsAndBackends))]
    public void Score_EveryPosition_TopTenLogprobsMatchReference(string fixture, string backendName)
    {
        Reference reference = Reference.Load(fixture);
        using IBackend backend = TestBackends.Create(backendName);
        using Qwen2Model model = Qwen2Model.Load(Fixtures.ModelDirectory(fixture), backend);

        ScoreResult score = Scorer.Score(model, reference.PromptIds, top: 20);

        for (int p = 0; p < reference.Positions.Length; p++)
        {
            ReferencePosition expected = reference.Positions[p];
            PositionScore actual = score.Positions[p];
            Dictionary<int, double> ours = actual.Top.ToDictionary(t => t.Id, t => t.Logprob);
            for (int i = 0; i < expected.TopIds.Length; i++)
            {
                double expectedLogprob = expected.TopLogits[i] - expected.LogSumExp;
                Assert.True(ours.TryGetValue(expected.TopIds[i], out double logprob),
                    $"position {p}: reference top id {expected.TopIds[i]} is not among our top 20");
                Assert.True(Math.Abs(logprob - expectedLogprob) < 1e-3,
                    $"position {p}, id {expected.TopIds[i]}: logprob {logprob}, reference {expectedLogprob}");
            }

            // Our own top ten, in order, must be the reference's, except where two neighbours are closer than the tolerance.
            double tenth = expected.TopLogits[^1] - expected.LogSumExp;
            for (int i = 0; i < expected.TopIds.Length; i++)
            {
                TokenLogprob mine = actual.Top[i];
                if (mine.Id != expected.TopIds[i])
                {
                    double referenceAtRank = expected.TopLogits[i] - expected.LogSumExp;
                    Assert.True(Math.Abs(mine.Logprob - referenceAtRank) < 1e-3 || mine.Logprob < tenth + 1e-3,
                        $"position {p}, rank {i}: we rank id {mine.Id} ({mine.Logprob}), the reference id {expected.TopIds[i]} ({referenceAtRank})");
                }
            }

            Assert.Equal(expected.LogSumExp, actual.LogSumExp, 1e-3);
        }
    }

    [SkippableTheory]
    [MemberData(nameof(ModelsAndBackends))]
    public void Forward_ListedPositions_FullLogitsMatchReference(string fixture, string backendName)
    {
        Reference reference = Reference.Load(fixture);
        using IBackend backend = TestBackends.Create(backendName);
        using Qwen2Model model = Qwen2Model.Load(Fixtures.ModelDirectory(fixture), backend);
        AssertFullLogitsMatch(model, reference);
    }

    /// <summary>All vocab logits at the reference's listed positions, from one prefill pass, within f32 accuracy of float64.</summary>
    internal static void AssertFullLogitsMatch(Qwen2Model model, Reference reference)
    {
        foreach ((int position, double maxError, double scale) in FullLogitErrors(model, reference))
        {
            // An f32 engine is ~1e-4 relative to the float64 reference; over 1e-2 would be a bug.
            Assert.True(maxError <= 2e-4 * Math.Max(1, scale), $"position {position}: max |logit error| {maxError:E3} for logits up to {scale:F3}");
        }
    }

    /// <summary>At each of the reference's listed positions (one prefill pass): the largest |logit error| over the vocabulary, and the largest |logit|.</summary>
    internal static IEnumerable<(int Position, double MaxError, double Scale)> FullLogitErrors(Qwen2Model model, Reference reference)
    {
        float[][] logits = AllPositionLogits(model, reference.PromptIds);
        int vocab = model.Config.VocabSize;
        for (int r = 0; r < reference.FullLogitsPositions.Length; r++)
        {
            int position = reference.FullLogitsPositions[r];
            float[] expected = reference.FullLogits.AsSpan(r * vocab, vocab).ToArray();
            double maxError = 0, scale = 0;
            for (int i = 0; i < vocab; i++)
            {
                maxError = Math.Max(maxError, Math.Abs(logits[position][i] - expected[i]));
                scale = Math.Max(scale, Math.Abs(expected[i]));
            }

            yield return (position, maxError, scale);
        }
    }

    [SkippableTheory]
    [MemberData(nameof(ModelsOnCpuAndGpu))]
    public void Score_NextIdLogprobsAndMeanNll_MatchReference(string fixture, string backendName)
    {
        Reference reference = Reference.Load(fixture);
        using IBackend backend = TestBackends.Create(backendName);
        using Qwen2Model model = Qwen2Model.Load(Fixtures.ModelDirectory(fixture), backend);

        ScoreResult score = Scorer.Score(model, reference.PromptIds, top: 1);

        for (int p = 0; p < reference.Positions.Length; p++)
        {
            double? expected = reference.Positions[p].NextIdLogprob;
            Assert.Equal(expected is null, score.Positions[p].NextLogprob is null);
            if (expected is double e)
            {
                Assert.Equal(reference.PromptIds[p + 1], score.Positions[p].NextId);
                Assert.True(Math.Abs(score.Positions[p].NextLogprob!.Value - e) < 1e-3, $"position {p}: {score.Positions[p].NextLogprob} vs {e}");
            }
        }

        Assert.True(Math.Abs(score.MeanNll!.Value - reference.PromptMeanNll) < 1e-4, $"mean NLL {score.MeanNll} vs {reference.PromptMeanNll}");
        Assert.True(Math.Abs(score.Perplexity!.Value / reference.PromptPerplexity - 1) < 1e-3, $"perplexity {score.Perplexity} vs {reference.PromptPerplexity}");
    }

    [SkippableTheory]
    [MemberData(nameof(ModelsAndBackends))]
    public void GreedyGenerate_WithKvCache_ReproducesReferenceIds(string fixture, string backendName)
    {
        Reference reference = Reference.Load(fixture);
        using IBackend backend = TestBackends.Create(backendName);
        using Qwen2Model model = Qwen2Model.Load(Fixtures.ModelDirectory(fixture), backend);

        GenerationResult result = Generator.Greedy(model, [reference.PromptIds],
            new GenerationOptions { MaxNewTokens = reference.GreedyNewIds.Length, IgnoreEos = true });

        Assert.Equal(reference.GreedyNewIds, result.Sequences[0].Ids);
    }

    [SkippableTheory]
    [MemberData(nameof(TestBackends.CpuAndGpuData), MemberType = typeof(TestBackends))]
    public void GreedyGenerate_Stories260KFromBos_ReproducesLlama2cOutput(string backendName)
    {
        using var json = Fixtures.Json("stories260K", "llama2c_expected_greedy_ids.json");
        int[] expected = [.. json.RootElement.EnumerateArray().Select(e => e.GetInt32())];
        using IBackend backend = TestBackends.Create(backendName);
        using Qwen2Model model = Qwen2Model.Load(Fixtures.DemoModel, backend);

        // llama2.c prints BOS first and then 200 greedy steps; the prompt is BOS alone.
        GenerationResult result = Generator.Greedy(model, [[expected[0]]], new GenerationOptions { MaxNewTokens = expected.Length - 1, IgnoreEos = true });

        Assert.Equal(expected[1..], result.Sequences[0].Ids);
    }

    /// <summary>Every position's logits in one prefill pass, with the whole prompt in one step.</summary>
    internal static float[][] AllPositionLogits(Qwen2Model model, int[] prompt)
    {
        using var cache = model.CreateKvCache(1, prompt.Length);
        using ForwardState state = model.CreateState(prompt.Length, prompt.Length);
        var batch = new TokenBatch(prompt.Length);
        for (int p = 0; p < prompt.Length; p++)
        {
            batch.Add(prompt[p], p, 0, wantLogits: true);
        }

        model.Forward(batch, cache, state);
        return [.. Enumerable.Range(0, prompt.Length).Select(p => state.LogitsOf(p).ToArray())];
    }

    /// <summary>The logits of each position with the tokens fed one per forward step (the decode path).</summary>
    internal static float[][] OneTokenPerStepLogits(Qwen2Model model, int[] ids)
    {
        using var cache = model.CreateKvCache(1, ids.Length);
        using ForwardState state = model.CreateState(1, 1);
        var batch = new TokenBatch(1);
        var logits = new float[ids.Length][];
        for (int p = 0; p < ids.Length; p++)
        {
            batch.Clear();
            batch.Add(ids[p], p, 0, wantLogits: true);
            model.Forward(batch, cache, state);
            logits[p] = state.LogitsOf(0).ToArray();
        }

        return logits;
    }
}
