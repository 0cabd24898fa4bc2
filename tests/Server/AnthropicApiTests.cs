using System.Net;
using System.Text;
using System.Text.Json;
using Anthropic;
using Microsoft.Extensions.AI;
using QwenSharp.Tests.Support;
using AIChatMessage = Microsoft.Extensions.AI.ChatMessage;

namespace QwenSharp.Tests.Server;

/// <summary>
/// <c>/v1/messages</c>, Anthropic's Messages API, through Anthropic's official .NET package (its IChatClient) and as raw
/// JSON and events: tiny-qwen2's greedy continuation of its reference chat (transformers' ids) whole and streamed, a
/// stop sequence named back, the prompt's tokens counted as transformers counted them; and bad requests answered in
/// Anthropic's error shape. Tool use is in <see cref="AnthropicToolUseTests"/>.
/// </summary>
public sealed class AnthropicApiTests : IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync();

    public async Task DisposeAsync() => await _server.DisposeAsync();

    internal static IChatClient Client(TestServer server, string apiKey = "unused") =>
        new AnthropicClient { BaseUrl = server.Server.Address.ToString().TrimEnd('/'), ApiKey = apiKey, MaxRetries = 0 }.AsIChatClient("tiny", 64);

    private static string ReferenceRequest(int maxTokens, string extra = "")
    {
        (string system, string user) = OpenAiClientTests.ReferenceConversation();
        return JsonSerializer.Serialize(new { model = "tiny", system, messages = new[] { new { role = "user", content = user } }, temperature = 0, max_tokens = maxTokens })[..^1] + extra + "}";
    }

    [Fact]
    public async Task AnthropicsPackage_GetsTheReferenceContinuation_WholeAndStreamed()
    {
        IChatClient client = Client(_server);
        (string system, string user) = OpenAiClientTests.ReferenceConversation();
        List<AIChatMessage> messages = [new(ChatRole.System, system), new(ChatRole.User, user)];
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 24 };

        ChatResponse response = await client.GetResponseAsync(messages, options);

        Assert.Equal(OpenAiClientTests.ReferenceAnswer(24), response.Text);
        Assert.Equal(Microsoft.Extensions.AI.ChatFinishReason.Length, response.FinishReason);
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
    public async Task AMessage_IsAnthropicsShape_AndAStopSequenceIsNamedBack()
    {
        JsonElement body = await _server.PostOkAsync("/v1/messages", ReferenceRequest(6));

        Assert.Equal("message", body.GetProperty("type").GetString());
        Assert.Equal("assistant", body.GetProperty("role").GetString());
        Assert.StartsWith("msg_", body.GetProperty("id").GetString(), StringComparison.Ordinal);
        JsonElement text = Assert.Single(body.GetProperty("content").EnumerateArray());
        Assert.Equal("text", text.GetProperty("type").GetString());
        Assert.Equal(OpenAiClientTests.ReferenceAnswer(6), text.GetProperty("text").GetString());
        Assert.Equal("max_tokens", body.GetProperty("stop_reason").GetString());
        Assert.Equal(JsonValueKind.Null, body.GetProperty("stop_sequence").ValueKind);
        Assert.Equal(Reference.Load("tiny-qwen2").PromptIds.Length, body.GetProperty("usage").GetProperty("input_tokens").GetInt32());
        Assert.Equal(6, body.GetProperty("usage").GetProperty("output_tokens").GetInt32());

        string answer = OpenAiClientTests.ReferenceAnswer(24);
        string stop = answer.Trim()[4..9];
        JsonElement stopped = await _server.PostOkAsync("/v1/messages", ReferenceRequest(24, $", \"stop_sequences\": [{JsonSerializer.Serialize(stop)}]"));
        Assert.Equal("stop_sequence", stopped.GetProperty("stop_reason").GetString());
        Assert.Equal(stop, stopped.GetProperty("stop_sequence").GetString());
        Assert.Equal(answer[..answer.IndexOf(stop, StringComparison.Ordinal)], stopped.GetProperty("content")[0].GetProperty("text").GetString());
    }

    [Fact]
    public async Task AStream_IsAnthropicsEventsInOrder()
    {
        List<(string Event, JsonElement Data)> events = await TypedEvents.PostAsync(_server, "/v1/messages", ReferenceRequest(6, ", \"stream\": true"));

        string[] types = [.. events.Select(e => e.Event)];
        Assert.Equal(["message_start", "content_block_start"], types[..2]);
        Assert.Equal(["content_block_stop", "message_delta", "message_stop"], types[^3..]);
        Assert.All(types[2..^3], t => Assert.Equal("content_block_delta", t));
        Assert.All(events, e => Assert.Equal(e.Event, e.Data.GetProperty("type").GetString()));
        Assert.Equal(Reference.Load("tiny-qwen2").PromptIds.Length, events[0].Data.GetProperty("message").GetProperty("usage").GetProperty("input_tokens").GetInt32());
        Assert.Equal("text", events[1].Data.GetProperty("content_block").GetProperty("type").GetString());
        string text = string.Concat(events.Where(e => e.Event == "content_block_delta").Select(e => e.Data.GetProperty("delta").GetProperty("text").GetString()));
        Assert.Equal(OpenAiClientTests.ReferenceAnswer(6), text);
        Assert.Equal("max_tokens", events[^2].Data.GetProperty("delta").GetProperty("stop_reason").GetString());
        Assert.Equal(6, events[^2].Data.GetProperty("usage").GetProperty("output_tokens").GetInt32());
    }

    [Fact]
    public async Task CountTokens_IsThePromptTransformersRendered()
    {
        (string system, string user) = OpenAiClientTests.ReferenceConversation();
        JsonElement counted = await _server.PostOkAsync("/v1/messages/count_tokens",
            JsonSerializer.Serialize(new { model = "tiny", system, messages = new[] { new { role = "user", content = new[] { new { type = "text", text = user } } } } }));

        Assert.Equal(Reference.Load("tiny-qwen2").PromptIds.Length, counted.GetProperty("input_tokens").GetInt32());
    }

    [Fact]
    public async Task BadRequests_AreAnthropicErrorsNamingTheField()
    {
        foreach ((string json, string message) in ((string, string)[])[
            ("""{"messages": [{"role": "user", "content": "Hi"}]}""", "'max_tokens' is required"),
            ("""{"max_tokens": 4, "messages": []}""", "'messages' must be a non-empty list of turns"),
            ("""{"max_tokens": 4, "messages": [{"role": "system", "content": "Hi"}]}""", "'messages[0].role' is 'system'"),
            ("""{"max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}], "thinking": {"type": "enabled", "budget_tokens": 1024}}""", "'thinking.type' is 'enabled'"),
            ("""{"max_tokens": 4, "messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}""", "'messages[0].content[0]' is a document block"),
            ("""{"max_tokens": 4, "messages": [{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}]}""", "a user's blocks are text, image and tool_result"),
            ("""{"max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}], "tools": [{"type": "web_search_20250305", "name": "web_search"}]}""", "this server runs no tools of its own"),
            ("""{"max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}], "tool_choice": {"type": "maybe"}}""", "'tool_choice.type' is 'maybe'"),
            ("""{"max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}], "n": 2}""", "unknown field 'n'")])
        {
            (HttpStatusCode status, JsonDocument body) = await _server.PostAsync("/v1/messages", json);
            using (body)
            {
                Assert.Equal(HttpStatusCode.BadRequest, status);
                Assert.Equal("error", body.RootElement.GetProperty("type").GetString());
                Assert.Equal("invalid_request_error", body.RootElement.GetProperty("error").GetProperty("type").GetString());
                Assert.Contains(message, body.RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
            }
        }
    }

    [Fact]
    public async Task AnApiKey_ComesAsXApiKey_FromAnthropicsClients()
    {
        await using TestServer server = await TestServer.StartAsync(new QwenSharp.Server.ServerOptions { ApiKey = "secret" });

        ChatResponse response = await Client(server, "secret").GetResponseAsync([new AIChatMessage(ChatRole.User, "Hi")], new ChatOptions { MaxOutputTokens = 2 });
        Assert.Equal(2, response.Usage!.OutputTokenCount);

        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/messages") { Content = new StringContent("""{"max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]}""", Encoding.UTF8, "application/json") };
        request.Headers.Add("x-api-key", "wrong");
        using HttpResponseMessage refused = await server.Http.SendAsync(request);
        Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        using JsonDocument error = JsonDocument.Parse(await refused.Content.ReadAsStringAsync());
        Assert.Equal("authentication_error", error.RootElement.GetProperty("error").GetProperty("type").GetString());
    }
}
