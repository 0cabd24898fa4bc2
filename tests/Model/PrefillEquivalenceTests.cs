using QwenSharp.Backend;
using QwenSharp.Cpu;
using QwenSharp.Generation;
using QwenSharp.Qwen2;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Model;

/// <summary>
/// How a prompt reaches the KV cache must not change the logits: one batched pass, token by token, or in
/// chunks; and sequences sharing a batch (each in its own cache slot) must not see each other.
/// </summary>
public sealed class PrefillEquivalenceTests
{
    [SkippableTheory]
    [InlineData("tiny-qwen2", "cpu")]
    [InlineData("stories260K", "cpu")]
    [InlineData("stories260K", TestBackends.Gpu)] // tiny-qwen2's 151936-row head takes lavapipe a minute; ReferenceModelTests run it there
    public void Forward_OnePassTokenByTokenOrChunks_GiveTheSameLogits(string fixture, string backendName)
    {
        int[] prompt = Reference.Load(fixture).PromptIds;
        using IBackend backend = TestBackends.Create(backendName);
        using Qwen2Model model = Qwen2Model.Load(Fixtures.ModelDirectory(fixture), backend);

        float[][] onePass = Logits(model, prompt, chunk: prompt.Length);
        foreach (int chunk in new[] { 1, 5, 7 })
        {
            float[][] chunked = Logits(model, prompt, chunk);
            for (int p = 0; p < prompt.Length; p++)
            {
                double scale = onePass[p].Max(Math.Abs);
                double error = onePass[p].Zip(chunked[p], (a, b) => Math.Abs(a - b)).Max();
                Assert.True(error <= 1e-5 * Math.Max(1, scale), $"chunk {chunk}, position {p}: logits differ by {error:E2}");
            }
        }
    }

    [SkippableTheory]
    [MemberData(nameof(TestBackends.CpuAndGpuData), MemberType = typeof(TestBackends))]
    public void Generate_BatchOfPromptsOfDifferentLengths_EqualsEachAlone(string backendName)
    {
        using IBackend backend = TestBackends.Create(backendName);
        using Qwen2Model model = Qwen2Model.Load(Fixtures.DemoModel, backend);
        // Eleven sequences: a decode step of more rows than one matrix-vector pass takes (the GPU's GEMM path).
        int[][] prompts = [[1, 403, 407], [1], [1, 300, 22, 401, 12, 88, 260], [1, 5], [1, 6], [1, 7], [1, 8], [1, 9], [1, 10], [1, 11, 12], [1, 13]];
        var options = new GenerationOptions { MaxNewTokens = 40, IgnoreEos = true };

        GenerationResult batch = Generator.Greedy(model, prompts, options);

        for (int s = 0; s < prompts.Length; s++)
        {
            GenerationResult alone = Generator.Greedy(model, [prompts[s]], options);
            Assert.Equal(alone.Sequences[0].Ids, batch.Sequences[s].Ids);
        }
    }

    [Theory]
    [InlineData("""{"eos_token_id": [511, 378]}""")]
    [InlineData(null)]
    public void Generate_EosIdFromConfigs_StopsAndEndsWithTheEosId(string? generationConfig)
    {
        // llama2.c's greedy story from BOS begins 403 407 261 378: make 378 an EOS id, in generation_config.json
        // (as a list, beside an id never produced) or, without that file, in config.json.
        string dir = Fixtures.TempDirectory();
        File.Copy(Path.Combine(Fixtures.DemoModel, "model.safetensors"), Path.Combine(dir, "model.safetensors"));
        string config = File.ReadAllText(Path.Combine(Fixtures.DemoModel, "config.json"));
        if (generationConfig is null)
        {
            config = config.Replace("\"eos_token_id\": 2", "\"eos_token_id\": 378", StringComparison.Ordinal);
        }
        else
        {
            File.WriteAllText(Path.Combine(dir, "generation_config.json"), generationConfig);
        }

        File.WriteAllText(Path.Combine(dir, "config.json"), config);
        using var backend = new CpuBackend();
        using Qwen2Model model = Qwen2Model.Load(dir, backend);

        GenerationResult result = Generator.Greedy(model, [[1]], new GenerationOptions { MaxNewTokens = 50 });

        Assert.Equal([403, 407, 261, 378], result.Sequences[0].Ids);
        Assert.Equal(StopReason.Eos, result.Sequences[0].StopReason);
    }

    [Fact]
    public void Generate_ContextSmallerThanRequest_StopsAtTheContext()
    {
        using var backend = new CpuBackend();
        using Qwen2Model model = Qwen2Model.Load(Fixtures.DemoModel, backend);

        GenerationResult result = Generator.Greedy(model, [[1, 403, 407]], new GenerationOptions { MaxNewTokens = 100, IgnoreEos = true, Context = 10 });

        // Positions 0..9 can be fed; the token sampled after position 9 is the 8th new one.
        Assert.Equal(8, result.Sequences[0].Ids.Count);
        Assert.Equal(StopReason.Length, result.Sequences[0].StopReason);
    }

    [Fact]
    public void Generate_ZeroNewTokens_ReadsNothingAndStopsForLength()
    {
        using var backend = new CpuBackend();
        using Qwen2Model model = Qwen2Model.Load(Fixtures.DemoModel, backend);

        GenerationResult result = Generator.Greedy(model, [[1, 403]], new GenerationOptions { MaxNewTokens = 0 });

        Assert.Empty(result.Sequences[0].Ids);
        Assert.Equal(StopReason.Length, result.Sequences[0].StopReason);
        Assert.Equal(0, result.PrefillTokensPerSecond);
        Assert.Equal(0, result.DecodeTokensPerSecond);
    }

    [Fact]
    public void Generate_PromptLongerThanContext_ThrowsSayingBothLengths()
    {
        using var backend = new CpuBackend();
        using Qwen2Model model = Qwen2Model.Load(Fixtures.DemoModel, backend);
        var e = Assert.Throws<ArgumentException>(() => Generator.Greedy(model, [[1, 2, 3, 4, 5]], new GenerationOptions { Context = 4 }));
        Assert.Contains("prompt has 5 tokens, more than the context of 4", e.Message);
    }

    private static float[][] Logits(Qwen2Model model, int[] prompt, int chunk)
    {
        using KvCache cache = model.CreateKvCache(1, prompt.Length);
        using ForwardState state = model.CreateState(chunk, chunk);
        var batch = new TokenBatch(chunk);
        var logits = new float[prompt.Length][];
        for (int start = 0; start < prompt.Length; start += chunk)
        {
            batch.Clear();
            int end = Math.Min(start + chunk, prompt.Length);
            for (int p = start; p < end; p++)
            {
                batch.Add(prompt[p], p, 0, wantLogits: true);
            }

            model.Forward(batch, cache, state);
            for (int p = start; p < end; p++)
            {
                logits[p] = state.LogitsOf(p - start).ToArray();
            }
        }

        return logits;
    }
}
