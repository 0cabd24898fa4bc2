using System.Text;
using System.Text.Json;
using OpenAI.Chat;
using QwenSharp.Tests.Support;
using Validator = Json.Schema.JsonSchema;

namespace QwenSharp.Tests.Server;

/// <summary>
/// Tool calls held to the tools offered (<see cref="Sampling.ToolCallPrefix"/>), through the server, with a model that
/// would answer "Hello&lt;tool_call&gt;" and stop (<see cref="ScriptedModel"/>): left alone, that is a call with nothing in
/// it. Held, every call must come back whole, to a tool offered, with arguments its schema allows (checked by
/// JsonSchema.Net), whether tool_choice forces the call or the model opens it itself.
/// </summary>
public sealed class HeldToolCallTests : IAsyncLifetime
{
    private const string Answer = "Hello<tool_call>";
    private const string Weather = """{"type": "object", "properties": {"unit": {"enum": ["celsius", "fahrenheit"]}, "days": {"type": "integer", "minimum": 1, "maximum": 7}}, "required": ["unit", "days"], "additionalProperties": false}""";
    private const string Time = """{"type": "object", "properties": {"zone": {"enum": ["UTC", "CET"]}}, "required": ["zone"], "additionalProperties": false}""";
    private static readonly Lazy<string> s_model = new(() => ScriptedModel.Write(Answer));
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(s_model.Value, new QwenSharp.Server.ServerOptions { Context = 1024 });

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private static string Request(string toolChoice, bool parallel = false, int maxTokens = 80) => $$$"""
        {"messages": [{"role": "user", "content": "Weather?"}], "temperature": 0, "max_tokens": {{{maxTokens}}}, "parallel_tool_calls": {{{(parallel ? "true" : "false")}}},
         "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {{{Weather}}}}},
                   {"type": "function", "function": {"name": "get_time", "parameters": {{{Time}}}}},
                   {"type": "function", "function": {"name": "ping"}}]{{{toolChoice}}}}
        """;

    /// <summary>The answer's tool calls, each checked against its tool's parameters.</summary>
    private static List<string> CheckedCalls(JsonElement answer)
    {
        JsonElement choice = answer.GetProperty("choices")[0];
        Assert.Equal("tool_calls", choice.GetProperty("finish_reason").GetString());
        var names = new List<string>();
        foreach (JsonElement call in choice.GetProperty("message").GetProperty("tool_calls").EnumerateArray())
        {
            string name = call.GetProperty("function").GetProperty("name").GetString()!;
            using JsonDocument arguments = JsonDocument.Parse(call.GetProperty("function").GetProperty("arguments").GetString()!);
            bool valid = name switch
            {
                "get_weather" => Validator.FromText(Weather).Evaluate(arguments.RootElement).IsValid,
                "get_time" => Validator.FromText(Time).Evaluate(arguments.RootElement).IsValid,
                "ping" => arguments.RootElement.ValueKind == JsonValueKind.Object && !arguments.RootElement.EnumerateObject().Any(),
                _ => false,
            };
            Assert.True(valid, $"{name}({arguments.RootElement.GetRawText()}) breaks its tool");
            names.Add(name);
        }

        return names;
    }

