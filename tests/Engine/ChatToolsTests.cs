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
}
