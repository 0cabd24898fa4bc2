using System.Text.Json;
using Microsoft.Extensions.AI;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Engine;

/// <summary>
/// The chat client's tools: Microsoft.Extensions.AI messages with function calls and results, and tool
/// declarations, rendered as transformers renders the same conversation (qwen2.5-chat-cases.json); and the
/// model's &lt;tool_call&gt; blocks read back as function calls.
/// </summary>
public sealed class ChatToolsTests
{
    [Theory]
    [InlineData("tools, default system")]
    [InlineData("tools with system")]
    [InlineData("tool call and responses")]
    [InlineData("tool call with content, no function wrapper")]
    [InlineData("system and multi-turn")]
    public async Task RendersFunctionCallsResultsAndToolsAsTransformers(string name)
    {
        using JsonDocument cases = Fixtures.Json("tokenizer", "qwen2.5-chat-cases.json");
        JsonElement c = cases.RootElement.EnumerateArray().First(e => e.GetProperty("name").GetString() == name);
        List<ChatMessage> messages = [.. c.GetProperty("messages").EnumerateArray().Select(ToChatMessage)];
        var options = new ChatOptions();
        if (c.GetProperty("tools").ValueKind == JsonValueKind.Array)
        {
            options.Tools = [.. c.GetProperty("tools").EnumerateArray().Select(t => t.GetProperty("function")).Select(f =>
                (AITool)AIFunctionFactory.CreateDeclaration(f.GetProperty("name").GetString()!, f.GetProperty("description").GetString(), f.GetProperty("parameters").Clone()))];
        }

        using QwenModel model = await QwenModel.LoadAsync(TestTokenizers.TinyQwenWithTokenizer);
        var client = (QwenChatClient)model.AsChatClient();

        Assert.Equal(c.GetProperty("text").GetString(), client.Render(messages, options));
        ChatResponse response = await client.GetResponseAsync(messages, new ChatOptions { Tools = options.Tools, Temperature = 0, MaxOutputTokens = 1 });
        Assert.Equal(c.GetProperty("ids").GetArrayLength(), response.Usage!.InputTokenCount);
    }

    [Fact]
    public void ToolCallBlocksBecomeFunctionCalls()
    {
        const string answer = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}\n</tool_call>\n"
            + "<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call><tool_call>not json</tool_call>";

        List<FunctionCallContent> calls = ChatJson.ParseToolCalls(answer, "r");

