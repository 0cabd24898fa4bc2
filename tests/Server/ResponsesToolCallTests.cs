using System.Text.Json;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Server;

/// <summary>
/// Tool calls through the Responses API with a model whose answer is known (<see cref="ScriptedModel"/>): a forced call
/// comes back as a function_call item (whole, and streamed as argument deltas), goes back in as function_call and
/// function_call_output items, or the output alone after the stored call (the prompt growing by Qwen's call and response blocks, as chat completions' does), and
/// Microsoft.Extensions.AI's function invocation runs it through the ResponsesClient.
/// </summary>
public sealed class ResponsesToolCallTests : IAsyncLifetime
{
    private const string Answer = "{\"city\": \"Paris\"}}";
    private const string Tool = """{"type": "function", "name": "get_weather", "description": "Current weather in a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}""";
    private static readonly Lazy<string> s_model = new(() => ScriptedModel.Write(Answer));
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(s_model.Value, new QwenSharp.Server.ServerOptions { Context = 1024 });

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private static string Forced(string extra = "") =>
        $$"""{"input": "Weather in Paris?", "tools": [{{Tool}}], "tool_choice": {"type": "function", "name": "get_weather"}, "max_output_tokens": 32, "temperature": 0{{extra}}}""";

    [Fact]
    public async Task AForcedCall_IsAFunctionCallItem_WholeAndStreamed()
    {
        JsonElement body = await _server.PostOkAsync("/v1/responses", Forced());

        JsonElement call = Assert.Single(body.GetProperty("output").EnumerateArray());
        Assert.Equal("function_call", call.GetProperty("type").GetString());
        Assert.Equal("get_weather", call.GetProperty("name").GetString());
        Assert.Equal("completed", call.GetProperty("status").GetString());
        Assert.StartsWith("call_", call.GetProperty("call_id").GetString(), StringComparison.Ordinal);
        Assert.Equal("Paris", JsonDocument.Parse(call.GetProperty("arguments").GetString()!).RootElement.GetProperty("city").GetString());
        Assert.Equal("completed", body.GetProperty("status").GetString());

        List<(string Event, JsonElement Data)> events = await TypedEvents.PostAsync(_server, "/v1/responses", Forced(", \"stream\": true"));
        string[] types = [.. events.Select(e => e.Event)];
        Assert.Equal(["response.created", "response.in_progress", "response.output_item.added"], types[..3]);
        Assert.Equal(["response.function_call_arguments.done", "response.output_item.done", "response.completed"], types[^3..]);
        Assert.DoesNotContain("response.output_text.delta", types);
        Assert.Equal("get_weather", events[2].Data.GetProperty("item").GetProperty("name").GetString());
        string arguments = string.Concat(events.Where(e => e.Event == "response.function_call_arguments.delta").Select(e => e.Data.GetProperty("delta").GetString()));
        Assert.Equal(call.GetProperty("arguments").GetString(), arguments);
        Assert.Equal(arguments, events[^3].Data.GetProperty("arguments").GetString());
        Assert.Equal("function_call", Assert.Single(events[^1].Data.GetProperty("response").GetProperty("output").EnumerateArray()).GetProperty("type").GetString());
    }

    [Fact]
    public async Task TheCallAndItsOutput_GoBackAsInputItems()
    {
        JsonElement first = await _server.PostOkAsync("/v1/responses", Forced());
        JsonElement call = first.GetProperty("output")[0];
        string callItem = call.GetRawText();
        string output = JsonSerializer.Serialize(new { type = "function_call_output", call_id = call.GetProperty("call_id").GetString(), output = "sunny, 21 C" });

        JsonElement second = await _server.PostOkAsync("/v1/responses",
            $$"""{"input": [{"role": "user", "content": "Weather in Paris?"}, {{callItem}}, {{output}}], "tools": [{{Tool}}], "tool_choice": "none", "max_output_tokens": 32, "temperature": 0}""");
        // The output alone, going on from the stored response that made the call.
        JsonElement stored = await _server.PostOkAsync("/v1/responses",
            $$"""{"previous_response_id": "{{first.GetProperty("id").GetString()}}", "input": [{{output}}], "tools": [{{Tool}}], "tool_choice": "none", "max_output_tokens": 32, "temperature": 0}""");
        JsonElement alone = await _server.PostOkAsync("/v1/responses",
            $$"""{"input": "Weather in Paris?", "tools": [{{Tool}}], "tool_choice": "none", "max_output_tokens": 32, "temperature": 0}""");

        Assert.Equal(Answer, second.GetProperty("output")[0].GetProperty("content")[0].GetProperty("text").GetString());
        int[] grown = TestTokenizers.Qwen.Encode("<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n"
            + "<|im_start|>user\n<tool_response>\nsunny, 21 C\n</tool_response><|im_end|>\n");
        Assert.Equal(alone.GetProperty("usage").GetProperty("input_tokens").GetInt32() + grown.Length, second.GetProperty("usage").GetProperty("input_tokens").GetInt32());
        Assert.Equal(alone.GetProperty("usage").GetProperty("input_tokens").GetInt32() + grown.Length, stored.GetProperty("usage").GetProperty("input_tokens").GetInt32());
    }

    [Fact]
    public Task FunctionInvocation_ThroughTheResponsesClient_RunsTheCallAndAnswers() => ToolCallTests.AssertFunctionInvocationAsync(ResponsesApiTests.Client(_server));
}
