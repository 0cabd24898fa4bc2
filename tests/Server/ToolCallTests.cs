using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;
using OpenAI.Chat;
using QwenSharp.Tests.Support;
using AIChatMessage = Microsoft.Extensions.AI.ChatMessage;

namespace QwenSharp.Tests.Server;

/// <summary>
/// Tool calls through real clients, with a model whose answer is known (<see cref="ScriptedModel"/>: it
/// always answers <c>{"city": "Paris"}}</c>). Forced to call get_weather, the answer completes Qwen's
/// <c>&lt;tool_call&gt;</c> block, which must come back as OpenAI tool_calls (whole and streamed), and the call
/// and its result must go back in as the next turn's messages.
/// </summary>
public sealed class ToolCallTests : IAsyncLifetime
{
    private const string Answer = "{\"city\": \"Paris\"}}";
    private static readonly Lazy<string> s_model = new(() => ScriptedModel.Write(Answer));
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(s_model.Value, new QwenSharp.Server.ServerOptions { Context = 1024 });

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private static ChatTool Weather() => ChatTool.CreateFunctionTool("get_weather", "Current weather in a city",
        BinaryData.FromString("""{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}"""));

    private static ChatCompletionOptions Forced()
    {
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 32, ToolChoice = ChatToolChoice.CreateFunctionChoice("get_weather") };
        options.Tools.Add(Weather());
        return options;
    }

    [Fact]
    public async Task TheScriptedModelAnswersItsScript()
    {
        ChatCompletion completion = await _server.Chat().CompleteChatAsync([new UserChatMessage("Hi")], new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 32 });

        Assert.Equal(Answer, completion.Content[0].Text);
        Assert.Equal(OpenAI.Chat.ChatFinishReason.Stop, completion.FinishReason);
    }

    [Fact]
    public async Task AForcedCallComesBackAsToolCalls()
    {
        ChatCompletion completion = await _server.Chat().CompleteChatAsync([new UserChatMessage("Weather in Paris?")], Forced());

        Assert.Equal(OpenAI.Chat.ChatFinishReason.ToolCalls, completion.FinishReason);
        ChatToolCall call = Assert.Single(completion.ToolCalls);
        Assert.Equal("get_weather", call.FunctionName);
        Assert.Equal("Paris", JsonDocument.Parse(call.FunctionArguments.ToString()).RootElement.GetProperty("city").GetString());
        Assert.StartsWith("call_", call.Id, StringComparison.Ordinal);
        Assert.Empty(completion.Content);
    }

    [Fact]
    public async Task AStreamedCallComesBackAsToolCallDeltasAndNoContent()
    {
        var content = new StringBuilder();
        var arguments = new StringBuilder();
        string? name = null;
        OpenAI.Chat.ChatFinishReason? finish = null;
        await foreach (StreamingChatCompletionUpdate update in _server.Chat().CompleteChatStreamingAsync([new UserChatMessage("Weather in Paris?")], Forced()))
        {
            foreach (ChatMessageContentPart part in update.ContentUpdate)
            {
                content.Append(part.Text);
            }

            foreach (StreamingChatToolCallUpdate call in update.ToolCallUpdates)
            {
                name ??= call.FunctionName;
                arguments.Append(call.FunctionArgumentsUpdate?.ToString());
            }

            finish = update.FinishReason ?? finish;
        }

        Assert.Equal("", content.ToString());
        Assert.Equal("get_weather", name);
        Assert.Equal("Paris", JsonDocument.Parse(arguments.ToString()).RootElement.GetProperty("city").GetString());
        Assert.Equal(OpenAI.Chat.ChatFinishReason.ToolCalls, finish);
    }

    [Fact]
    public async Task TheCallAndItsResultGoBackAsTheNextTurn()
    {
        ChatCompletion first = await _server.Chat().CompleteChatAsync([new UserChatMessage("Weather in Paris?")], Forced());
        ChatToolCall call = Assert.Single(first.ToolCalls);

        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 32, ToolChoice = ChatToolChoice.CreateNoneChoice() };
        options.Tools.Add(Weather());
        ChatCompletion second = await _server.Chat().CompleteChatAsync(
            [new UserChatMessage("Weather in Paris?"), new AssistantChatMessage([call]), new ToolChatMessage(call.Id, "sunny, 21 C")], options);

        ChatCompletion alone = await _server.Chat().CompleteChatAsync([new UserChatMessage("Weather in Paris?")], options);

        // tool_choice none: the answer is plain text, and the prompt grew by the call and its result.
        Assert.Equal(Answer, second.Content[0].Text);
        Assert.Empty(second.ToolCalls);
        Assert.Equal(OpenAI.Chat.ChatFinishReason.Stop, second.FinishReason);
        int[] grown = TestTokenizers.Qwen.Encode("<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n"
            + "<|im_start|>user\n<tool_response>\nsunny, 21 C\n</tool_response><|im_end|>\n");
        Assert.Equal(alone.Usage.InputTokenCount + grown.Length, second.Usage.InputTokenCount);
    }

    [Fact]
    public Task FunctionInvokingChatClientRunsTheCallAndAnswers() => AssertFunctionInvocationAsync(_server.Chat().AsIChatClient());

    /// <summary>
    /// Microsoft.Extensions.AI's function invocation over <paramref name="inner"/>: get_weather forced, run once, its result
    /// in the conversation. <paramref name="maxTokens"/> leaves room for the call's name where a client forces any call
    /// rather than this one (Anthropic's adapter sends tool_choice any).
    /// </summary>
    internal static async Task AssertFunctionInvocationAsync(IChatClient inner, int maxTokens = 32)
    {
        int calls = 0;
        IChatClient client = new ChatClientBuilder(inner).UseFunctionInvocation().Build();
        var options = new ChatOptions
        {
            Temperature = 0,
            MaxOutputTokens = maxTokens,
            Tools = [AIFunctionFactory.Create((string city) => { calls++; return $"sunny in {city}"; }, "get_weather", "Current weather in a city")],
            ToolMode = ChatToolMode.RequireSpecific("get_weather"),
        };

        ChatResponse response = await client.GetResponseAsync([new AIChatMessage(ChatRole.User, "Weather in Paris?")], options);

        Assert.Equal(1, calls);
        Assert.Contains(response.Messages, m => m.Contents.OfType<FunctionResultContent>().Any(r => r.Result?.ToString() == "sunny in Paris"));
    }
}
