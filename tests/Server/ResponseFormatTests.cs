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
    [InlineData("{\"type\": \"json_schema\", \"json_schema\": {\"name\": \"x\", \"schema\": {\"type\": \"object\", \"properties\": {\"a\": {\"not\": {\"type\": \"null\"}}}}}}",
        "response_format.json_schema.schema", "schema.properties.a.not")]
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

    /// <summary>vLLM's guided_json (a schema or its text) and llama-server's json_schema hold the answer as response_format does.</summary>
    [Theory]
    [InlineData("guided_json", false)]
    [InlineData("guided_json", true)]
    [InlineData("json_schema", false)]
    public async Task OtherServersSchemaFieldsHoldTheAnswerToo(string field, bool asText)
    {
        string schema = asText ? JsonSerializer.Serialize(Reading) : Reading;
        JsonElement answer = await _server.PostOkAsync("/v1/chat/completions",
            $"{{\"messages\": [{{\"role\": \"user\", \"content\": \"Answer in JSON.\"}}], \"max_tokens\": 48, \"temperature\": 1, \"seed\": 5, \"n\": 3, \"{field}\": {schema}}}");

        var validator = Json.Schema.JsonSchema.FromText(Reading);
        foreach (JsonElement choice in answer.GetProperty("choices").EnumerateArray())
        {
            string content = choice.GetProperty("message").GetProperty("content").GetString()!;
            Assert.StartsWith("{", content, StringComparison.Ordinal);
            if (choice.GetProperty("finish_reason").GetString() == "stop")
            {
                Assert.True(validator.Evaluate(JsonDocument.Parse(content).RootElement).IsValid, content);
            }
        }
    }

    /// <summary>vLLM's guided_choice: each answer exactly one of the texts, as plain text, in chat and text completions.</summary>
    [Fact]
    public async Task GuidedChoiceAnswersAreOneOfTheTexts()
    {
        string[] labels = ["positive", "negative", "neutral", "négatif 😀"];
        string choices = JsonSerializer.Serialize(labels);
        JsonElement chat = await _server.PostOkAsync("/v1/chat/completions",
            $"{{\"messages\": [{{\"role\": \"user\", \"content\": \"Sentiment?\"}}], \"max_tokens\": 16, \"temperature\": 1.5, \"seed\": 2, \"n\": 6, \"guided_choice\": {choices}}}");
        JsonElement text = await _server.PostOkAsync("/v1/completions",
            $"{{\"prompt\": \"Sentiment:\", \"max_tokens\": 16, \"temperature\": 1.5, \"seed\": 3, \"n\": 6, \"guided_choice\": {choices}}}");

        string[] answers =
        [
            .. chat.GetProperty("choices").EnumerateArray().Select(c => c.GetProperty("message").GetProperty("content").GetString()!),
            .. text.GetProperty("choices").EnumerateArray().Select(c => c.GetProperty("text").GetString()!),
        ];
        Assert.All(answers, a => Assert.Contains(a, labels));
        Assert.All(chat.GetProperty("choices").EnumerateArray(), c => Assert.Equal("stop", c.GetProperty("finish_reason").GetString()));
    }

    /// <summary>vLLM's guided_regex: each answer plain text the expression matches whole (checked by .NET's own).</summary>
    [Fact]
    public async Task GuidedRegexAnswersMatchTheExpression()
    {
        const string Regex = @"\\d{3}-[A-Z]{2}( \\(ok\\))?";
        JsonElement chat = await _server.PostOkAsync("/v1/chat/completions",
            $"{{\"messages\": [{{\"role\": \"user\", \"content\": \"Code?\"}}], \"max_tokens\": 24, \"temperature\": 1.5, \"seed\": 4, \"n\": 6, \"guided_regex\": \"{Regex}\"}}");

        Assert.All(chat.GetProperty("choices").EnumerateArray(), c =>
        {
            Assert.Matches(@"^\d{3}-[A-Z]{2}( \(ok\))?\z", c.GetProperty("message").GetProperty("content").GetString()!);
            Assert.Equal("stop", c.GetProperty("finish_reason").GetString());
        });
    }

    /// <summary>llama-server's grammar and vLLM's guided_grammar (GBNF): each answer plain text the grammar allows.</summary>
    [Fact]
    public async Task GrammarAnswersAreTextTheGrammarAllows()
    {
        const string Grammar = "root ::= (\\\"yes\\\" | \\\"no\\\") \\\", \\\" [a-z]{2,6} \\\".\\\"";
        JsonElement text = await _server.PostOkAsync("/v1/completions",
            $"{{\"prompt\": \"Answer:\", \"max_tokens\": 24, \"temperature\": 1.5, \"seed\": 5, \"n\": 4, \"grammar\": \"{Grammar}\"}}");
        JsonElement chat = await _server.PostOkAsync("/v1/chat/completions",
            $"{{\"messages\": [{{\"role\": \"user\", \"content\": \"Well?\"}}], \"max_tokens\": 24, \"temperature\": 1.5, \"seed\": 6, \"n\": 4, \"guided_grammar\": \"{Grammar}\"}}");

        string[] answers =
        [
            .. text.GetProperty("choices").EnumerateArray().Select(c => c.GetProperty("text").GetString()!),
            .. chat.GetProperty("choices").EnumerateArray().Select(c => c.GetProperty("message").GetProperty("content").GetString()!),
        ];
        Assert.All(answers, a => Assert.Matches(@"^(yes|no), [a-z]{2,6}\.\z", a));
    }

    [Theory]
    [InlineData("\"guided_regex\": \"a(?=b)\"", "guided_regex", "lookaround")]
    [InlineData("\"guided_regex\": 5", "guided_regex", "must be a string")]
    [InlineData("\"grammar\": \"root ::= x\"", "grammar", "'grammar': line 1, column 10: rule 'x' is used but never defined")]
    [InlineData("\"guided_grammar\": \"start ::= \\\"a\\\"\"", "guided_grammar", "no rule 'root'")]
    [InlineData("\"grammar\": \"root ::= \\\"a\\\"\", \"guided_regex\": \"a\"", "grammar", "give one")]
    [InlineData("\"grammar\": \"root ::= \\\"a\\\"\", \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\"}}]", "grammar", "calls or plain text")]
    [InlineData("\"guided_choice\": []", "guided_choice", "0 choices")]
    [InlineData("\"guided_choice\": [\"a\", \"a\"]", "guided_choice", "given twice")]
    [InlineData("\"guided_choice\": [\"a\", 1]", "guided_choice", "a list of strings")]
    [InlineData("\"guided_json\": \"{nope\"", "guided_json", "not JSON")]
    [InlineData("\"guided_json\": {\"type\": \"object\", \"not\": {\"required\": [\"a\"]}}", "guided_json", "'not'")]
    [InlineData("\"guided_json\": {\"type\": \"object\"}, \"response_format\": {\"type\": \"json_object\"}", "guided_json", "give one")]
    [InlineData("\"guided_choice\": [\"a\"], \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\"}}]", "guided_choice", "calls or plain text")]
    public async Task BadGuidesAreRefusedByName(string fields, string param, string message)
    {
        await _server.AssertRefusedAsync("/v1/chat/completions", $"{{\"messages\": [{{\"role\": \"user\", \"content\": \"x\"}}], {fields}}}", param, message);
    }
}