    [Fact]
    public async Task LeftAloneTheScriptIsACallWithNothingInIt()
    {
        JsonElement answer = await _server.PostOkAsync("/v1/chat/completions", """{"messages": [{"role": "user", "content": "Weather?"}], "temperature": 0, "max_tokens": 80}""");

        Assert.Equal(Answer, answer.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
    }

    [Fact]
    public async Task ACallTheModelOpensItselfIsHeldToTheTools()
    {
        JsonElement answer = await _server.PostOkAsync("/v1/chat/completions", Request(""));

        Assert.Single(CheckedCalls(answer));
        Assert.Equal("Hello", answer.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
    }

    [Fact]
    public async Task RequiredCallsAreHeldFromTheFirstToken()
    {
        JsonElement answer = await _server.PostOkAsync("/v1/chat/completions", Request(""", "tool_choice": "required" """));

        Assert.Single(CheckedCalls(answer));
    }

    [Theory]
    [InlineData("get_weather")]
    [InlineData("get_time")]
    [InlineData("ping")]
    public async Task ANamedCallIsToThatFunction(string name)
    {
        JsonElement answer = await _server.PostOkAsync("/v1/chat/completions", Request($$$""", "tool_choice": {"type": "function", "function": {"name": "{{{name}}}"}}"""));

        Assert.Equal([name], CheckedCalls(answer));
    }

    [Fact]
    public async Task ParallelCallsAreEachHeld()
    {
        // The scripted model, held, keeps choosing to call again: several calls, each whole, until the token limit.
        JsonElement answer = await _server.PostOkAsync("/v1/chat/completions", Request(""", "tool_choice": "required" """, parallel: true, maxTokens: 200));

        JsonElement choice = answer.GetProperty("choices")[0];
        int calls = choice.GetProperty("message").GetProperty("tool_calls").GetArrayLength();
        Assert.True(calls >= 2, $"{calls} calls");
    }

    [Fact]
    public async Task AStreamedHeldCallComesBackAsToolCallDeltas()
    {
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 80, ToolChoice = ChatToolChoice.CreateRequiredChoice(), AllowParallelToolCalls = false };
        options.Tools.Add(ChatTool.CreateFunctionTool("get_time", "The time in a zone", BinaryData.FromString(Time)));
        var arguments = new StringBuilder();
        string? name = null;
        await foreach (StreamingChatCompletionUpdate update in _server.Chat().CompleteChatStreamingAsync([new UserChatMessage("Time?")], options))
        {
            foreach (StreamingChatToolCallUpdate call in update.ToolCallUpdates)
            {
                name ??= call.FunctionName;
                arguments.Append(call.FunctionArgumentsUpdate?.ToString());
            }
        }

        Assert.Equal("get_time", name);
        Assert.True(Validator.FromText(Time).Evaluate(JsonDocument.Parse(arguments.ToString()).RootElement).IsValid, arguments.ToString());
    }

    /// <summary>A streamed request's chunks' choice objects (the server-sent events' data, in order).</summary>
    private async Task<List<JsonElement>> StreamedChoicesAsync(string request)
    {
        using var content = new StringContent(request.TrimEnd()[..^1] + """, "stream": true}""", Encoding.UTF8, "application/json");
        using HttpResponseMessage response = await _server.Http.PostAsync("/v1/chat/completions", content);
        string body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, body);
        return [.. body.Split('\n').Where(l => l.StartsWith("data: {", StringComparison.Ordinal))
            .Select(l => JsonDocument.Parse(l["data: ".Length..]).RootElement.GetProperty("choices")[0])];
    }

