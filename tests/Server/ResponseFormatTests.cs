using System.Text.Json;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Server;

/// <summary>
/// <c>response_format</c> on a random-weight Qwen2 with the real tokenizer (151 936 tokens, every one checked at every
/// step): <c>json_object</c> answers that stop are objects System.Text.Json parses, the rest begin one; <c>json_schema</c>
/// answers pass JsonSchema.Net, an independent validator.
/// </summary>
public sealed class ResponseFormatTests : IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync();

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private static string Body(string format, string sampling) =>
        $"{{\"messages\": [{{\"role\": \"user\", \"content\": \"Answer in JSON.\"}}], \"max_tokens\": 48, {sampling}, \"response_format\": {format}}}";

    [Fact]
    public async Task JsonObjectAnswersAreObjects()
    {
        // A bias towards "}" makes the greedy answer close its object at once: then only an end-of-sequence token is left.
        JsonElement greedy = await _server.PostOkAsync("/v1/chat/completions",
            Body("{\"type\": \"json_object\"}", $"\"temperature\": 0, \"logit_bias\": {{\"{TestTokenizers.Qwen.TokenToId("}")}\": 30}}"));
        JsonElement sampled = await _server.PostOkAsync("/v1/chat/completions", Body("{\"type\": \"json_object\"}", "\"temperature\": 1.2, \"seed\": 3, \"n\": 4"));
        JsonElement free = await _server.PostOkAsync("/v1/chat/completions", Body("{\"type\": \"text\"}", "\"temperature\": 0"));

        JsonElement[] choices = [.. greedy.GetProperty("choices").EnumerateArray(), .. sampled.GetProperty("choices").EnumerateArray()];
        int stopped = 0;
        foreach (JsonElement choice in choices)
        {
            string content = choice.GetProperty("message").GetProperty("content").GetString()!;
            Assert.StartsWith("{", content, StringComparison.Ordinal);
            if (choice.GetProperty("finish_reason").GetString() == "stop")
            {
                using JsonDocument answer = JsonDocument.Parse(content);
                Assert.Equal(JsonValueKind.Object, answer.RootElement.ValueKind);
                stopped++;
            }
        }

        using (JsonDocument closed = JsonDocument.Parse(greedy.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!))
        {
            Assert.Empty(closed.RootElement.EnumerateObject());
        }

        Assert.Equal("stop", greedy.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.True(stopped >= 1);
        // The same request without the format is not JSON: the constraint is what made it so.
        Assert.False(free.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!.StartsWith('{'));
    }

    private const string Reading = """
        {"type": "object", "additionalProperties": false, "required": ["ok", "count", "level"], "properties": {
          "ok": {"type": "boolean"}, "count": {"type": "integer"}, "level": {"enum": ["low", "high"]}, "gauge": {"type": ["number", "null"]}}}
        """;

    [Fact]
    public async Task JsonSchemaAnswersPassAnIndependentValidator()
    {
        string format = $"{{\"type\": \"json_schema\", \"json_schema\": {{\"name\": \"reading\", \"strict\": true, \"schema\": {Reading}}}}}";
        JsonElement response = await _server.PostOkAsync("/v1/chat/completions", Body(format, "\"temperature\": 1.0, \"seed\": 7, \"n\": 3").Replace("48", "300", StringComparison.Ordinal));

        Json.Schema.JsonSchema validator = Json.Schema.JsonSchema.FromText(Reading);
        foreach (JsonElement choice in response.GetProperty("choices").EnumerateArray())
        {
            string content = choice.GetProperty("message").GetProperty("content").GetString()!;
            Assert.Equal("stop", choice.GetProperty("finish_reason").GetString());
            using JsonDocument answer = JsonDocument.Parse(content);
            Assert.True(validator.Evaluate(answer.RootElement).IsValid, content);
        }
    }

    [Fact]
    public async Task TextCompletionsTakeTheFormatToo()
    {
        string format = $"{{\"type\": \"json_schema\", \"json_schema\": {{\"name\": \"reading\", \"schema\": {Reading}}}}}";
        JsonElement held = await _server.PostOkAsync("/v1/completions",
            $"{{\"prompt\": \"The reading as JSON:\", \"max_tokens\": 300, \"temperature\": 1.0, \"seed\": 5, \"n\": 3, \"echo\": true, \"response_format\": {format}}}");
        JsonElement free = await _server.PostOkAsync("/v1/completions", "{\"prompt\": \"The reading as JSON:\", \"max_tokens\": 30, \"temperature\": 0}");

        Json.Schema.JsonSchema validator = Json.Schema.JsonSchema.FromText(Reading);
        foreach (JsonElement choice in held.GetProperty("choices").EnumerateArray())
        {
            string text = choice.GetProperty("text").GetString()!;
            Assert.StartsWith("The reading as JSON:", text, StringComparison.Ordinal);
            Assert.Equal("stop", choice.GetProperty("finish_reason").GetString());
            using JsonDocument answer = JsonDocument.Parse(text["The reading as JSON:".Length..]);
            Assert.True(validator.Evaluate(answer.RootElement).IsValid, text);
        }

        Assert.False(free.GetProperty("choices")[0].GetProperty("text").GetString()!.StartsWith('{'));
        (System.Net.HttpStatusCode status, JsonDocument error) = await _server.PostAsync("/v1/completions",
            "{\"prompt\": \"x\", \"ignore_eos\": true, \"response_format\": {\"type\": \"json_object\"}}");
        using (error)
        {
            Assert.Equal(System.Net.HttpStatusCode.BadRequest, status);
            Assert.Equal("ignore_eos", error.RootElement.GetProperty("error").GetProperty("param").GetString());
        }
    }

    [Theory]
    [InlineData("{\"type\": \"json_schema\", \"json_schema\": {\"name\": \"x\", \"schema\": {\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"object\", \"minProperties\": 2}}}}}",
        "response_format.json_schema.schema", "schema.properties.a.minProperties")]
    [InlineData("{\"type\": \"json_schema\", \"json_schema\": {\"name\": \"x\"}}", "response_format.json_schema.schema", "is missing")]
    [InlineData("{\"type\": \"json_schema\"}", "response_format.json_schema", "is missing")]
    [InlineData("{\"type\": \"xml\"}", "response_format.type", "'text', 'json_object' or 'json_schema'")]
    public async Task BadFormatsAreRefusedByName(string format, string param, string message)
    {
        (System.Net.HttpStatusCode status, JsonDocument body) = await _server.PostAsync("/v1/chat/completions", Body(format, "\"temperature\": 0"));
        using (body)
        {
            Assert.Equal(System.Net.HttpStatusCode.BadRequest, status);
            Assert.Equal(param, body.RootElement.GetProperty("error").GetProperty("param").GetString());
            Assert.Contains(message, body.RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        }
    }
}