        Assert.Equal(["get_weather", "now"], calls.Select(c => c.Name));
        Assert.Equal("Paris", ((JsonElement)calls[0].Arguments!["city"]!).GetString());
        Assert.Equal(2, ((JsonElement)calls[0].Arguments!["days"]!).GetInt32());
        Assert.Empty(calls[1].Arguments!);
        Assert.NotEqual(calls[0].CallId, calls[1].CallId);
    }

    /// <summary>A fixture message (transformers' JSON) as the Microsoft.Extensions.AI message an app would build.</summary>
    private static ChatMessage ToChatMessage(JsonElement message, int index)
    {
        string role = message.GetProperty("role").GetString()!;
        string content = message.TryGetProperty("content", out JsonElement text) && text.ValueKind == JsonValueKind.String ? text.GetString()! : "";
        if (role == "tool")
        {
            return new ChatMessage(ChatRole.Tool, [new FunctionResultContent($"call-{index}", content)]);
        }

        var contents = new List<AIContent>();
        if (content.Length > 0)
        {
            contents.Add(new TextContent(content));
        }

        if (message.TryGetProperty("tool_calls", out JsonElement toolCalls))
        {
            foreach (JsonElement call in toolCalls.EnumerateArray())
            {
                JsonElement function = call.TryGetProperty("function", out JsonElement wrapped) ? wrapped : call;
                var arguments = function.GetProperty("arguments").EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value.Clone());
                contents.Add(new FunctionCallContent($"call-{index}", function.GetProperty("name").GetString()!, arguments));
            }
        }

        return new ChatMessage(new ChatRole(role), contents);
    }

    private const string Time = """{"type": "object", "properties": {"zone": {"enum": ["UTC", "CET"]}, "offset": {"type": "integer", "minimum": -12, "maximum": 14}}, "required": ["zone", "offset"], "additionalProperties": false}""";
    private const string Weather = """{"type": "object", "properties": {"city": {"type": "string", "maxLength": 6}}, "required": ["city"]}""";

    /// <summary>A model that would answer "Hello&lt;tool_call&gt;" and stop: a call with nothing in it, unless held (<see cref="ScriptedModel"/>).</summary>
    private static readonly Lazy<string> s_opensACall = new(() => ScriptedModel.Write("Hello<tool_call>"));

    private static ChatOptions HeldOptions(ChatToolMode? mode) => new()
    {
        Temperature = 0,
        // The scripted model, held, ties every allowed token, and greedy takes the lowest id: mostly one character each.
        MaxOutputTokens = 200,
        AllowMultipleToolCalls = false,
        ToolMode = mode,
        Tools =
        [
            AIFunctionFactory.CreateDeclaration("get_time", "The time in a zone", JsonDocument.Parse(Time).RootElement.Clone()),
            AIFunctionFactory.CreateDeclaration("get_weather", "The weather in a city", JsonDocument.Parse(Weather).RootElement.Clone()),
        ],
    };

    public static TheoryData<string> HeldModes => ["auto", "any", "get_time", "get_weather"];

    [Theory]
    [MemberData(nameof(HeldModes))]
    public async Task CallsAreHeldToTheTools(string mode)
    {
        using QwenModel model = await QwenModel.LoadAsync(s_opensACall.Value);
        ChatToolMode? toolMode = mode switch { "auto" => null, "any" => ChatToolMode.RequireAny, _ => ChatToolMode.RequireSpecific(mode) };

        ChatResponse response = await model.AsChatClient().GetResponseAsync([new ChatMessage(ChatRole.User, "Time?")], HeldOptions(toolMode));

        FunctionCallContent[] calls = [.. response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>()];
        Assert.True(calls.Length == 1, $"{calls.Length} calls in '{response.Text}'");
        FunctionCallContent call = calls[0];
        Assert.Equal(ChatFinishReason.ToolCalls, response.FinishReason);
        if (mode is "get_time" or "get_weather")
        {
            Assert.Equal(mode, call.Name);
        }

        string arguments = JsonSerializer.Serialize(call.Arguments);
        string schema = call.Name == "get_time" ? Time : Weather;
        Assert.True(Json.Schema.JsonSchema.FromText(schema).Evaluate(JsonDocument.Parse(arguments).RootElement).IsValid, $"{call.Name}({arguments})");
        // The call is not text as well (FunctionInvokingChatClient sends the message back whole).
        Assert.Equal(mode == "auto" ? "Hello" : "", response.Text);
    }

    [Fact]
    public async Task ToolModeNoneLeavesTheToolsOutAndTheAnswerFree()
    {
        using QwenModel model = await QwenModel.LoadAsync(s_opensACall.Value);
        var client = (QwenChatClient)model.AsChatClient();
        ChatMessage[] messages = [new(ChatRole.User, "Time?")];

        Assert.Contains("<tools>", client.Render(messages, HeldOptions(null)), StringComparison.Ordinal);
        Assert.DoesNotContain("<tools>", client.Render(messages, HeldOptions(ChatToolMode.None)), StringComparison.Ordinal);
        ChatResponse free = await client.GetResponseAsync(messages, HeldOptions(ChatToolMode.None));
        Assert.Equal("Hello<tool_call>", free.Text);
        Assert.Empty(free.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>());
    }

    [Fact]
    public async Task RequiringAFunctionNotOfferedIsRefusedByName()
    {
        using QwenModel model = await QwenModel.LoadAsync(s_opensACall.Value);

        ArgumentException e = await Assert.ThrowsAsync<ArgumentException>(() =>
            model.AsChatClient().GetResponseAsync([new ChatMessage(ChatRole.User, "Time?")], HeldOptions(ChatToolMode.RequireSpecific("get_date"))));

        Assert.Contains("'get_date', which is not one of ChatOptions.Tools (get_time, get_weather)", e.Message, StringComparison.Ordinal);
    }
}