    [Theory]
    [InlineData(""", "tool_choice": "required" """, true)]
    [InlineData(""", "tool_choice": {"type": "function", "function": {"name": "get_weather"}}""", false)]
    [InlineData("", false)]
    public async Task StreamedCallsGrowTokenByTokenAndJoinIntoTheWholeAnswersCalls(string toolChoice, bool parallel)
    {
        string request = Request(toolChoice, parallel, maxTokens: 200);
        JsonElement whole = (await _server.PostOkAsync("/v1/chat/completions", request)).GetProperty("choices")[0];
        List<JsonElement> chunks = await StreamedChoicesAsync(request);

        // OpenAI's stream shape: a call's first entry has its id, type and name; the later ones only the arguments' next text.
        var calls = new List<(string Id, string Name, StringBuilder Arguments, int Chunks)>();
        foreach (JsonElement chunk in chunks)
        {
            if (!chunk.GetProperty("delta").TryGetProperty("tool_calls", out JsonElement entries))
            {
                continue;
            }

            foreach (JsonElement entry in entries.EnumerateArray())
            {
                int index = entry.GetProperty("index").GetInt32();
                JsonElement function = entry.GetProperty("function");
                if (index == calls.Count)
                {
                    calls.Add((entry.GetProperty("id").GetString()!, function.GetProperty("name").GetString()!, new StringBuilder(), 0));
                    Assert.Equal("function", entry.GetProperty("type").GetString());
                }
                else
                {
                    Assert.False(entry.TryGetProperty("id", out _), $"call {index} announced twice");
                    Assert.False(function.TryGetProperty("name", out _), $"call {index} named twice");
                }

                calls[index].Arguments.Append(function.GetProperty("arguments").GetString());
                calls[index] = calls[index] with { Chunks = calls[index].Chunks + 1 };
            }
        }

        JsonElement[] expected = [.. whole.GetProperty("message").GetProperty("tool_calls").EnumerateArray()];
        Assert.Equal(expected.Length, calls.Count);
        Assert.Equal(calls.Count, calls.Select(c => c.Id).Distinct().Count());
        for (int c = 0; c < calls.Count; c++)
        {
            Assert.StartsWith("call_", calls[c].Id, StringComparison.Ordinal);
            Assert.Equal(expected[c].GetProperty("function").GetProperty("name").GetString(), calls[c].Name);
            Assert.Equal(expected[c].GetProperty("function").GetProperty("arguments").GetString(), calls[c].Arguments.ToString());
            Assert.True(calls[c].Chunks > 1 || calls[c].Arguments.ToString() == "{}", $"call {c}'s arguments came in {calls[c].Chunks} chunk(s)");
        }

        Assert.Equal("tool_calls", chunks[^1].GetProperty("finish_reason").GetString());
        Assert.DoesNotContain(chunks, c => c.GetProperty("delta").TryGetProperty("content", out JsonElement text) && text.GetString()!.Contains('<', StringComparison.Ordinal));
    }

    [Fact]
    public async Task AStreamedCallCutByTheTokenLimitEndsForThatReason()
    {
        List<JsonElement> chunks = await StreamedChoicesAsync(Request(""", "tool_choice": {"type": "function", "function": {"name": "get_weather"}}""", maxTokens: 3));

        Assert.Contains(chunks, c => c.GetProperty("delta").TryGetProperty("tool_calls", out _));
        Assert.Equal("length", chunks[^1].GetProperty("finish_reason").GetString());
        Assert.All(chunks, c => Assert.Equal("", c.GetProperty("delta").TryGetProperty("content", out JsonElement text) ? text.GetString() : ""));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("{")]
    [InlineData("<tool_call>")]
    public async Task WithAResponseFormatTheAnswerIsCallsOrThatFormat(string? favoured)
    {
        const string Format = """{"type": "object", "properties": {"done": {"type": "boolean"}}, "required": ["done"], "additionalProperties": false}""";
        string bias = favoured is null ? "" : $$""", "logit_bias": {"{{TestTokenizers.Qwen.TokenToId(favoured)}}": 20}""";
        JsonElement answer = await _server.PostOkAsync("/v1/chat/completions",
            Request($$$""", "response_format": {"type": "json_schema", "json_schema": {"name": "f", "schema": {{{Format}}}}}{{{bias}}}"""));

        JsonElement choice = answer.GetProperty("choices")[0];
        if (choice.GetProperty("finish_reason").GetString() == "tool_calls")
        {
            Assert.NotEqual("{", favoured);
            Assert.Single(CheckedCalls(answer));
        }
        else
        {
            Assert.NotEqual("<tool_call>", favoured);
            Assert.Equal("stop", choice.GetProperty("finish_reason").GetString());
            string content = choice.GetProperty("message").GetProperty("content").GetString()!;
            Assert.True(Validator.FromText(Format).Evaluate(JsonDocument.Parse(content).RootElement).IsValid, content);
        }
    }
}

