using System.Net;
using System.Text;
using System.Text.Json;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Server;

/// <summary>
/// llama-server's own <c>POST /completion</c>, on the random tiny Qwen2 with Qwen2.5's tokenizer: the same answers as
/// OpenAI's <c>/v1/completions</c> for the same settings, in llama-server's shape (fields as its README lists them),
/// streamed as its objects without <c>[DONE]</c>; its samplers that QwenSharp lacks refused by name unless left off.
/// And its <c>POST /apply-template</c> (transformers' rendering of the same messages) and <c>GET /props</c>.
/// </summary>
public sealed class LlamaCompletionTests : IAsyncLifetime
{
    private const string Prompt = "Once upon a time";

    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync();

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task GreedyAnswerIsOpenAisInLlamaServersShape()
    {
        JsonElement openAi = await _server.PostOkAsync("/v1/completions", $"{{\"prompt\": \"{Prompt}\", \"max_tokens\": 12, \"temperature\": 0}}");
        JsonElement llama = await _server.PostOkAsync("/completion", $"{{\"prompt\": \"{Prompt}\", \"n_predict\": 12, \"temperature\": 0, \"return_tokens\": true}}");

        string content = llama.GetProperty("content").GetString()!;
        Assert.Equal(openAi.GetProperty("choices")[0].GetProperty("text").GetString(), content);
        int[] tokens = [.. llama.GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32())];
        Assert.Equal(12, tokens.Length);
        Assert.Equal(content, _server.Model.Tokenizer!.Decode(tokens));
        Assert.Equal(12, llama.GetProperty("tokens_predicted").GetInt32());
        Assert.Equal(_server.Model.Tokenizer.Encode(Prompt).Length, llama.GetProperty("tokens_evaluated").GetInt32());
        Assert.True(llama.GetProperty("stop").GetBoolean());
        Assert.Equal("limit", llama.GetProperty("stop_type").GetString());
        Assert.Equal("", llama.GetProperty("stopping_word").GetString());
        Assert.False(llama.GetProperty("truncated").GetBoolean());
        Assert.Equal(Prompt, llama.GetProperty("prompt").GetString());
        Assert.Equal(12, llama.GetProperty("generation_settings").GetProperty("n_predict").GetInt32());
        Assert.Equal(12, llama.GetProperty("timings").GetProperty("predicted_n").GetInt32());
        Assert.True(llama.GetProperty("timings").GetProperty("predicted_ms").GetDouble() > 0);
    }

    [Fact]
    public async Task AStopWordEndsTheAnswerBeforeItAndIsNamed()
    {
        string full = (await _server.PostOkAsync("/completion", $"{{\"prompt\": \"{Prompt}\", \"n_predict\": 12, \"temperature\": 0}}")).GetProperty("content").GetString()!;
        string stop = full.Substring(full.Length / 2, 2);

        JsonElement stopped = await _server.PostOkAsync("/completion",
            $"{{\"prompt\": \"{Prompt}\", \"n_predict\": 12, \"temperature\": 0, \"stop\": [\"never here\", {JsonSerializer.Serialize(stop)}]}}");

        Assert.Equal(full[..full.IndexOf(stop, StringComparison.Ordinal)], stopped.GetProperty("content").GetString());
        Assert.Equal("word", stopped.GetProperty("stop_type").GetString());
        Assert.Equal(stop, stopped.GetProperty("stopping_word").GetString());
    }

    [Fact]
    public async Task AStreamIsOneObjectPerTokenThenTheResultWithoutDone()
    {
        JsonElement whole = await _server.PostOkAsync("/completion", $"{{\"prompt\": \"{Prompt}\", \"n_predict\": 10, \"temperature\": 0}}");
        using var request = new StringContent($"{{\"prompt\": \"{Prompt}\", \"n_predict\": 10, \"temperature\": 0, \"stream\": true}}", Encoding.UTF8, "application/json");
        using HttpResponseMessage response = await _server.Http.PostAsync("/completion", request);
        string[] events = [.. (await response.Content.ReadAsStringAsync()).Split('\n').Where(l => l.StartsWith("data: ", StringComparison.Ordinal)).Select(l => l["data: ".Length..])];

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        JsonElement[] objects = [.. events.Select(e => JsonDocument.Parse(e).RootElement)];
        Assert.Equal(11, objects.Length);
        Assert.All(objects[..^1], o => Assert.False(o.GetProperty("stop").GetBoolean()));
        Assert.All(objects[..^1], o => Assert.Single(o.GetProperty("tokens").EnumerateArray()));
        Assert.True(objects[^1].GetProperty("stop").GetBoolean());
        Assert.Equal("limit", objects[^1].GetProperty("stop_type").GetString());
        Assert.Equal(whole.GetProperty("content").GetString(), string.Concat(objects.Select(o => o.GetProperty("content").GetString())));
    }

    [Fact]
    public async Task SeveralPromptsGiveAListAndProbabilitiesComeWithEachToken()
    {
        JsonElement results = await _server.PostOkAsync("/completion",
            "{\"prompt\": [\"Once upon\", [9707, 11]], \"n_predict\": 4, \"temperature\": 0, \"n_probs\": 3}");

        Assert.Equal(JsonValueKind.Array, results.ValueKind);
        Assert.Equal([0, 1], results.EnumerateArray().Select(r => r.GetProperty("index").GetInt32()));
        foreach (JsonElement result in results.EnumerateArray())
        {
            JsonElement[] probabilities = [.. result.GetProperty("completion_probabilities").EnumerateArray()];
            Assert.Equal(4, probabilities.Length);
            foreach (JsonElement token in probabilities)
            {
                JsonElement[] top = [.. token.GetProperty("top_logprobs").EnumerateArray()];
                Assert.Equal(3, top.Length);
                // Greedy: the token taken is the most likely.
                Assert.Equal(top[0].GetProperty("id").GetInt32(), token.GetProperty("id").GetInt32());
                Assert.Equal(top[0].GetProperty("logprob").GetDouble(), token.GetProperty("logprob").GetDouble());
                Assert.Equal(Encoding.UTF8.GetBytes(token.GetProperty("token").GetString()!).Length, token.GetProperty("bytes").GetArrayLength());
            }
        }
    }

    [Fact]
    public async Task PostSamplingProbsAreTheModelsRenormalizedOverWhatTheSamplersLeft()
    {
        // The same seed and samplers draw the same tokens; with post_sampling_probs each is reported in the distribution it
        // was drawn from: top-k 3 at temperature 0.5 leaves the three likeliest, p ∝ exp(logprob / 0.5) of the model's.
        const string Sampling = "\"n_predict\": 4, \"temperature\": 0.5, \"top_k\": 3, \"top_p\": 1, \"min_p\": 0, \"repeat_penalty\": 1, \"seed\": 11, \"n_probs\": 5";
        JsonElement model = await _server.PostOkAsync("/completion", $"{{\"prompt\": \"{Prompt}\", {Sampling}}}");
        JsonElement drawn = await _server.PostOkAsync("/completion", $"{{\"prompt\": \"{Prompt}\", {Sampling}, \"post_sampling_probs\": true}}");

        Assert.Equal(model.GetProperty("content").GetString(), drawn.GetProperty("content").GetString());
        Assert.True(drawn.GetProperty("generation_settings").GetProperty("post_sampling_probs").GetBoolean());
        JsonElement[] modelTokens = [.. model.GetProperty("completion_probabilities").EnumerateArray()];
        JsonElement[] drawnTokens = [.. drawn.GetProperty("completion_probabilities").EnumerateArray()];
        Assert.Equal(4, drawnTokens.Length);
        for (int i = 0; i < drawnTokens.Length; i++)
        {
            JsonElement[] likeliest = [.. modelTokens[i].GetProperty("top_logprobs").EnumerateArray().Take(3)];
            double[] weights = [.. likeliest.Select(t => Math.Exp(t.GetProperty("logprob").GetDouble() / 0.5))];
            JsonElement[] top = [.. drawnTokens[i].GetProperty("top_probs").EnumerateArray()];

            Assert.False(drawnTokens[i].TryGetProperty("logprob", out _));
            Assert.Equal(likeliest.Select(t => t.GetProperty("id").GetInt32()), top.Select(t => t.GetProperty("id").GetInt32()));
            Assert.Equal(weights.Select(w => w / weights.Sum()), top.Select(t => t.GetProperty("prob").GetDouble()), (a, b) => Math.Abs(a - b) < 1e-5);
            int taken = Array.FindIndex(likeliest, t => t.GetProperty("id").GetInt32() == drawnTokens[i].GetProperty("id").GetInt32());
            Assert.Equal(weights[taken] / weights.Sum(), drawnTokens[i].GetProperty("prob").GetDouble(), 1e-5);
        }
    }

    [Fact]
    public async Task AStreamedGreedyTokenHasAllTheProbabilityAfterSampling()
    {
        using var request = new StringContent($"{{\"prompt\": \"{Prompt}\", \"n_predict\": 3, \"temperature\": 0, \"n_probs\": 4, \"post_sampling_probs\": true, \"stream\": true}}",
            Encoding.UTF8, "application/json");
        using HttpResponseMessage response = await _server.Http.PostAsync("/completion", request);
        JsonElement[] objects = [.. (await response.Content.ReadAsStringAsync()).Split('\n').Where(l => l.StartsWith("data: ", StringComparison.Ordinal))
            .Select(l => JsonDocument.Parse(l["data: ".Length..]).RootElement)];

        Assert.Equal(4, objects.Length);
        foreach (JsonElement token in objects[..^1].Select(o => o.GetProperty("completion_probabilities")[0]))
        {
            Assert.Equal(1, token.GetProperty("prob").GetDouble());
            JsonElement only = Assert.Single(token.GetProperty("top_probs").EnumerateArray());
            Assert.Equal(token.GetProperty("id").GetInt32(), only.GetProperty("id").GetInt32());
            Assert.Equal(1, only.GetProperty("prob").GetDouble());
        }
    }

    [Fact]
    public async Task LogitBiasPairsAndAGrammarHoldTheAnswer()
    {
        JsonElement greedy = await _server.PostOkAsync("/completion", $"{{\"prompt\": \"{Prompt}\", \"n_predict\": 1, \"temperature\": 0, \"return_tokens\": true}}");
        int first = greedy.GetProperty("tokens")[0].GetInt32();

        JsonElement banned = await _server.PostOkAsync("/completion",
            $"{{\"prompt\": \"{Prompt}\", \"n_predict\": 1, \"temperature\": 0, \"return_tokens\": true, \"logit_bias\": [[{first}, false]]}}");
        JsonElement held = await _server.PostOkAsync("/completion",
            $"{{\"prompt\": \"{Prompt}\", \"n_predict\": 16, \"temperature\": 0.9, \"seed\": 4, \"grammar\": \"root ::= [a-z]{{3}} \\\"!\\\"\"}}");

        Assert.NotEqual(first, banned.GetProperty("tokens")[0].GetInt32());
        Assert.Matches("^[a-z]{3}!$", held.GetProperty("content").GetString()!);
        Assert.Equal("eos", held.GetProperty("stop_type").GetString());
    }

    [Theory]
    [InlineData("\"dry_base\": 0.5", "dry_base", "from 1 to 100")]
    [InlineData("\"dry_sequence_breakers\": [\"\\n\", 4]", "dry_sequence_breakers[1]", "must be a string")]
    [InlineData("\"dynatemp_range\": -0.5", "dynatemp_range", "from 0 to 100")]
    [InlineData("\"mirostat\": 3", "mirostat", "from 0 to 2")]
    [InlineData("\"typical_p\": 0", "typical_p", "above 0 to 1")]
    [InlineData("\"xtc_threshold\": 2", "xtc_threshold", "from 0 to 1")]
    [InlineData("\"samplers\": [\"top_k\", \"mirostat_v3\"]", "samplers", "sampler names")]
    [InlineData("\"repeat_penalty\": 1.1, \"repeat_last_n\": 64", "repeat_last_n", "give -1")]
    [InlineData("\"logit_bias\": [[5]]", "logit_bias[0]", "a pair")]
    [InlineData("\"logit_bias\": [[5, \"x\"]]", "logit_bias[0]", "or false")]
    [InlineData("\"logit_bias\": {\"abc\": 1}", "logit_bias.abc", "'abc' is not a token id")]
    [InlineData("\"tfs_z\": 1", "tfs_z", "unknown field")]
    [InlineData("\"grammar\": \"root ::= x\"", "grammar", "never defined")]
    public async Task WhatItCannotDoIsRefusedByName(string fields, string param, string message)
    {
        await _server.AssertRefusedAsync("/completion", $"{{\"prompt\": \"x\", {fields}}}", param, message);
    }

    /// <summary>
    /// llama.cpp's samplers where they leave one token: top-n-sigma at a tiny n keeps only the largest logit, and mirostat
    /// at a target surprise of 0 keeps only the most likely token (its μ stays 0): at a temperature of 1 the answer is the
    /// greedy one, on llama-server's endpoint and OpenAI's.
    /// </summary>
    [Theory]
    [InlineData("\"top_n_sigma\": 0.0001")]
    [InlineData("\"mirostat\": 2, \"mirostat_tau\": 0, \"mirostat_eta\": 0.1")]
    [InlineData("\"mirostat\": 1, \"mirostat_tau\": 0")]
    public async Task SamplersThatLeaveOneToken_GiveTheGreedyAnswer(string fields)
    {
        JsonElement greedy = await _server.PostOkAsync("/completion", $"{{\"prompt\": \"{Prompt}\", \"n_predict\": 12, \"temperature\": 0, \"return_tokens\": true}}");
        JsonElement sampled = await _server.PostOkAsync("/completion", $"{{\"prompt\": \"{Prompt}\", \"n_predict\": 12, \"temperature\": 1, \"top_k\": 0, \"seed\": 3, \"return_tokens\": true, {fields}}}");
        JsonElement openAi = await _server.PostOkAsync("/v1/completions", $"{{\"prompt\": \"{Prompt}\", \"max_tokens\": 12, \"temperature\": 1, \"seed\": 3, {fields}}}");

        Assert.Equal(greedy.GetProperty("content").GetString(), sampled.GetProperty("content").GetString());
        Assert.Equal(greedy.GetProperty("content").GetString(), openAi.GetProperty("choices")[0].GetProperty("text").GetString());
        JsonElement plain = await _server.PostOkAsync("/completion", $"{{\"prompt\": \"{Prompt}\", \"n_predict\": 12, \"temperature\": 1, \"top_k\": 0, \"seed\": 3}}");
        Assert.NotEqual(greedy.GetProperty("content").GetString(), plain.GetProperty("content").GetString());
    }

    [Fact]
    public async Task TheOffValuesOfSamplersItLacksAreTaken()
    {
        JsonElement result = await _server.PostOkAsync("/completion",
            $"{{\"prompt\": \"{Prompt}\", \"n_predict\": 2, \"temperature\": 0, \"typical_p\": 1, \"mirostat\": 0, \"dry_multiplier\": 0, \"xtc_probability\": 0, "
            + "\"repeat_penalty\": 1, \"repeat_last_n\": 64, \"cache_prompt\": true, \"id_slot\": -1, \"n_keep\": 0, \"min_keep\": 0, \"seed\": -1, \"top_k\": 40}");

        Assert.Equal(2, result.GetProperty("tokens_predicted").GetInt32());
    }

    [Theory]
    [InlineData("system and multi-turn")]
    [InlineData("tools with system")]
    [InlineData("unicode, newlines, braces")]
    public async Task ApplyTemplateRendersTheMessagesAsTransformers(string name)
    {
        using JsonDocument cases = Fixtures.Json("tokenizer", "qwen2.5-chat-cases.json");
        JsonElement c = cases.RootElement.EnumerateArray().First(e => e.GetProperty("name").GetString() == name);
        string tools = c.GetProperty("tools").ValueKind == JsonValueKind.Array ? $", \"tools\": {c.GetProperty("tools").GetRawText()}" : "";

        JsonElement rendered = await _server.PostOkAsync("/apply-template", $"{{\"messages\": {c.GetProperty("messages").GetRawText()}{tools}}}");

        Assert.Equal(c.GetProperty("text").GetString(), rendered.GetProperty("prompt").GetString());
    }

    [Fact]
    public async Task PropsGiveTheContextSlotsAndChatTemplate()
    {
        using HttpResponseMessage response = await _server.Http.GetAsync("/props");
        using JsonDocument props = JsonDocument.Parse(await response.Content.ReadAsStringAsync());

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(_server.Server.Context, props.RootElement.GetProperty("default_generation_settings").GetProperty("n_ctx").GetInt32());
        Assert.Equal(_server.Model.Tokenizer!.ChatTemplateText, props.RootElement.GetProperty("chat_template").GetString());
        Assert.True(props.RootElement.GetProperty("total_slots").GetInt32() >= 1);
        Assert.False(props.RootElement.GetProperty("modalities").GetProperty("vision").GetBoolean());
    }
}
