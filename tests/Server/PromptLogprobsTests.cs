using System.Net;
using System.Text.Json;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Server;

/// <summary>
/// <c>/v1/completions</c> with <c>echo</c> and <c>logprobs</c>: the prompt's own tokens with their log-probs, as OpenAI's
/// legacy API and vLLM give them and lm-evaluation-harness's <c>local-completions</c> model reads them for
/// log-likelihoods. The request is the harness's own; each prompt token's log-prob and top alternative are checked
/// against tiny-qwen2's transformers reference in float64, and its <c>is_greedy</c> as the harness works it out.
/// </summary>
public sealed class PromptLogprobsTests : IAsyncLifetime
{
    private static readonly Reference s_reference = Reference.Load("tiny-qwen2");
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync();

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private static void AssertPromptLogprobs(JsonElement logprobs, int top)
    {
        JsonElement[] tokenLogprobs = [.. logprobs.GetProperty("token_logprobs").EnumerateArray()];
        JsonElement[] tops = [.. logprobs.GetProperty("top_logprobs").EnumerateArray()];
        Assert.Equal(JsonValueKind.Null, tokenLogprobs[0].ValueKind);
        Assert.Equal(JsonValueKind.Null, tops[0].ValueKind);
        for (int k = 1; k < s_reference.PromptIds.Length; k++)
        {
            ReferencePosition position = s_reference.Positions[k - 1];
            Assert.Equal(position.NextIdLogprob!.Value, tokenLogprobs[k].GetDouble(), 1e-4);
            JsonProperty[] alternatives = [.. tops[k].EnumerateObject()];
            Assert.Equal(top, alternatives.Length);
            Assert.Equal(System.Text.Encoding.UTF8.GetString(TestTokenizers.Qwen.TokenBytes(position.TopIds[0])), alternatives[0].Name);
            Assert.Equal(position.TopLogits[0] - position.LogSumExp, alternatives[0].Value.GetDouble(), 1e-4);
        }
    }

