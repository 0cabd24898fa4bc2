using LLama.Native;
using QwenSharp.Backend;
using QwenSharp.Formats;
using QwenSharp.Generation;
using QwenSharp.Qwen2;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Generation;

/// <summary>
/// Text embeddings against independent references: a last hidden state, multiplied by the LM head in the test, gives
/// the float64 reference's logits (so the state is right before any head ran); llama.cpp's own pooled embeddings of the
/// same GGUF file equal ours for mean, last and cls; inputs packed into shared steps and chunks equal each read alone.
/// </summary>
public sealed class EmbedderTests
{
    public static TheoryData<string, string> ModelsAndBackends()
    {
        var data = new TheoryData<string, string>();
        foreach (string model in (string[])["stories260K", "tiny-qwen2", "tiny-qwen2-f16-sharded"])
        {
            foreach (string backend in TestBackends.All)
            {
                data.Add(model, backend);
            }
        }

        return data;
    }

    [SkippableTheory]
    [MemberData(nameof(ModelsAndBackends))]
    public void LastHiddenState_TimesTheLmHead_IsTheReferenceLogits(string fixture, string backendName)
    {
        Reference reference = Reference.Load(fixture);
        using IBackend backend = TestBackends.Create(backendName);
        using Qwen2Model model = Qwen2Model.Load(Fixtures.ModelDirectory(fixture), backend);
        float[] head = TensorValues.ToSingle(model.Weights.LmHead);
        int[][] prefixes = [.. reference.FullLogitsPositions.Select(p => reference.PromptIds[..(p + 1)])];

        // One step for all (several slots), steps of 5 tokens (one slot, chunks), and 2 slots of chunks.
        foreach (int chunk in (int[])[256, 5, 2 * reference.PromptIds.Length])
        {
            using var embedder = new Embedder(model, chunk);
            float[][] last = embedder.Embed(prefixes, EmbeddingPooling.Last, normalize: false);
            float[][] first = embedder.Embed([reference.PromptIds], EmbeddingPooling.Cls, normalize: false);
            for (int r = 0; r < prefixes.Length; r++)
            {
                AssertLogits(reference, r, head, last[r], $"chunk {chunk}, last token of positions 0..{reference.FullLogitsPositions[r]}");
            }

            Assert.Equal(0, reference.FullLogitsPositions[0]);
            AssertLogits(reference, 0, head, first[0], $"chunk {chunk}, cls of the whole prompt");
        }
    }

    private static void AssertLogits(Reference reference, int row, float[] head, float[] hidden, string what)
    {
        int vocab = reference.FullLogits.Length / reference.FullLogitsPositions.Length, size = hidden.Length;
        Assert.Equal(head.Length, vocab * size);
        double maxError = 0, scale = 0;
        for (int i = 0; i < vocab; i++)
        {
            double logit = 0;
            for (int j = 0; j < size; j++)
            {
                logit += (double)head[(i * size) + j] * hidden[j];
            }

            double expected = reference.FullLogits[(row * vocab) + i];
            maxError = Math.Max(maxError, Math.Abs(logit - expected));
            scale = Math.Max(scale, Math.Abs(expected));
        }

        // As the model's own logits: an f32 engine is ~1e-4 relative to the float64 reference.
        Assert.True(maxError <= 2e-4 * Math.Max(1, scale), $"{what}: max |logit error| {maxError:E3} for logits up to {scale:F3}");
    }

    public static TheoryData<EmbeddingPooling, LLamaPoolingType> Poolings() => new()
    {
        { EmbeddingPooling.Mean, LLamaPoolingType.Mean },
        { EmbeddingPooling.Last, LLamaPoolingType.Last },
        { EmbeddingPooling.Cls, LLamaPoolingType.CLS },
    };

    [Theory]
    [MemberData(nameof(Poolings))]
    public void PooledEmbeddings_EqualLlamaCppsOnTheSameFile(EmbeddingPooling pooling, LLamaPoolingType theirs)
    {
        // stories260K is F32, which llama.cpp multiplies in f32: its results match ours to f32 rounding.
        Reference reference = Reference.Load("stories260K");
        string gguf = GgufFixture.Write(TestTokenizers.WithTokenizer(Fixtures.ModelDirectory("stories260K"), Fixtures.DemoModel));
        using IBackend backend = TestBackends.Create("cpu");
        using Qwen2Model model = Qwen2Model.Load(gguf, backend);
        using var embedder = new Embedder(model, chunkTokens: 7);
        int[][] inputs = [reference.PromptIds, reference.PromptIds[..5], reference.PromptIds[3..]];

        float[][] ours = embedder.Embed(inputs, pooling, normalize: false);

        for (int i = 0; i < inputs.Length; i++)
        {
            float[] expected = LlamaCpp.Embedding(gguf, inputs[i], theirs);
            Assert.Equal(expected.Length, ours[i].Length);
            double scale = expected.Max(Math.Abs), error = expected.Zip(ours[i], (a, b) => (double)Math.Abs(a - b)).Max();
            Assert.True(error <= 1e-5 * Math.Max(1, scale), $"input {i}, {pooling}: llama.cpp's embedding differs from ours by {error:E3} (values up to {scale:F3})");
        }
    }

