using System.Net;
using System.Text;
using System.Text.Json;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Server;

/// <summary>
/// A corpus of bad requests: each gets a 4xx with an OpenAI-shaped error object naming what is wrong,
/// never a 500 or a dropped connection, and the server keeps serving.
/// </summary>
public sealed class MalformedRequestTests : IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(new QwenSharp.Server.ServerOptions { MaxConcurrent = 4 });

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private static readonly string s_tenMegabytes = new('a', 10 << 20);

    public static TheoryData<string, string, string, string?> Bodies => new()
    {
        // endpoint, name, body, the param the error must name (null: any)
        { "/v1/completions", "empty body", "", "body" },
        { "/v1/completions", "truncated JSON", "{\"prompt\": \"Once upon", "body" },
        { "/v1/completions", "not an object", "[1, 2, 3]", "body" },
        { "/v1/completions", "null", "null", "body" },
        { "/v1/completions", "NaN", "{\"prompt\": \"x\", \"temperature\": NaN}", "body" },
        { "/v1/completions", "trailing garbage", "{\"prompt\": \"x\"} {}", "body" },
        { "/v1/completions", "huge integer", "{\"prompt\": \"x\", \"max_tokens\": 1e999}", "max_tokens" },
        { "/v1/completions", "huge double", "{\"prompt\": \"x\", \"temperature\": 1e400}", "temperature" },
        { "/v1/completions", "integer overflow", "{\"prompt\": \"x\", \"n\": 99999999999999999999}", "n" },
        { "/v1/completions", "wrong type", "{\"prompt\": \"x\", \"temperature\": \"hot\"}", "temperature" },
        { "/v1/completions", "out of range", "{\"prompt\": \"x\", \"top_p\": 0}", "top_p" },
        { "/v1/completions", "negative max_tokens", "{\"prompt\": \"x\", \"max_tokens\": -1}", "max_tokens" },
        { "/v1/completions", "n above the slots", "{\"prompt\": \"x\", \"n\": 5}", "n" },
        { "/v1/completions", "unknown field", "{\"prompt\": \"x\", \"temprature\": 0.5}", "temprature" },
        { "/v1/completions", "duplicate field", "{\"prompt\": \"x\", \"prompt\": \"y\"}", "prompt" },
        { "/v1/completions", "prompt of the wrong type", "{\"prompt\": 5}", "prompt" },
        { "/v1/completions", "token id out of range", "{\"prompt\": [1, 2, 99999999]}", "prompt[2]" },
        { "/v1/completions", "padding id without text", "{\"prompt\": [1, 151935]}", "prompt[1]" },
        { "/v1/completions", "token id not a number", "{\"prompt\": [1, \"two\"]}", "prompt[1]" },
        { "/v1/completions", "lone surrogate", "{\"prompt\": \"\\ud800\"}", "prompt" },
        { "/v1/completions", "logit_bias not an object", "{\"prompt\": \"x\", \"logit_bias\": [[1, 2]]}", "logit_bias" },
        { "/v1/completions", "logit_bias key not an id", "{\"prompt\": \"x\", \"logit_bias\": {\"hello\": 1}}", "logit_bias.hello" },
        { "/v1/completions", "logit_bias id past the logits", "{\"prompt\": \"x\", \"logit_bias\": {\"151936\": 1}}", "logit_bias.151936" },
        { "/v1/completions", "logit_bias above 100", "{\"prompt\": \"x\", \"logit_bias\": {\"5\": 101}}", "logit_bias.5" },
        { "/v1/completions", "logit_bias not a number", "{\"prompt\": \"x\", \"logit_bias\": {\"5\": \"-100\"}}", "logit_bias.5" },
        { "/v1/completions", "stop of the wrong type", "{\"prompt\": \"x\", \"stop\": [1]}", "stop[0]" },
        { "/v1/completions", "deep nesting", "{\"prompt\": " + new string('[', 10000) + new string(']', 10000) + "}", "body" },
        { "/v1/completions", "10 MB prompt (longer than the context)", "{\"prompt\": \"" + s_tenMegabytes + "\"}", "prompt" },
        { "/v1/completions", "10 MB model name", "{\"prompt\": \"x\", \"model\": \"" + s_tenMegabytes + "\"}", "model" },
        { "/v1/completions", "10 MB stop string", "{\"prompt\": \"x\", \"stop\": \"" + s_tenMegabytes + "\"}", "stop" },
        { "/v1/chat/completions", "messages not a list", "{\"messages\": \"hi\"}", "messages" },
        { "/v1/chat/completions", "no messages", "{\"messages\": []}", "messages" },
        { "/v1/chat/completions", "unknown role", "{\"messages\": [{\"role\": \"wizard\", \"content\": \"x\"}]}", "messages[0].role" },
        { "/v1/chat/completions", "image on a text model", "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"image_url\": {\"url\": \"x\"}}]}]}", "messages[0].content[0].type" },
        { "/v1/chat/completions", "unknown message field", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\", \"colour\": 1}]}", "messages[0].colour" },
        { "/v1/chat/completions", "top_logprobs without logprobs", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"top_logprobs\": 2}", "top_logprobs" },
        { "/v1/chat/completions", "tool_choice naming no tool", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": \"f\"}}}", "tool_choice.function.name" },
        { "/v1/chat/completions", "10 MB message (longer than the context)", "{\"messages\": [{\"role\": \"user\", \"content\": \"" + s_tenMegabytes + "\"}]}", "messages" },
        { "/v1/chat/completions", "a strict tool whose parameters cannot be held", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\"}}, "
            + "{\"type\": \"function\", \"function\": {\"name\": \"g\", \"strict\": true, \"parameters\": {\"type\": \"object\", \"properties\": {\"n\": {\"not\": {\"type\": \"null\"}}}}}}]}", "tools[1].function.parameters" },
        { "/v1/chat/completions", "two tools of one name", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\"}}, "
            + "{\"type\": \"function\", \"function\": {\"name\": \"f\"}}]}", "tools[1].function.name" },
        { "/tokenize", "content missing", "{}", "content" },
        { "/detokenize", "token out of range", "{\"tokens\": [-1]}", "tokens[0]" },
    };

    [Theory]
    [MemberData(nameof(Bodies))]
    public async Task BadBodiesGet400NamingTheProblem(string endpoint, string name, string body, string? param)
    {
        using var content = new StringContent(body, Encoding.UTF8, "application/json");
        using HttpResponseMessage response = await _server.Http.PostAsync(endpoint, content);
        string text = await response.Content.ReadAsStringAsync();

        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{name}: {(int)response.StatusCode} {text[..Math.Min(text.Length, 300)]}");
        using JsonDocument error = JsonDocument.Parse(text);
        JsonElement details = error.RootElement.GetProperty("error");
        Assert.False(string.IsNullOrWhiteSpace(details.GetProperty("message").GetString()));
        Assert.Equal("invalid_request_error", details.GetProperty("type").GetString());
        Assert.True(details.GetProperty("message").GetString()!.Length < 1000, "the error repeats the bad input");
        if (param is not null)
        {
            Assert.Equal(param, details.GetProperty("param").GetString());
        }

        JsonElement health = await _server.PostOkAsync("/v1/completions", "{\"prompt\": \"still serving\", \"max_tokens\": 2}");
        Assert.Equal(2, health.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task InvalidUtf8Gets400()
    {
        using var content = new ByteArrayContent([.. "{\"prompt\": \""u8, 0xff, 0xfe, .. "\"}"u8]);
        using HttpResponseMessage response = await _server.Http.PostAsync("/v1/completions", content);

        using JsonDocument error = JsonDocument.Parse(await response.Content.ReadAsStringAsync());

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("prompt", error.RootElement.GetProperty("error").GetProperty("param").GetString());
        Assert.Contains("not valid text", error.RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task APromptLongerThanTheContextIsContextLengthExceeded()
    {
        string body = $"{{\"prompt\": [{string.Join(",", Enumerable.Repeat(100, 600))}]}}";
        (HttpStatusCode status, JsonDocument error) = await _server.PostAsync("/v1/completions", body);

        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("context_length_exceeded", error.RootElement.GetProperty("error").GetProperty("code").GetString());
        Assert.Contains("600 tokens", error.RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        error.Dispose();
    }

    [Fact]
    public async Task ABodyOverTheLimitGets413AndUnknownPathsGet404()
    {
        await using TestServer small = await TestServer.StartAsync(new QwenSharp.Server.ServerOptions { MaxBodyBytes = 1000 });
        (HttpStatusCode tooLarge, JsonDocument error) = await small.PostAsync("/v1/completions", "{\"prompt\": \"" + new string('a', 2000) + "\"}");
        using HttpResponseMessage missing = await small.Http.GetAsync("/v1/engines");

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, tooLarge);
        Assert.Equal("body_too_large", error.RootElement.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        error.Dispose();
    }
}
