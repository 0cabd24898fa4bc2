using LLama.Native;
using QwenSharp.Backend;
using QwenSharp.Formats;
using QwenSharp.Generation;
using QwenSharp.Qwen2;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Model;

/// <summary>
/// A model whose KV cache holds f16 or bf16: every position's logits against the fixtures' float64 reference, within what
/// rounding each key and value to 11 (f16) or 8 (bf16) significant bits costs, and the greedy continuation through the
/// cache; a model whose cache holds q8_0 or q4_0 against llama.cpp's cache of the type; sizes and refusals. On each CPU
/// kernel path and the GPU.
/// </summary>
public sealed class KvCacheTypeModelTests
{
    public static TheoryData<string, string, DType> ModelsBackendsAndTypes()
    {
        var data = new TheoryData<string, string, DType>();
        foreach (string model in new[] { "stories260K", "tiny-qwen2" })
        {
            foreach (string backend in TestBackends.All.Append("cpu+gpu:1"))    // (and the last layer's cache on the GPU)
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
        (IBackend backend, LayerOffload? offload) = TestBackends.CreatePlacement(backendName);
        using IBackend host = backend;
        using Qwen2Model model = Qwen2Model.Load(Fixtures.ModelDirectory(fixture), backend, offload: offload);
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
        (IBackend backend, LayerOffload? offload) = TestBackends.CreatePlacement(backendName);
        using IBackend host = backend;
        using Qwen2Model model = Qwen2Model.Load(Fixtures.ModelDirectory(fixture), backend, offload: offload);
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
        (IBackend backend, LayerOffload? offload) = TestBackends.CreatePlacement(backendName);
        using IBackend host = backend;
        using Qwen2Model model = Qwen2Model.Load(Fixtures.ModelDirectory(fixture), backend, offload: offload);
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
        Assert.Throws<ArgumentException>(() => model.KvCacheType = DType.Q4_K);

        // q8_0: 34 bytes per 32 values, for heads of whole blocks (tiny-qwen2's are 8).
        var error = Assert.Throws<ArgumentException>(() => model.KvCacheType = DType.Q8_0);
        Assert.Equal("a q8_0 KV cache stores each head in blocks of 32 values, and this model's heads have 8", error.Message);
        using Qwen2Model wide = Qwen2Model.Load(RandomKQuantModel.Qwen2Folder.Value, backend);
        long wideF32 = wide.KvBytesPerToken;
        wide.KvCacheType = DType.Q8_0;
        Assert.Equal(wideF32 / 4 / 32 * 34, wide.KvBytesPerToken);
        using KvCache q8 = wide.CreateKvCache(2, 16);
        Assert.Equal(wide.KvBytesPerToken * 2 * 16, q8.ByteSize);

        // q4_0: 18 bytes per 32 values, refused as q8_0 is for heads of 8.
        wide.KvCacheType = DType.Q4_0;
        Assert.Equal(wideF32 / 4 / 32 * 18, wide.KvBytesPerToken);
        using KvCache q4 = wide.CreateKvCache(2, 16);
        Assert.Equal(wide.KvBytesPerToken * 2 * 16, q4.ByteSize);
        error = Assert.Throws<ArgumentException>(() => model.KvCacheType = DType.Q4_0);
        Assert.Equal("a q4_0 KV cache stores each head in blocks of 32 values, and this model's heads have 8", error.Message);
    }

    public static TheoryData<string, DType> BackendsAndQuantizedTypes()
    {
        var data = new TheoryData<string, DType>();
        foreach (string backend in TestBackends.All)
        {
            data.Add(backend, DType.Q8_0);
            data.Add(backend, DType.Q4_0);
        }

        return data;
    }

    [SkippableTheory]
    [MemberData(nameof(BackendsAndQuantizedTypes))]
    public void QuantizedCache_Logits_AsLlamaCppsCacheOfTheType(string backendName, DType type)
    {
        // A random Qwen2 model whose heads are 64 values (two blocks) and whose values, once rotated as llama.cpp rotates a
        // quantized cache's, have a large first value in every block of 32: storing them as q8_0 or q4_0 moves the logits far
        // more than anything else here, and alike in both engines only if they rotate and quantize alike. Read as a prompt
        // in one step, and one token a step on three threads: a token's two key-value heads are then a chunk each up to
        // position 127, and past it (more work than one chunk takes) each query head is a chunk of its own. The GPU stores
        // and reads the cache in its own shaders.
        string gguf = RandomKQuantModel.Qwen2Gguf.Value;
        var random = new Random(5);
        int[] ids = [.. Enumerable.Range(0, 160).Select(_ => random.Next(3, 512))];
        float[][] theirs = LlamaCpp.Logits(gguf, ids, type == DType.Q8_0 ? GGMLType.GGML_TYPE_Q8_0 : GGMLType.GGML_TYPE_Q4_0);
        using IBackend backend = TestBackends.Create(backendName), threeThreads = TestBackends.Create(backendName, threads: 3);
        using Qwen2Model model = Qwen2Model.Load(gguf, backend), stepping = Qwen2Model.Load(gguf, threeThreads);
        float[][] exact = ReferenceModelTests.AllPositionLogits(model, ids);
        model.KvCacheType = type;
        stepping.KvCacheType = type;
        float[][] prompt = ReferenceModelTests.AllPositionLogits(model, ids), stepped = ReferenceModelTests.OneTokenPerStepLogits(stepping, ids);

        // Measured: the q8_0 cache moves our logits by 4.1e-2 of the largest (CPU and GPU), llama.cpp's by 3.5e-2, and ours
        // and llama.cpp's are 9.9e-3 (CPU) and 9.8e-3 (GPU) apart (llama.cpp also rounds each query to 8 bits); unrotated,
        // ours moved by 4.6e-3 and were 3.5e-2 from llama.cpp's. The q4_0 cache moves ours by 1.9e-1, and ours and
        // llama.cpp's are 2.6e-2 apart (CPU and GPU); unrotated, 2.4e-1 apart.
        (double moves, double within) = type == DType.Q8_0 ? (2e-2, 1.5e-2) : (1e-1, 4e-2);
        double cacheError = LogitComparison.LargestRelativeError(exact, prompt);
        Assert.True(cacheError > moves, $"the {type} cache moved the logits by only {cacheError:E3}: not stored as llama.cpp stores it");
        foreach ((string how, float[][] ours) in new[] { ("prompt", prompt), ("one token a step", stepped) })
        {
            double apart = LogitComparison.LargestRelativeError(theirs, ours);
            Assert.True(apart < 0.4 * cacheError && apart < within,
                $"{how}: {apart:E3} from llama.cpp's {type} cache, against {cacheError:E3} from our f32 cache");
        }
    }
}
