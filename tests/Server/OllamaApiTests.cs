using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;
using OllamaSharp;
using OllamaSharp.Models;
using QwenSharp.Tests.Support;
using AIChatMessage = Microsoft.Extensions.AI.ChatMessage;

namespace QwenSharp.Tests.Server;

/// <summary>
/// Ollama's API (<c>/api/chat</c>, <c>/api/generate</c>, <c>/api/embed</c>, <c>/api/tags</c>, <c>/api/show</c>,
/// <c>/api/version</c>) through OllamaSharp, the .NET client of Ollama's API (its IChatClient and its own calls), and as
/// raw JSON and NDJSON lines: tiny-qwen2's greedy continuation of its reference chat (transformers' ids) whole and
/// streamed, with the counts Ollama gives; a generation through the chat template as a chat of its system and prompt; a
/// history with tool calls read as the chat completions request of the same history; embeddings as /v1/embeddings gives
/// them; and refusals in Ollama's error shape.
/// </summary>
public sealed class OllamaApiTests : IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(new QwenSharp.Server.ServerOptions { ModelName = "tiny" });

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private OllamaApiClient Client() => new(new Uri(_server.Server.Address, "/"), "tiny:latest");

    private static string ReferenceRequest(string extra)
    {
        (string system, string user) = OpenAiClientTests.ReferenceConversation();
        return JsonSerializer.Serialize(new { model = "tiny:latest", messages = new[] { new { role = "system", content = system }, new { role = "user", content = user } } })[..^1]
            + ", \"options\": {\"temperature\": 0, \"num_predict\": 6}" + extra + "}";
    }

    [Fact]
    public async Task OllamaSharp_GetsTheReferenceContinuation_WholeAndStreamed()
    {
        using OllamaApiClient ollama = Client();
        IChatClient client = ollama;
        (string system, string user) = OpenAiClientTests.ReferenceConversation();
        List<AIChatMessage> messages = [new(ChatRole.System, system), new(ChatRole.User, user)];
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 24 };

        ChatResponse response = await client.GetResponseAsync(messages, options);

        Assert.Equal(OpenAiClientTests.ReferenceAnswer(24), response.Text);
        Assert.Equal(ChatFinishReason.Length, response.FinishReason);
        Assert.Equal(Reference.Load("tiny-qwen2").PromptIds.Length, response.Usage!.InputTokenCount);
        Assert.Equal(24, response.Usage.OutputTokenCount);

        var streamed = new StringBuilder();
        await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync(messages, options))
        {
            streamed.Append(update.Text);
        }

        Assert.Equal(OpenAiClientTests.ReferenceAnswer(24), streamed.ToString());
    }

    [Fact]
    public async Task AChat_IsOllamasShape_WholeAndAsNdjsonLines()
    {
        JsonElement whole = await _server.PostOkAsync("/api/chat", ReferenceRequest(", \"stream\": false"));
        Assert.Equal("tiny:latest", whole.GetProperty("model").GetString());
        Assert.EndsWith("Z", whole.GetProperty("created_at").GetString(), StringComparison.Ordinal);
        Assert.Equal("assistant", whole.GetProperty("message").GetProperty("role").GetString());
        Assert.Equal(OpenAiClientTests.ReferenceAnswer(6), whole.GetProperty("message").GetProperty("content").GetString());
        Assert.True(whole.GetProperty("done").GetBoolean());
        Assert.Equal("length", whole.GetProperty("done_reason").GetString());
        Assert.Equal(Reference.Load("tiny-qwen2").PromptIds.Length, whole.GetProperty("prompt_eval_count").GetInt32());
        Assert.Equal(6, whole.GetProperty("eval_count").GetInt32());
        Assert.True(whole.GetProperty("total_duration").GetInt64() >= whole.GetProperty("eval_duration").GetInt64());

        // No "stream": Ollama streams, one JSON object a line.
        using var content = new StringContent(ReferenceRequest(""), Encoding.UTF8, "application/json");
        using HttpResponseMessage response = await _server.Http.PostAsync("/api/chat", content);
        Assert.Equal("application/x-ndjson", response.Content.Headers.ContentType?.MediaType);
        string[] lines = (await response.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        JsonElement[] objects = [.. lines.Select(l => JsonDocument.Parse(l).RootElement)];
        Assert.All(objects[..^1], o => Assert.False(o.GetProperty("done").GetBoolean()));
        Assert.True(objects[^1].GetProperty("done").GetBoolean());
        Assert.Equal("length", objects[^1].GetProperty("done_reason").GetString());
        Assert.Equal(OpenAiClientTests.ReferenceAnswer(6), string.Concat(objects.Select(o => o.GetProperty("message").GetProperty("content").GetString())));
    }

    [Fact]
    public async Task Logprobs_AreTheReferenceLogprobs_WholeStreamedAndRaw()
    {
        // The first new token is chosen at the prompt's last position, where transformers' reference has the top logits.
        Reference reference = Reference.Load("tiny-qwen2");
        ReferencePosition last = reference.Positions[^1];
        void AssertFirst(JsonElement logprobs, string what)
        {
            JsonElement first = logprobs[0];
            Assert.Equal(TestTokenizers.Qwen.Decode([reference.GreedyNewIds[0]]), first.GetProperty("token").GetString());
            Assert.True(Math.Abs(last.TopLogits[0] - last.LogSumExp - first.GetProperty("logprob").GetDouble()) < 1e-4, $"{what}: {first}");
            JsonElement top = first.GetProperty("top_logprobs");
            Assert.Equal(3, top.GetArrayLength());
            for (int k = 0; k < 3; k++)
            {
                Assert.True(Math.Abs(last.TopLogits[k] - last.LogSumExp - top[k].GetProperty("logprob").GetDouble()) < 1e-4, $"{what}, alternative {k}: {top[k]}");
                Assert.Equal(TestTokenizers.Qwen.Decode([last.TopIds[k]]), top[k].GetProperty("token").GetString());
            }
        }

        const string Asked = ", \"logprobs\": true, \"top_logprobs\": 3";
        JsonElement whole = await _server.PostOkAsync("/api/chat", ReferenceRequest(", \"stream\": false" + Asked));
        Assert.Equal(6, whole.GetProperty("logprobs").GetArrayLength());
        AssertFirst(whole.GetProperty("logprobs"), "whole");
        Assert.All(whole.GetProperty("logprobs").EnumerateArray(), t => Assert.True(t.GetProperty("logprob").GetDouble() <= 0));

        using var content = new StringContent(ReferenceRequest(Asked), Encoding.UTF8, "application/json");
        using HttpResponseMessage response = await _server.Http.PostAsync("/api/chat", content);
        JsonElement[] lines = [.. (await response.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement)];
        JsonElement[] streamed = [.. lines.Where(l => l.TryGetProperty("logprobs", out _)).SelectMany(l => l.GetProperty("logprobs").EnumerateArray())];
        Assert.Equal(6, streamed.Length);
        AssertFirst(JsonDocument.Parse(JsonSerializer.Serialize(streamed)).RootElement, "streamed");

        // Raw: the rendered chat as it is gives the same; without "logprobs" no line carries any.
        (string system, string user) = OpenAiClientTests.ReferenceConversation();
        JsonElement rendered = await _server.PostOkAsync("/apply-template", JsonSerializer.Serialize(new { messages = new[] { new { role = "system", content = system }, new { role = "user", content = user } } }));
        JsonElement raw = await _server.PostOkAsync("/api/generate", JsonSerializer.Serialize(new
        {
            model = "tiny", prompt = rendered.GetProperty("prompt").GetString(), raw = true, stream = false, logprobs = true, top_logprobs = 3, options = new { temperature = 0, num_predict = 6 },
        }));
        Assert.Equal(6, raw.GetProperty("logprobs").GetArrayLength());
        AssertFirst(raw.GetProperty("logprobs"), "raw");
        JsonElement plain = await _server.PostOkAsync("/api/chat", ReferenceRequest(", \"stream\": false, \"top_logprobs\": 3"));
        Assert.False(plain.TryGetProperty("logprobs", out _), "top_logprobs without logprobs gives none, as in Ollama");
    }

    [Fact]
    public async Task AGeneration_IsTheChatOfItsSystemAndPrompt()
    {
        (string system, string user) = OpenAiClientTests.ReferenceConversation();
        using OllamaApiClient ollama = Client();
        var text = new StringBuilder();
        GenerateDoneResponseStream? done = null;
        await foreach (GenerateResponseStream? chunk in ollama.GenerateAsync(new GenerateRequest
        {
            Model = "tiny:latest", System = system, Prompt = user, Options = new RequestOptions { Temperature = 0, NumPredict = 6 },
        }))
        {
            text.Append(chunk!.Response);
            done = chunk as GenerateDoneResponseStream ?? done;
        }

        Assert.Equal(OpenAiClientTests.ReferenceAnswer(6), text.ToString());
        Assert.NotNull(done);
        Assert.Equal(6, done.EvalCount);

        await _server.AssertOllamaRefusedAsync("/api/generate", """{"model": "tiny", "prompt": "x", "raw": true, "system": "Be brief."}""", "'system' goes through the chat template");
    }

    [Fact]
    public async Task ARawGeneration_IsThePromptAsItIs_AndASuffixFillsTheMiddleAsInfillDoes()
    {
        // The reference chat rendered by the template, sent raw: the same continuation.
        (string system, string user) = OpenAiClientTests.ReferenceConversation();
        JsonElement rendered = await _server.PostOkAsync("/apply-template", JsonSerializer.Serialize(new { messages = new[] { new { role = "system", content = system }, new { role = "user", content = user } } }));
        JsonElement raw = await _server.PostOkAsync("/api/generate", JsonSerializer.Serialize(new
        {
            model = "tiny", prompt = rendered.GetProperty("prompt").GetString(), raw = true, stream = false, options = new { temperature = 0, num_predict = 6 },
        }));
        Assert.Equal(OpenAiClientTests.ReferenceAnswer(6), raw.GetProperty("response").GetString());
        Assert.Equal("length", raw.GetProperty("done_reason").GetString());

        // A suffix: the gap between prompt and suffix in the model's fill-in-the-middle form, as llama-server's /infill.
        const string Prefix = @"def add(a, b):\n    ", Suffix = @"\n\nprint(add(1, 2))\n";    // JSON escapes, sent as they are
        JsonElement infill = await _server.PostOkAsync("/infill", $$"""{"input_prefix": "{{Prefix}}", "input_suffix": "{{Suffix}}", "n_predict": 8, "temperature": 0}""");
        var streamed = new StringBuilder();
        using var content = new StringContent($$$"""{"model": "tiny", "prompt": "{{{Prefix}}}", "suffix": "{{{Suffix}}}", "options": {"temperature": 0, "num_predict": 8}}""", Encoding.UTF8, "application/json");
        using HttpResponseMessage response = await _server.Http.PostAsync("/api/generate", content);
        foreach (string line in (await response.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            streamed.Append(JsonDocument.Parse(line).RootElement.GetProperty("response").GetString());
        }

        Assert.NotEmpty(infill.GetProperty("content").GetString()!);
        Assert.Equal(infill.GetProperty("content").GetString(), streamed.ToString());
    }

    [Fact]
    public async Task AHistoryWithToolCalls_IsReadAsTheSameChatCompletionsHistory()
    {
        const string Tools = """[{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]""";
        string ollama = $$$$"""
            {"model": "tiny", "stream": false, "tools": {{{{Tools}}}}, "options": {"temperature": 0, "num_predict": 8}, "messages": [
              {"role": "user", "content": "What is the weather in Paris?"},
              {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
              {"role": "tool", "content": "Sunny, 24 C", "tool_name": "get_weather"}]}
            """;
        string openAi = $$$"""
            {"model": "tiny", "tools": {{{Tools}}}, "temperature": 0, "max_tokens": 8, "messages": [
              {"role": "user", "content": "What is the weather in Paris?"},
              {"role": "assistant", "tool_calls": [{"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
              {"role": "tool", "tool_call_id": "call_0", "content": "Sunny, 24 C"}]}
            """;
        JsonElement theirs = await _server.PostOkAsync("/v1/chat/completions", openAi);
        JsonElement ours = await _server.PostOkAsync("/api/chat", ollama);

        Assert.Equal(theirs.GetProperty("usage").GetProperty("prompt_tokens").GetInt32(), ours.GetProperty("prompt_eval_count").GetInt32());
        Assert.Equal(theirs.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString(), ours.GetProperty("message").GetProperty("content").GetString());
    }

    [Fact]
    public async Task TagsShowVersionAndEmbed_AreOllamasShapes()
    {
        using OllamaApiClient ollama = Client();
        OllamaSharp.Models.Model listed = Assert.Single(await ollama.ListLocalModelsAsync());
        Assert.Equal("tiny:latest", listed.Name);
        Assert.Equal("qwen2", listed.Details.Family);
        Assert.True(listed.Size > 0);

        ShowModelResponse shown = await ollama.ShowModelAsync(new ShowModelRequest { Model = "tiny:latest" });
        Assert.Equal(_server.Model.Tokenizer.ChatTemplateText, shown.Template);
        Assert.Equal("qwen2", shown.Info.Architecture);
        Assert.Contains("completion", shown.Capabilities!);
        Assert.Contains("tools", shown.Capabilities!);
        Assert.Equal("0.12.0", await ollama.GetVersionAsync());

        EmbedResponse embedded = await ollama.EmbedAsync(new EmbedRequest { Model = "tiny", Input = ["Once upon a time", "The end."] });
        JsonElement openAi = await _server.PostOkAsync("/v1/embeddings", """{"input": ["Once upon a time", "The end."]}""");
        Assert.Equal(2, embedded.Embeddings.Count);
        for (int i = 0; i < 2; i++)
        {
            Assert.Equal([.. openAi.GetProperty("data")[i].GetProperty("embedding").EnumerateArray().Select(v => v.GetSingle())], embedded.Embeddings[i]);
        }

        // The older /api/embeddings: one prompt, one embedding, the same vector.
        JsonElement legacy = await _server.PostOkAsync("/api/embeddings", """{"model": "tiny", "prompt": "Once upon a time"}""");
        Assert.Equal([.. openAi.GetProperty("data")[0].GetProperty("embedding").EnumerateArray().Select(v => v.GetSingle())],
            legacy.GetProperty("embedding").EnumerateArray().Select(v => v.GetSingle()));

        (HttpStatusCode status, JsonDocument body) = await _server.PostAsync("/api/show", """{"model": "llama3.2"}""");
        using (body)
        {
            Assert.Equal(HttpStatusCode.NotFound, status);
            Assert.Equal("model 'llama3.2' not found (this server serves tiny:latest)", body.RootElement.GetProperty("error").GetString());
        }
    }

    [Fact]
    public async Task ARequestForNothingButTheModel_IsAnsweredAtOnce_AsOllamaLoadsOrUnloads()
    {
        JsonElement chat = await _server.PostOkAsync("/api/chat", """{"model": "tiny", "messages": []}""");
        Assert.Equal("load", chat.GetProperty("done_reason").GetString());
        Assert.True(chat.GetProperty("done").GetBoolean());
        Assert.Equal("", chat.GetProperty("message").GetProperty("content").GetString());
        JsonElement generate = await _server.PostOkAsync("/api/generate", """{"model": "tiny"}""");
        Assert.Equal("load", generate.GetProperty("done_reason").GetString());
        Assert.Equal("", generate.GetProperty("response").GetString());
        Assert.Equal("unload", (await _server.PostOkAsync("/api/generate", """{"model": "tiny", "keep_alive": 0}""")).GetProperty("done_reason").GetString());
        Assert.Equal(0, await _server.MetricAsync("qwensharp_generation_tokens_total"));
    }

    [Fact]
    public async Task BadRequests_AreRefusedInOllamasShape_NamingTheField()
    {
        await _server.AssertOllamaRefusedAsync("/api/chat", ReferenceRequest(", \"think\": true"), "'think': the model does not support thinking");
        await _server.AssertOllamaRefusedAsync("/api/chat", ReferenceRequest(", \"format\": 7"), "'format' is 7; it is \"json\" or a JSON schema");
        await _server.AssertOllamaRefusedAsync("/api/chat", """{"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "options": {"repeat_penalty": 1.1, "repeat_last_n": 64}}""",
            "'options.repeat_last_n' is 64: this server's repeat penalty counts every token of the context (-1)");
        await _server.AssertOllamaRefusedAsync("/api/chat", """{"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "options": {"colour": 1}}""", "options.colour");

        (HttpStatusCode status, JsonDocument body) = await _server.PostAsync("/api/pull", """{"model": "llama3.2"}""");
        using (body)
        {
            Assert.Equal(HttpStatusCode.NotImplemented, status);
            Assert.Contains("has no model store", body.RootElement.GetProperty("error").GetString(), StringComparison.Ordinal);
        }
    }
}

/// <summary>Bad requests to Ollama's paths: each a 400 in Ollama's error shape saying what is wrong, never a 500.</summary>
public sealed class OllamaMalformedRequestTests : IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync();

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private const string Hi = "[{\"role\": \"user\", \"content\": \"Hi\"}]";

    public static TheoryData<string, string, string> Bodies => new()
    {
        // endpoint, body, what the error must say
        { "/api/chat", "", "no body" },
        { "/api/chat", "[1]", "JSON object" },
        { "/api/chat", "{\"messages\": \"hi\"}", "'messages' must be a non-empty list" },
        { "/api/chat", "{\"messages\": [1]}", "messages[0]" },
        { "/api/chat", "{\"messages\": [{\"role\": \"wizard\", \"content\": \"x\"}]}", "'messages[0].role' is 'wizard'" },
        { "/api/chat", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\", \"colour\": 1}]}", "messages[0].colour" },
        { "/api/chat", "{\"messages\": " + Hi + ", \"options\": 5}", "options" },
        { "/api/chat", "{\"messages\": " + Hi + ", \"options\": {\"temperature\": \"hot\"}}", "temperature" },
        { "/api/chat", "{\"messages\": " + Hi + ", \"options\": {\"num_predict\": -5}}", "num_predict" },
        { "/api/chat", "{\"messages\": " + Hi + ", \"options\": {\"num_predict\": 0}}", "'options.num_predict' is 0" },
        { "/api/chat", "{\"messages\": " + Hi + ", \"options\": {\"num_gpu\": \"all\"}}", "'options.num_gpu' must be a number" },
        { "/api/chat", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\", \"images\": \"abc\"}]}", "'messages[0].images' must be a list" },
        { "/api/chat", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\", \"images\": [5]}]}", "'messages[0].images[0]' must be a base64 picture" },
        { "/api/chat", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\", \"images\": [\"iVBORw0KGgo\"]}]}", "image" },
        { "/api/chat", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\", \"tool_calls\": []}]}", "only an assistant's message holds tool calls" },
        { "/api/chat", "{\"messages\": [{\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": [{\"function\": {\"name\": \"f\", \"arguments\": 5}}]}]}", "must be an object of arguments" },
        { "/api/chat", "{\"messages\": " + Hi + ", \"keep_alive\": {}}", "'keep_alive' must be a duration" },
        { "/api/chat", "{\"messages\": " + Hi + ", \"tools\": 5}", "tools" },
        { "/api/generate", "{\"prompt\": \"x\", \"raw\": true, \"images\": [\"iVBOR\"]}", "'images' goes through the chat template" },
        { "/api/generate", "{\"prompt\": \"x\", \"context\": [1, 2]}", "'context' (deprecated in Ollama) is not kept" },
        { "/api/generate", "{\"prompt\": \"x\", \"template\": \"{{ .Prompt }}\"}", "'template' is not supported" },
        { "/api/generate", "{\"prompt\": 5}", "prompt" },
        { "/api/embed", "{\"input\": 5}", "input" },
        { "/api/embed", "{}", "input" },
        { "/api/embeddings", "{}", "'prompt' is required" },
        { "/api/show", "{}", "'model' is required" },
        { "/api/chat", "{\"messages\": " + Hi + ", \"logprobs\": 1}", "'logprobs' must be true or false" },
        { "/api/generate", "{\"prompt\": \"x\", \"logprobs\": true, \"top_logprobs\": 21}", "'top_logprobs' must be an integer from 0 to 20" },
        { "/api/generate", "{\"prompt\": \"x\", \"raw\": true, \"logprobs\": true, \"top_logprobs\": -1}", "'top_logprobs' must be an integer from 0 to 20" },
    };

    [Theory]
    [MemberData(nameof(Bodies))]
    public async Task BadBodiesGet400InOllamasShape(string endpoint, string body, string says)
    {
        using var content = new StringContent(body, Encoding.UTF8, "application/json");
        using HttpResponseMessage response = await _server.Http.PostAsync(endpoint, content);
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{endpoint} {body}: {(int)response.StatusCode} {text}");
        using JsonDocument error = JsonDocument.Parse(text);
        Assert.Contains(says, error.RootElement.GetProperty("error").GetString(), StringComparison.Ordinal);
    }
}

/// <summary>Ollama's refusals as the tests read them.</summary>
internal static class OllamaRefusals
{
    /// <summary>Posts and expects a 400 whose Ollama error (<c>{"error": "..."}</c>) says <paramref name="message"/>.</summary>
    public static async Task AssertOllamaRefusedAsync(this TestServer server, string path, string json, string message)
    {
        (HttpStatusCode status, JsonDocument body) = await server.PostAsync(path, json);
        using (body)
        {
            Assert.True(status == HttpStatusCode.BadRequest, $"{path}: {(int)status} {body.RootElement}");
            Assert.Contains(message, body.RootElement.GetProperty("error").GetString(), StringComparison.Ordinal);
        }
    }
}

/// <summary>
/// Pictures through Ollama's <c>/api/chat</c> (base64 <c>images</c> on the message, before its text, as Ollama places
/// them; PNG and JPEG told apart by their bytes): the tiny Qwen2-VL's answers transformers gave for the same conversations.
/// </summary>
public sealed class OllamaPictureTests
{
    [Theory]
    [InlineData("1_image_a")]
    [InlineData("3_images_c_d")]
    public async Task Images_GiveTheReferenceAnswer(string name)
    {
        using JsonDocument reference = QwenSharp.Tests.Qwen2VL.VisionFixture.Case(name);
        int[] expected = QwenSharp.Tests.Qwen2VL.VisionFixture.Ints(reference.RootElement.GetProperty("greedy_new_ids"));
        using JsonDocument conversation = JsonDocument.Parse(File.ReadAllBytes(QwenSharp.Tests.Qwen2VL.VisionFixture.Messages(name)));
        JsonElement message = conversation.RootElement.GetProperty("messages").EnumerateArray().Last();
        string[] images = [.. message.GetProperty("content").EnumerateArray().Where(p => p.GetProperty("type").GetString() == "image")
            .Select(p => Convert.ToBase64String(File.ReadAllBytes(QwenSharp.Tests.Qwen2VL.VisionFixture.Image(Path.GetFileName(p.GetProperty("image").GetString()!)))))];
        string text = message.GetProperty("content").EnumerateArray().Single(p => p.GetProperty("type").GetString() == "text").GetProperty("text").GetString()!;

        await using TestServer server = await TestServer.StartAsync(QwenSharp.Tests.Qwen2VL.VisionFixture.ModelDirectory, null);
        JsonElement answer = await server.PostOkAsync("/api/chat", JsonSerializer.Serialize(new
        {
            model = "tiny-vl", stream = false, options = new { temperature = 0, num_predict = 5 },
            messages = new[] { new { role = "user", content = text, images } },
        }));

        Assert.Equal(server.Model.Tokenizer.Decode(expected[..5]), answer.GetProperty("message").GetProperty("content").GetString());
        Assert.Equal(reference.RootElement.GetProperty("num_prompt_tokens").GetInt32(), answer.GetProperty("prompt_eval_count").GetInt32());
    }
}