    [Fact]
    public async Task LmEvaluationHarnessesRequest_GetsEachPromptTokensLogprob_AsTransformersComputesIt()
    {
        // lm-evaluation-harness's local-completions payload for loglikelihood requests: token ids, echo, logprobs 1, one token.
        string request = JsonSerializer.Serialize(new { model = "tiny", prompt = new[] { s_reference.PromptIds }, temperature = 0, max_tokens = 1, logprobs = 1, seed = 1234, echo = true });

        JsonElement body = await _server.PostOkAsync("/v1/completions", request);

        JsonElement choice = Assert.Single(body.GetProperty("choices").EnumerateArray());
        JsonElement logprobs = choice.GetProperty("logprobs");
        Assert.Equal(s_reference.PromptIds.Length + 1, logprobs.GetProperty("tokens").GetArrayLength());
        AssertPromptLogprobs(logprobs, top: 1);
        Assert.Equal(TestTokenizers.Qwen.Decode(s_reference.PromptIds) + TestTokenizers.Qwen.Decode([s_reference.GreedyNewIds[0]]), choice.GetProperty("text").GetString());

        // The harness's reading: the continuation's log-likelihood and whether each of its tokens was the greedy one.
        int context = s_reference.PromptIds.Length - 4;
        double[] tokenLogprobs = [.. logprobs.GetProperty("token_logprobs").EnumerateArray().Skip(context).SkipLast(1).Select(t => t.GetDouble())];
        Dictionary<string, double>[] tops = [.. logprobs.GetProperty("top_logprobs").EnumerateArray().Skip(context).SkipLast(1)
            .Select(t => t.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetDouble()))];
        double expectedSum = Enumerable.Range(context, 4).Sum(k => s_reference.Positions[k - 1].NextIdLogprob!.Value);
        Assert.Equal(expectedSum, tokenLogprobs.Sum(), 1e-3);
        bool expectedGreedy = Enumerable.Range(context, 4).All(k => s_reference.Positions[k - 1].TopIds[0] == s_reference.PromptIds[k]);
        Assert.Equal(expectedGreedy, tokenLogprobs.Zip(tops).All(p => p.First >= p.Second.Values.Max() - 1e-9));
    }

    [Fact]
    public async Task MaxTokensZero_ScoresThePromptAlone_AndAStreamEchoesItFirst()
    {
        JsonElement alone = await _server.PostOkAsync("/v1/completions",
            JsonSerializer.Serialize(new { prompt = s_reference.PromptIds, max_tokens = 0, logprobs = 2, echo = true }));

        JsonElement choice = Assert.Single(alone.GetProperty("choices").EnumerateArray());
        Assert.Equal(s_reference.PromptIds.Length, choice.GetProperty("logprobs").GetProperty("tokens").GetArrayLength());
        AssertPromptLogprobs(choice.GetProperty("logprobs"), top: 2);
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
        Assert.Equal(0, alone.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(s_reference.PromptIds.Length, alone.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());

        // Streamed, the first chunk carries the prompt and its log-probs; text offsets run through the echoed text.
        using var content = new StringContent(JsonSerializer.Serialize(new { prompt = s_reference.PromptIds, max_tokens = 2, logprobs = 1, echo = true, stream = true, temperature = 0 }),
            System.Text.Encoding.UTF8, "application/json");
        using HttpResponseMessage response = await _server.Http.PostAsync("/v1/completions", content);
        string[] events = [.. (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(e => e["data: ".Length..]).Where(e => e != "[DONE]")];
        using JsonDocument first = JsonDocument.Parse(events[0]);
        JsonElement firstLogprobs = first.RootElement.GetProperty("choices")[0].GetProperty("logprobs");
        Assert.Equal(s_reference.PromptIds.Length + 1, firstLogprobs.GetProperty("tokens").GetArrayLength());
        AssertPromptLogprobs(firstLogprobs, top: 1);
        int[] offsets = [.. firstLogprobs.GetProperty("text_offset").EnumerateArray().Select(o => o.GetInt32())];
        Assert.Equal(TestTokenizers.Qwen.Decode(s_reference.PromptIds).Length, offsets[^1]);
        Assert.Equal(offsets.Order(), offsets);
    }

    [Fact]
    public async Task ABatchOfPrompts_IsScoredAChunkAStepBetweenGenerationSteps_EachAsAlone()
    {
        // Steps of 4 tokens: each prompt is read over several scheduler steps, the second after the first.
        await using TestServer server = await TestServer.StartAsync(new QwenSharp.Server.ServerOptions { PrefillChunk = 4 });
        int[] shorter = s_reference.PromptIds[..7];

        JsonElement body = await server.PostOkAsync("/v1/completions",
            JsonSerializer.Serialize(new { prompt = new[] { s_reference.PromptIds, shorter }, max_tokens = 1, logprobs = 1, echo = true, temperature = 0 }));

        JsonElement[] choices = [.. body.GetProperty("choices").EnumerateArray()];
        Assert.Equal(2, choices.Length);
        AssertPromptLogprobs(choices[0].GetProperty("logprobs"), top: 1);
        double?[] second = [.. choices[1].GetProperty("logprobs").GetProperty("token_logprobs").EnumerateArray().Take(shorter.Length)
            .Select(t => t.ValueKind == JsonValueKind.Null ? (double?)null : t.GetDouble())];
        Assert.Null(second[0]);
        for (int k = 1; k < shorter.Length; k++)
        {
            Assert.Equal(s_reference.Positions[k - 1].NextIdLogprob!.Value, second[k]!.Value, 1e-4);
        }
    }

    [SkippableFact]
    public async Task OnTheGpu_ThePromptsLogprobsAreTransformers()
    {
        TestBackends.RequireGpu();
        await using TestServer server = await TestServer.StartAsync(TestTokenizers.TinyQwenWithTokenizer, new QwenSharp.Server.ServerOptions { PrefillChunk = 8 }, device: "gpu");

        JsonElement body = await server.PostOkAsync("/v1/completions", JsonSerializer.Serialize(new { prompt = s_reference.PromptIds, max_tokens = 0, logprobs = 1, echo = true }));

        AssertPromptLogprobs(body.GetProperty("choices")[0].GetProperty("logprobs"), top: 1);
    }

    [Fact]
    public async Task MaxTokensZero_WithoutEchoAndLogprobs_IsRefusedNamingIt()
    {
        foreach ((string json, string param, string message) in ((string, string, string)[])[
            ("""{"prompt": "Hi", "max_tokens": 0}""", "max_tokens", "'max_tokens' must be an integer from 1"),
            ("""{"prompt": "Hi", "max_tokens": 0, "echo": true}""", "max_tokens", "scores the prompt alone: it goes with 'echo' and 'logprobs'"),
            ("""{"prompt": "Hi", "max_tokens": 0, "echo": true, "logprobs": 1, "stream": true}""", "max_tokens", "whole (not streamed)"),
            ("""{"prompt": [[]], "max_tokens": 0, "echo": true, "logprobs": 1}""", "prompt", "is empty")])
        {
            await _server.AssertRefusedAsync("/v1/completions", json, param, message);
        }

        (HttpStatusCode status, JsonDocument body) = await _server.PostAsync("/v1/completions", """{"prompt": "Hi", "max_tokens": 1, "echo": true, "logprobs": 1}""");
        using (body)
        {
            Assert.Equal(HttpStatusCode.OK, status);
        }
    }
}
