using System.ClientModel;
using System.Net;
using System.Text.Json;
using LLama.Native;
using OpenAI;
using OpenAI.Embeddings;
using QwenSharp.Server;
using QwenSharp.Tests.Engine;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Server;

/// <summary>
/// <c>/v1/embeddings</c> through the official OpenAI client and raw HTTP, over the demo model (F32, so llama.cpp's
/// embeddings of the same file are the expected values to f32 rounding): float and base64 vectors, dimensions, ids as
/// input, usage, inputs read in chunks beside a running stream, and every bad field answered 400 naming it.
/// </summary>
public sealed class EmbeddingsServerTests : IAsyncLifetime
{
    private const string Story = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends.";
    private TestServer _server = null!;

    // Steps of 8 tokens: the story is read in several, beside whatever else runs.
    public async Task InitializeAsync() => _server = await TestServer.StartAsync(Fixtures.DemoModel, new ServerOptions { PrefillChunk = 8 });

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private EmbeddingClient Client() =>
        new("demo", new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(_server.Server.Address, "v1"), NetworkTimeout = TimeSpan.FromMinutes(2) });

    /// <summary>llama.cpp's last-token embedding of the text, normalized: what the demo model (no sentence-transformers files) gives.</summary>
    private float[] LlamaCppOf(string text) =>
        EmbeddingTests.Normalized(LlamaCpp.Embedding(GgufFixture.Write(Fixtures.DemoModel), _server.Model.Tokenizer.Encode(text, addSpecialTokens: true), LLamaPoolingType.Last));

    private static void AssertClose(float[] expected, ReadOnlySpan<float> actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double error = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            error = Math.Max(error, Math.Abs(expected[i] - actual[i]));
        }

        Assert.True(error <= 1e-5, $"{what}: differs from llama.cpp's by {error:E3}");
    }

    [Fact]
    public async Task OpenAiClient_GetsLlamaCppsEmbeddings_AndTheUsage()
    {
        string[] texts = [Story, "The end.", Story];
        OpenAIEmbeddingCollection result = await Client().GenerateEmbeddingsAsync(texts);

        Assert.Equal(3, result.Count);
        for (int i = 0; i < texts.Length; i++)
        {
            Assert.Equal(i, result[i].Index);
            AssertClose(LlamaCppOf(texts[i]), result[i].ToFloats().Span, $"input {i}");
        }

        Assert.Equal(texts.Sum(t => _server.Model.Tokenizer.Encode(t, addSpecialTokens: true).Length), result.Usage.InputTokenCount);
        Assert.Equal(1, await _server.MetricAsync("qwensharp_embedding_requests_total"));
        Assert.Equal(3, await _server.MetricAsync("qwensharp_embedding_inputs_total"));
        Assert.Equal(result.Usage.InputTokenCount, await _server.MetricAsync("qwensharp_embedding_tokens_total"));
    }

    [Fact]
    public async Task FloatAndBase64_AreTheSameVector_IdsAreInput_AndDimensionsKeepTheFirst()
    {
        int[] ids = _server.Model.Tokenizer.Encode(Story, addSpecialTokens: true);
        JsonElement floats = await _server.PostOkAsync("/v1/embeddings", JsonSerializer.Serialize(new { input = Story, model = "m" }));
        JsonElement base64 = await _server.PostOkAsync("/v1/embeddings", $$"""{"input": [{{string.Join(",", ids)}}], "encoding_format": "base64"}""");
        JsonElement first8 = await _server.PostOkAsync("/v1/embeddings", JsonSerializer.Serialize(new { input = new[] { Story }, dimensions = 8 }));

        Assert.Equal("list", floats.GetProperty("object").GetString());
        Assert.Equal("m", floats.GetProperty("model").GetString());
        JsonElement item = floats.GetProperty("data")[0];
        Assert.Equal("embedding", item.GetProperty("object").GetString());
        float[] vector = [.. item.GetProperty("embedding").EnumerateArray().Select(v => v.GetSingle())];
        AssertClose(LlamaCppOf(Story), vector, "float");
        float[] decoded = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(base64.GetProperty("data")[0].GetProperty("embedding").GetBytesFromBase64()).ToArray();
        Assert.Equal(vector, decoded);
        Assert.Equal(ids.Length, floats.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(ids.Length, floats.GetProperty("usage").GetProperty("total_tokens").GetInt32());

        float[] short8 = [.. first8.GetProperty("data")[0].GetProperty("embedding").EnumerateArray().Select(v => v.GetSingle())];
        float[] raw = LlamaCpp.Embedding(GgufFixture.Write(Fixtures.DemoModel), ids, LLamaPoolingType.Last);
        AssertClose(EmbeddingTests.Normalized(raw[..8]), short8, "the first 8, normalized");
    }

    [Fact]
    public async Task AnEmbeddingReadInChunks_BesideAStream_IsTheSameAsAlone()
    {
        string longText = string.Join(" ", Enumerable.Repeat(Story, 4));
        Task<(HttpStatusCode, JsonDocument)> completion = _server.PostAsync("/v1/completions", """{"prompt": "Once upon a time", "max_tokens": 60, "temperature": 0}""");
        Task<JsonElement> embedding = _server.PostOkAsync("/v1/embeddings", JsonSerializer.Serialize(new { input = new[] { longText, Story } }));

        (HttpStatusCode status, JsonDocument answer) = await completion;
        JsonElement data = (await embedding).GetProperty("data");

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(60, answer.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        answer.Dispose();
        AssertClose(LlamaCppOf(longText), [.. data[0].GetProperty("embedding").EnumerateArray().Select(v => v.GetSingle())], "the long text");
        AssertClose(LlamaCppOf(Story), [.. data[1].GetProperty("embedding").EnumerateArray().Select(v => v.GetSingle())], "the story beside it");
    }

    [Fact]
    public async Task ABidirectionalModel_IsEmbeddedNonCausally_WholeInputsBesideAStream()
    {
        string config = File.ReadAllText(Path.Combine(Fixtures.DemoModel, "config.json"));
        string folder = EmbeddingTests.DemoWith(("config.json", config.TrimEnd().TrimEnd('}') + ", \"is_causal\": false}"));
        await using TestServer server = await TestServer.StartAsync(folder, new ServerOptions { PrefillChunk = 8 });
        string longText = string.Join(" ", Enumerable.Repeat(Story, 3));
        Task<(HttpStatusCode, JsonDocument)> completion = server.PostAsync("/v1/completions", """{"prompt": "Once upon a time", "max_tokens": 40, "temperature": 0}""");

        JsonElement data = (await server.PostOkAsync("/v1/embeddings", JsonSerializer.Serialize(new { input = new[] { Story, longText } }))).GetProperty("data");

        (HttpStatusCode status, JsonDocument answer) = await completion;
        answer.Dispose();
        Assert.Equal(HttpStatusCode.OK, status);
        string gguf = GgufFixture.Write(Fixtures.DemoModel);
        foreach ((string text, int i) in new[] { (Story, 0), (longText, 1) })
        {
            float[] expected = EmbeddingTests.Normalized(LlamaCpp.Embedding(gguf, server.Model.Tokenizer.Encode(text, addSpecialTokens: true), LLamaPoolingType.Last, LLamaAttentionType.NonCausal));
            AssertClose(expected, [.. data[i].GetProperty("embedding").EnumerateArray().Select(v => v.GetSingle())], $"input {i}, non-causal");
        }
    }

    [SkippableFact]
    public async Task OnTheGpu_TheServerGetsLlamaCppsEmbeddings()
    {
        TestBackends.RequireGpu();
        await using TestServer server = await TestServer.StartAsync(Fixtures.DemoModel, new ServerOptions { PrefillChunk = 8 }, device: "gpu");
        string longText = string.Join(" ", Enumerable.Repeat(Story, 2));

        JsonElement data = (await server.PostOkAsync("/v1/embeddings", JsonSerializer.Serialize(new { input = new[] { Story, "The end.", longText } }))).GetProperty("data");

        string[] texts = [Story, "The end.", longText];
        for (int i = 0; i < texts.Length; i++)
        {
            AssertClose(LlamaCppOf(texts[i]), [.. data[i].GetProperty("embedding").EnumerateArray().Select(v => v.GetSingle())], $"input {i} on the GPU");
        }
    }

    [Fact]
    public async Task PromptName_PutsTheModelsPromptBeforeEachText()
    {
        await using TestServer server = await TestServer.StartAsync(EmbeddingTests.DemoWith(EmbeddingTests.Prompts(defaultName: null)), null);

        JsonElement data = (await server.PostOkAsync("/v1/embeddings", JsonSerializer.Serialize(new { input = new[] { Story }, prompt_name = "query" }))).GetProperty("data");
        (HttpStatusCode unknown, JsonDocument unknownError) = await server.PostAsync("/v1/embeddings", """{"input": "a", "prompt_name": "passage"}""");
        (HttpStatusCode ids, JsonDocument idsError) = await server.PostAsync("/v1/embeddings", """{"input": [1, 2, 3], "prompt_name": "query"}""");

        AssertClose(LlamaCppOf(EmbeddingTests.QueryPrompt + Story), [.. data[0].GetProperty("embedding").EnumerateArray().Select(v => v.GetSingle())], "prompt_name query");
        using (unknownError)
        using (idsError)
        {
            Assert.Equal(HttpStatusCode.BadRequest, unknown);
            Assert.Equal("prompt_name", unknownError.RootElement.GetProperty("error").GetProperty("param").GetString());
            Assert.Contains("prompt name 'passage' is not one of the model's prompts (document, query;", unknownError.RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
            Assert.Equal(HttpStatusCode.BadRequest, ids);
            Assert.Contains("token ids are embedded as they are", idsError.RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Truncate_CutsTextsAndIdsToTheModelsMaxSeqLength()
    {
        await using TestServer server = await TestServer.StartAsync(EmbeddingTests.DemoWith(("sentence_bert_config.json", """{"max_seq_length": 6}""")), null);
        int[] all = server.Model.Tokenizer.Encode(Story, addSpecialTokens: true);
        string gguf = GgufFixture.Write(Fixtures.DemoModel);

        JsonElement data = (await server.PostOkAsync("/v1/embeddings", JsonSerializer.Serialize(new { input = new object[] { Story, all }, truncate = true }))).GetProperty("data");
        JsonElement whole = (await server.PostOkAsync("/v1/embeddings", JsonSerializer.Serialize(new { input = Story }))).GetProperty("data");

        float[] expected = EmbeddingTests.Normalized(LlamaCpp.Embedding(gguf, all[..6], LLamaPoolingType.Last));
        AssertClose(expected, [.. data[0].GetProperty("embedding").EnumerateArray().Select(v => v.GetSingle())], "the text cut to 6 tokens");
        AssertClose(expected, [.. data[1].GetProperty("embedding").EnumerateArray().Select(v => v.GetSingle())], "the ids cut to 6");
        AssertClose(LlamaCppOf(Story), [.. whole[0].GetProperty("embedding").EnumerateArray().Select(v => v.GetSingle())], "without truncate");
    }

    public static TheoryData<string, string, string> BadRequests() => new()
    {
        { "{}", "input", "'input' is missing" },
        { """{"input": ""}""", "input", "'input' has no tokens" },
        { """{"input": ["a", []]}""", "input[1]", "'input[1]' has no tokens" },
        { """{"input": ["a", 5]}""", "input[1]", "must be a string or a list of token ids" },
        { """{"input": [1, 99999]}""", "input[1]", "not a token of this model's vocabulary" },
        { """{"input": "a", "encoding_format": "int8"}""", "encoding_format", "'encoding_format' is 'int8'" },
        { """{"input": "a", "dimensions": 0}""", "dimensions", "dimensions" },
        { """{"input": "a", "dimensions": 65}""", "dimensions", "dimensions" },
        { """{"input": "a", "pooling": "max"}""", "pooling", "pooling" },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task BadFields_Get400NamingThem(string body, string param, string message)
    {
        (HttpStatusCode status, JsonDocument error) = await _server.PostAsync("/v1/embeddings", body);
        using (error)
        {
            Assert.Equal(HttpStatusCode.BadRequest, status);
            Assert.Equal(param, error.RootElement.GetProperty("error").GetProperty("param").GetString());
            Assert.Contains(message, error.RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task AnInputLongerThanTheContext_IsContextLengthExceeded()
    {
        (HttpStatusCode status, JsonDocument error) = await _server.PostAsync("/v1/embeddings", $"{{\"input\": [\"a\", [{string.Join(",", Enumerable.Repeat(100, 600))}]]}}");
        using (error)
        {
            Assert.Equal(HttpStatusCode.BadRequest, status);
            Assert.Equal("context_length_exceeded", error.RootElement.GetProperty("error").GetProperty("code").GetString());
            Assert.Equal("input[1]", error.RootElement.GetProperty("error").GetProperty("param").GetString());
            Assert.Contains("600 tokens", error.RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task AModelWhoseEmbeddingsCannotBeComputed_Answers501SayingWhy()
    {
        // A Dense module after Normalize (on a unit vector) is not one QwenSharp runs.
        string dense = EmbeddingTests.DemoWith(EmbeddingTests.Modules("Transformer", "Pooling", "Normalize", "Dense"), EmbeddingTests.Pooling("pooling_mode_mean_tokens"));
        await using TestServer server = await TestServer.StartAsync(dense, null);
        (HttpStatusCode status, JsonDocument error) = await server.PostAsync("/v1/embeddings", """{"input": "a"}""");
        using (error)
        {
            Assert.Equal(HttpStatusCode.NotImplemented, status);
            Assert.Contains("Dense", error.RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        }

        // Generation is unaffected.
        JsonElement completion = await server.PostOkAsync("/v1/completions", """{"prompt": "Once", "max_tokens": 3}""");
        Assert.Equal(3, completion.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task AModelWithADenseModule_AnswersItsOutput_AndBoundsDimensionsByIt()
    {
        var module = new EmbeddingTests.DenseModule(64, 24, Bias: true, EmbeddingTests.IdentityActivation, "F32", Seed: 12);
        await using TestServer server = await TestServer.StartAsync(EmbeddingTests.DenseFolder("pooling_mode_mean_tokens", normalize: true, module), null);
        float[] pooled = LlamaCpp.Embedding(GgufFixture.Write(Fixtures.DemoModel), server.Model.Tokenizer.Encode(Story, addSpecialTokens: true), LLamaPoolingType.Mean);
        float[] expected = EmbeddingTests.Normalized(module.Reference(pooled));

        JsonElement body = await server.PostOkAsync("/v1/embeddings", $$"""{"input": "{{Story}}"}""");
        float[] vector = [.. body.GetProperty("data")[0].GetProperty("embedding").EnumerateArray().Select(v => v.GetSingle())];
        Assert.Equal(24, vector.Length);
        Assert.True(expected.Zip(vector, (a, b) => Math.Abs(a - b)).Max() <= 1e-4, "the Dense module's output, normalized");

        (HttpStatusCode status, JsonDocument error) = await server.PostAsync("/v1/embeddings", """{"input": "a", "dimensions": 25}""");
        using (error)
        {
            Assert.Equal(HttpStatusCode.BadRequest, status);
            Assert.Contains("dimensions", error.RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        }
    }
}