    public static TheoryData<EmbeddingPooling, LLamaPoolingType, string> BidirectionalCases()
    {
        var data = new TheoryData<EmbeddingPooling, LLamaPoolingType, string>();
        foreach (string backend in TestBackends.All)
        {
            data.Add(EmbeddingPooling.Mean, LLamaPoolingType.Mean, backend);
        }

        data.Add(EmbeddingPooling.Last, LLamaPoolingType.Last, "cpu");
        data.Add(EmbeddingPooling.Cls, LLamaPoolingType.CLS, "gpu");
        return data;
    }

    [SkippableTheory]
    [MemberData(nameof(BidirectionalCases))]
    public void Bidirectional_EqualsLlamaCppsNonCausalEmbeddings(EmbeddingPooling pooling, LLamaPoolingType theirs, string backendName)
    {
        // stories260K: 8 query heads share 4 key-value heads, so the attention's groups are exercised.
        Reference reference = Reference.Load("stories260K");
        string gguf = GgufFixture.Write(TestTokenizers.WithTokenizer(Fixtures.ModelDirectory("stories260K"), Fixtures.DemoModel));
        using IBackend backend = TestBackends.Create(backendName);
        using Qwen2Model model = Qwen2Model.Load(gguf, backend);
        // Steps of 7 tokens: the embedder grows to hold the longest input whole; the short ones share a step.
        using var embedder = new Embedder(model, chunkTokens: 7);
        int[][] inputs = [reference.PromptIds[..3], reference.PromptIds[..4], reference.PromptIds, reference.PromptIds[3..]];

        float[][] ours = embedder.Embed(inputs, pooling, normalize: false, bidirectional: true);
        float[][] causal = embedder.Embed(inputs, pooling, normalize: false);

        Assert.Equal(reference.PromptIds.Length, embedder.Rows);
        for (int i = 0; i < inputs.Length; i++)
        {
            float[] expected = LlamaCpp.Embedding(gguf, inputs[i], theirs, LLamaAttentionType.NonCausal);
            double scale = expected.Max(Math.Abs), error = expected.Zip(ours[i], (a, b) => (double)Math.Abs(a - b)).Max();
            Assert.True(error <= 1e-5 * Math.Max(1, scale), $"input {i}, {pooling}: llama.cpp's non-causal embedding differs from ours by {error:E3} (values up to {scale:F3})");
            Assert.NotEqual(causal[i], ours[i]);
        }
    }

    [Fact]
    public void Normalized_IsUnitLength_AndDimensionsKeepTheFirstValuesBeforeNormalizing()
    {
        Reference reference = Reference.Load("tiny-qwen2");
        using IBackend backend = TestBackends.Create("cpu");
        using Qwen2Model model = Qwen2Model.Load(Fixtures.ModelDirectory("tiny-qwen2"), backend);
        using var embedder = new Embedder(model);
        int[][] inputs = [reference.PromptIds];

        float[] raw = embedder.Embed(inputs, EmbeddingPooling.Mean, normalize: false)[0];
        float[] unit = embedder.Embed(inputs, EmbeddingPooling.Mean, normalize: true)[0];
        float[] first8 = embedder.Embed(inputs, EmbeddingPooling.Mean, normalize: true, dimensions: 8)[0];

        double norm = Math.Sqrt(raw.Sum(v => (double)v * v)), norm8 = Math.Sqrt(raw.Take(8).Sum(v => (double)v * v));
        Assert.True(norm > 0.1, $"the mean hidden state has norm {norm}");
        Assert.Equal(raw.Length, unit.Length);
        for (int i = 0; i < raw.Length; i++)
        {
            Assert.Equal(raw[i] / norm, unit[i], 1e-6);
        }

        Assert.Equal(8, first8.Length);
        for (int i = 0; i < 8; i++)
        {
            Assert.Equal(raw[i] / norm8, first8[i], 1e-6);
        }
    }

    [Fact]
    public void BadInputs_AreRefusedNamingThem()
    {
        using IBackend backend = TestBackends.Create("cpu");
        using Qwen2Model model = Qwen2Model.Load(Fixtures.ModelDirectory("tiny-qwen2"), backend);
        using var embedder = new Embedder(model);
        int vocab = model.Config.VocabSize, context = model.Config.MaxPositionEmbeddings;

        Assert.Contains("input 1 has no tokens", Assert.Throws<ArgumentException>(() => embedder.Embed([[1, 2], []])).Message);
        Assert.Contains($"input 0: token id {vocab}", Assert.Throws<ArgumentException>(() => embedder.Embed([[1, vocab]])).Message);
        Assert.Contains($"more than the model's context of {context}",
            Assert.Throws<ArgumentException>(() => embedder.Embed([new int[context + 1]])).Message);
        Assert.Contains("dimensions 33 is outside 1..32", Assert.Throws<ArgumentOutOfRangeException>(() => embedder.Embed([[1]], dimensions: 33)).Message);
        Assert.Contains("no inputs", Assert.Throws<ArgumentException>(() => embedder.Embed([])).Message);
        Assert.Contains("1 adapter scale(s) for the model's 0 LoRA adapter(s)", Assert.Throws<ArgumentException>(() => embedder.Start([[1]], adapterScales: [1f])).Message);
    }
}
