using QwenSharp.Backend;
using QwenSharp.Formats;
using QwenSharp.Generation;
using QwenSharp.Qwen2;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Model;

/// <summary>
/// A model whose KV cache holds f16 or bf16: every position's logits against the fixtures' float64 reference, within what
/// rounding each key and value to 11 (f16) or 8 (bf16) significant bits costs, and the greedy continuation through the
/// cache. On each CPU kernel path and the GPU.
/// </summary>
public sealed class KvCacheTypeModelTests
{
    public static TheoryData<string, string, DType> ModelsBackendsAndTypes()
    {
        var data = new TheoryData<string, string, DType>();
        foreach (string model in new[] { "stories260K", "tiny-qwen2" })
        {
            foreach (string backend in TestBackends.All)
            {
                data.Add(model, backend, DType.F16);
                data.Add(model, backend, DType.BF16);
            }
        }

        return data;
    }

    [SkippableTheory]
    [MemberData(nameof(ModelsBackendsAndTypes))]
    public void FullLogits_MatchReference_WithinTheCacheRounding(string fixture, string backendName, DType type)
    {
        Reference reference = Reference.Load(fixture);
        using IBackend backend = TestBackends.Create(backendName);
        using Qwen2Model model = Qwen2Model.Load(Fixtures.ModelDirectory(fixture), backend);
        model.KvCacheType = type;
        double worst = ReferenceModelTests.FullLogitErrors(model, reference).Max(e => e.MaxError / Math.Max(1, e.Scale));

        // Measured: f16 4.3e-4 to 9.4e-4, bf16 5.3e-3 to 7.5e-3 of the largest logit (an f32 cache is within 2e-4): about
        // eight times apart, as their 2^-11 and 2^-8 roundings are. A cache read at the wrong place or type is far beyond.
        double tolerance = type == DType.F16 ? 3e-3 : 2.5e-2;
        Assert.True(worst < tolerance, $"{type} cache: max |logit error| {worst:E3} of the largest logit, more than {tolerance:E1}");

        // And the cache did round: the logits are not an f32 cache's.
        float[][] logits = ReferenceModelTests.AllPositionLogits(model, reference.PromptIds);
        model.KvCacheType = DType.F32;
        float[][] exact = ReferenceModelTests.AllPositionLogits(model, reference.PromptIds);
        Assert.Contains(Enumerable.Range(0, logits.Length), p => !logits[p].AsSpan().SequenceEqual(exact[p]));
    }

    [SkippableTheory]
    [MemberData(nameof(ModelsBackendsAndTypes))]
    public void GreedyGenerate_ThroughTheCache_ReproducesReferenceIds(string fixture, string backendName, DType type)
    {
        Reference reference = Reference.Load(fixture);
        using IBackend backend = TestBackends.Create(backendName);
        using Qwen2Model model = Qwen2Model.Load(Fixtures.ModelDirectory(fixture), backend);
        model.KvCacheType = type;

        GenerationResult result = Generator.Greedy(model, [reference.PromptIds],
            new GenerationOptions { MaxNewTokens = reference.GreedyNewIds.Length, IgnoreEos = true });

        Assert.Equal(reference.GreedyNewIds, result.Sequences[0].Ids);
    }

    [SkippableTheory]
    [MemberData(nameof(ModelsBackendsAndTypes))]
    public void CopiedSlot_DecodesAsTheOriginal(string fixture, string backendName, DType type)
    {
        // A prompt read into slot 0 and copied to slot 1 (as beams and shared prompts do): the next token in both slots,
        // in one step, sees the same keys and values, so its logits are the same bits.
        Reference reference = Reference.Load(fixture);
        using IBackend backend = TestBackends.Create(backendName);
        using Qwen2Model model = Qwen2Model.Load(Fixtures.ModelDirectory(fixture), backend);
        model.KvCacheType = type;
        int[] prompt = reference.PromptIds;
        using KvCache cache = model.CreateKvCache(2, prompt.Length + 1);
        using ForwardState state = model.CreateState(prompt.Length, 2);
        var batch = new TokenBatch(prompt.Length);
        for (int p = 0; p < prompt.Length; p++)
        {
            batch.Add(prompt[p], p, 0, wantLogits: p == prompt.Length - 1);
        }

        model.Forward(batch, cache, state);
        cache.CopySlot(0, 1, prompt.Length);
        batch.Clear();
        batch.Add(prompt[0], prompt.Length, 0, wantLogits: true);
        batch.Add(prompt[0], prompt.Length, 1, wantLogits: true);
        model.Forward(batch, cache, state);
        Assert.True(state.LogitsOf(0).SequenceEqual(state.LogitsOf(1)), "the copied slot's logits differ from the original's");
    }

    [Fact]
    public void KvCacheType_SizesTheCaches()
    {
        using IBackend backend = TestBackends.Create("cpu");
        using Qwen2Model model = Qwen2Model.Load(Fixtures.ModelDirectory("tiny-qwen2"), backend);
        long f32 = model.KvBytesPerToken;
        model.KvCacheType = DType.BF16;
        using KvCache cache = model.CreateKvCache(2, 16);
        Assert.Equal(DType.BF16, cache.ElementType);
        Assert.Equal(f32 / 2, model.KvBytesPerToken);
        Assert.Equal(model.KvBytesPerToken * 2 * 16, cache.ByteSize);
        Assert.Throws<ArgumentException>(() => model.KvCacheType = DType.Q4_0);
    }
}
