using System.Text.Json;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Server;

/// <summary>
/// Tool use through Anthropic's Messages API with a model whose answer is known (<see cref="ScriptedModel"/>): a forced
/// call is a tool_use block (its arguments the input object; stop_reason tool_use), streamed as input_json_delta; it goes
/// back in as tool_use and tool_result blocks (the prompt growing by Qwen's call and response blocks, as chat completions'
/// does); and Microsoft.Extensions.AI's function invocation runs it through Anthropic's client.
/// </summary>
public sealed class AnthropicToolUseTests : IAsyncLifetime
{
    private const string Answer = "{\"city\": \"Paris\"}}";
    private const string Tool = """{"name": "get_weather", "description": "Current weather in a city", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}""";
    private static readonly Lazy<string> s_model = new(() => ScriptedModel.Write(Answer));
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(s_model.Value, new QwenSharp.Server.ServerOptions { Context = 1024 });

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private static string Forced(string extra = "") =>
        $$"""{"messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": [{{Tool}}], "tool_choice": {"type": "tool", "name": "get_weather"}, "max_tokens": 32, "temperature": 0{{extra}}}""";

    [Fact]
    public async Task AForcedCall_IsAToolUseBlock_WholeAndStreamed()
    {
        JsonElement body = await _server.PostOkAsync("/v1/messages", Forced());

        JsonElement call = Assert.Single(body.GetProperty("content").EnumerateArray());
        Assert.Equal("tool_use", call.GetProperty("type").GetString());
        Assert.Equal("get_weather", call.GetProperty("name").GetString());
        Assert.StartsWith("toolu_", call.GetProperty("id").GetString(), StringComparison.Ordinal);
        Assert.Equal("Paris", call.GetProperty("input").GetProperty("city").GetString());
        Assert.Equal("tool_use", body.GetProperty("stop_reason").GetString());

        List<(string Event, JsonElement Data)> events = await TypedEvents.PostAsync(_server, "/v1/messages", Forced(", \"stream\": true"));
        string[] types = [.. events.Select(e => e.Event)];
        Assert.Equal(["message_start", "content_block_start"], types[..2]);
        Assert.Equal(["content_block_stop", "message_delta", "message_stop"], types[^3..]);
        Assert.Equal("tool_use", events[1].Data.GetProperty("content_block").GetProperty("type").GetString());
        string json = string.Concat(events.Where(e => e.Event == "content_block_delta").Select(e => e.Data.GetProperty("delta").GetProperty("partial_json").GetString()));
        Assert.Equal("Paris", JsonDocument.Parse(json).RootElement.GetProperty("city").GetString());
        Assert.Equal("tool_use", events[^2].Data.GetProperty("delta").GetProperty("stop_reason").GetString());
    }

    [Fact]
    public async Task TheCallAndItsResult_GoBackAsToolUseAndToolResultBlocks()
    {
        JsonElement first = await _server.PostOkAsync("/v1/messages", Forced());
        JsonElement call = first.GetProperty("content")[0];
        string result = JsonSerializer.Serialize(new { type = "tool_result", tool_use_id = call.GetProperty("id").GetString(), content = "sunny, 21 C" });

        JsonElement second = await _server.PostOkAsync("/v1/messages",
            $$"""{"messages": [{"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "content": [{{call.GetRawText()}}]}, {"role": "user", "content": [{{result}}]}], "tools": [{{Tool}}], "tool_choice": {"type": "none"}, "max_tokens": 32, "temperature": 0}""");
        JsonElement alone = await _server.PostOkAsync("/v1/messages",
            $$"""{"messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": [{{Tool}}], "tool_choice": {"type": "none"}, "max_tokens": 32, "temperature": 0}""");

        Assert.Equal(Answer, second.GetProperty("content")[0].GetProperty("text").GetString());
        Assert.Equal("end_turn", second.GetProperty("stop_reason").GetString());
        int[] grown = TestTokenizers.Qwen.Encode("<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n"
            + "<|im_start|>user\n<tool_response>\nsunny, 21 C\n</tool_response><|im_end|>\n");
        Assert.Equal(alone.GetProperty("usage").GetProperty("input_tokens").GetInt32() + grown.Length, second.GetProperty("usage").GetProperty("input_tokens").GetInt32());
    }

    [Fact]
    public Task FunctionInvocation_ThroughAnthropicsClient_RunsTheCallAndAnswers() =>
        ToolCallTests.AssertFunctionInvocationAsync(AnthropicApiTests.Client(_server), maxTokens: 128);
}
