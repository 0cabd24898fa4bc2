// The OpenAI package marks its Responses client as for evaluation (OPENAI001): the client is what is under test here.
#pragma warning disable OPENAI001
using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;
using OpenAI.Responses;
using QwenSharp.Tests.Support;
using AIChatMessage = Microsoft.Extensions.AI.ChatMessage;

namespace QwenSharp.Tests.Server;

/// <summary>
/// <c>/v1/responses</c>, OpenAI's Responses API, through the official OpenAI .NET package's ResponsesClient under
/// Microsoft.Extensions.AI's IChatClient, and as raw JSON and events: tiny-qwen2's greedy continuation of its reference
/// chat (transformers' ids) whole and streamed, in the Responses shapes and order; tool calls as function_call items
/// (a scripted model's), streamed as argument deltas and sent back as input items; and bad requests answered 400
/// naming the Responses field.
/// </summary>
public sealed class ResponsesApiTests : IAsyncLifetime
{
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync();

    public async Task DisposeAsync() => await _server.DisposeAsync();

    internal static IChatClient Client(TestServer server) =>
        new ResponsesClient(new ApiKeyCredential("unused"), new ResponsesClientOptions { Endpoint = new Uri(server.Server.Address, "v1"), NetworkTimeout = TimeSpan.FromMinutes(2) })
            .AsIChatClient("tiny");

    private static List<AIChatMessage> ReferenceMessages()
    {
        (string system, string user) = OpenAiClientTests.ReferenceConversation();
        return [new AIChatMessage(ChatRole.System, system), new AIChatMessage(ChatRole.User, user)];
    }

    private static string ReferenceRequest(int maxTokens, string extra = "")
    {
        (string system, string user) = OpenAiClientTests.ReferenceConversation();
        return JsonSerializer.Serialize(new { model = "tiny", instructions = system, input = user, temperature = 0, max_output_tokens = maxTokens })[..^1] + extra + "}";
    }

    [Fact]
    public async Task TheOpenAIPackage_GetsTheReferenceContinuation_WholeAndStreamed()
    {
        IChatClient client = Client(_server);
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 24 };

        ChatResponse response = await client.GetResponseAsync(ReferenceMessages(), options);

        Assert.Equal(OpenAiClientTests.ReferenceAnswer(24), response.Text);
        Assert.Equal(Microsoft.Extensions.AI.ChatFinishReason.Length, response.FinishReason);
        Assert.Equal(24, response.Usage!.OutputTokenCount);
        Assert.Equal(Reference.Load("tiny-qwen2").PromptIds.Length, response.Usage.InputTokenCount);
        Assert.StartsWith("resp_", response.ResponseId, StringComparison.Ordinal);

        var streamed = new StringBuilder();
        await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync(ReferenceMessages(), options))
        {
            streamed.Append(update.Text);
        }

        Assert.Equal(OpenAiClientTests.ReferenceAnswer(24), streamed.ToString());
    }

    [Fact]
    public async Task AResponse_IsTheResponsesObject_WithTheRequestsSettingsRepeated()
    {
        JsonElement body = await _server.PostOkAsync("/v1/responses", ReferenceRequest(4, ", \"metadata\": {\"run\": \"7\"}"));

        Assert.Equal("response", body.GetProperty("object").GetString());
        Assert.Equal("incomplete", body.GetProperty("status").GetString());
        Assert.Equal("max_output_tokens", body.GetProperty("incomplete_details").GetProperty("reason").GetString());
        JsonElement message = Assert.Single(body.GetProperty("output").EnumerateArray());
        Assert.Equal("message", message.GetProperty("type").GetString());
        Assert.Equal("assistant", message.GetProperty("role").GetString());
        JsonElement part = Assert.Single(message.GetProperty("content").EnumerateArray());
        Assert.Equal("output_text", part.GetProperty("type").GetString());
        Assert.Equal(OpenAiClientTests.ReferenceAnswer(4), part.GetProperty("text").GetString());
        Assert.Equal(4, body.GetProperty("usage").GetProperty("output_tokens").GetInt32());
        Assert.Equal(4 + body.GetProperty("usage").GetProperty("input_tokens").GetInt32(), body.GetProperty("usage").GetProperty("total_tokens").GetInt32());
        Assert.Equal(OpenAiClientTests.ReferenceConversation().System, body.GetProperty("instructions").GetString());
        Assert.Equal(4, body.GetProperty("max_output_tokens").GetInt32());
        Assert.Equal("7", body.GetProperty("metadata").GetProperty("run").GetString());
        Assert.Equal("auto", body.GetProperty("tool_choice").GetString());
        Assert.True(body.GetProperty("store").GetBoolean());
        Assert.Equal(JsonValueKind.Null, body.GetProperty("previous_response_id").ValueKind);

        // The same conversation as input items, the system's as a developer message: the same answer.
        (string system, string user) = OpenAiClientTests.ReferenceConversation();
        string items = JsonSerializer.Serialize(new object[]
        {
            new { role = "developer", content = system },
            new { type = "message", role = "user", content = new[] { new { type = "input_text", text = user } } },
        });
        JsonElement again = await _server.PostOkAsync("/responses", $$"""{"input": {{items}}, "temperature": 0, "max_output_tokens": 4}""");
        Assert.Equal(OpenAiClientTests.ReferenceAnswer(4), again.GetProperty("output")[0].GetProperty("content")[0].GetProperty("text").GetString());
    }

    [Fact]
    public async Task AStream_IsTheResponsesEventsInOrder()
    {
        List<(string Event, JsonElement Data)> events = await TypedEvents.PostAsync(_server, "/v1/responses", ReferenceRequest(4, ", \"stream\": true"));

        string[] types = [.. events.Select(e => e.Event)];
        Assert.Equal(["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"], types[..4]);
        Assert.Equal(["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.incomplete"], types[^4..]);
        Assert.All(types[4..^4], t => Assert.Equal("response.output_text.delta", t));
        Assert.Equal(Enumerable.Range(0, events.Count), events.Select(e => e.Data.GetProperty("sequence_number").GetInt32()));
        Assert.All(events, e => Assert.Equal(e.Event, e.Data.GetProperty("type").GetString()));

        string deltas = string.Concat(events.Where(e => e.Event == "response.output_text.delta").Select(e => e.Data.GetProperty("delta").GetString()));
        Assert.Equal(OpenAiClientTests.ReferenceAnswer(4), deltas);
        Assert.Equal(deltas, events[^4].Data.GetProperty("text").GetString());
        JsonElement final = events[^1].Data.GetProperty("response");
        Assert.Equal("incomplete", final.GetProperty("status").GetString());
        Assert.Equal(deltas, final.GetProperty("output")[0].GetProperty("content")[0].GetProperty("text").GetString());
        Assert.Equal(4, final.GetProperty("usage").GetProperty("output_tokens").GetInt32());
        Assert.Equal("in_progress", events[0].Data.GetProperty("response").GetProperty("status").GetString());
    }

    [Fact]
    public async Task Logprobs_AskedThroughInclude_CoverEachTokenOfTheText()
    {
        JsonElement body = await _server.PostOkAsync("/v1/responses",
            ReferenceRequest(6, $", \"include\": [\"message.output_text.logprobs\"], \"top_logprobs\": 2"));

        JsonElement part = body.GetProperty("output")[0].GetProperty("content")[0];
        JsonElement[] logprobs = [.. part.GetProperty("logprobs").EnumerateArray()];
        Assert.Equal(6, logprobs.Length);
        Assert.All(logprobs, l => Assert.Equal(2, l.GetProperty("top_logprobs").GetArrayLength()));
        Assert.All(logprobs, l => Assert.True(l.GetProperty("logprob").GetDouble() <= 0));
        byte[] bytes = [.. logprobs.SelectMany(l => l.GetProperty("bytes").EnumerateArray().Select(b => (byte)b.GetInt32()))];
        Assert.Equal(part.GetProperty("text").GetString(), Encoding.UTF8.GetString(bytes));
    }

    [Fact]
    public async Task BadRequests_Are400sNamingTheResponsesField()
    {
        foreach ((string json, string param, string message) in ((string, string, string)[])[
            ("""{"max_output_tokens": 4}""", "input", "'input' is required"),
            ("""{"input": []}""", "input", "not an empty list"),
            ("""{"input": "Hi", "previous_response_id": "resp_1"}""", "previous_response_id", "Previous response with id 'resp_1' not found."),
            ("""{"input": "Hi", "previous_response_id": 7}""", "previous_response_id", "must be a string"),
            ("""{"input": "Hi", "conversation": "conv_1"}""", "conversation", "this server has no Conversations API"),
            ("""{"input": "Hi", "background": true}""", "background", "it runs none in the background"),
            ("""{"input": "Hi", "truncation": "auto"}""", "truncation", "does not drop input items"),
            ("""{"input": "Hi", "reasoning": {"effort": "high"}}""", "reasoning.effort", "the model does not reason"),
            ("""{"input": [{"role": "critic", "content": "Hi"}]}""", "input[0].role", "'input[0].role' is 'critic'"),
            ("""{"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}""", "input[0].content[0].type", "is a file"),
            ("""{"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}""", "input[0].content[0].file_id", "keeps no files"),
            ("""{"input": [{"type": "item_reference", "id": "msg_1"}]}""", "input[0].id", "no stored response holds an item 'msg_1'"),
            ("""{"input": [{"type": "function_call", "call_id": "c", "arguments": "{}"}]}""", "input[0].name", "'input[0].name' is required"),
            ("""{"input": [{"role": "user", "content": "Hi", "colour": 1}]}""", "input[0].colour", "unknown field 'input[0].colour'"),
            ("""{"input": "Hi", "tools": [{"type": "web_search"}]}""", "tools[0].type", "this server runs no tools of its own"),
            ("""{"input": "Hi", "text": {"format": {"type": "json_schema", "name": "x"}}}""", "text.format.schema", "'text.format.schema' is required"),
            ("""{"input": "Hi", "include": ["file_search_call.results"]}""", "include", "can add only message.output_text.logprobs"),
            ("""{"input": "Hi", "top_logprobs": 3}""", "top_logprobs", "needs 'include'"),
            ("""{"input": "Hi", "n": 2}""", "n", "unknown field 'n'")])
        {
            await _server.AssertRefusedAsync("/v1/responses", json, param, message);
        }
    }

    [Fact]
    public async Task TextFormat_JsonSchema_HoldsTheAnswerToTheSchema()
    {
        const string Schema = """{"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"], "additionalProperties": false}""";
        JsonElement body = await _server.PostOkAsync("/v1/responses",
            $$$$"""{"input": "A number?", "max_output_tokens": 64, "text": {"format": {"type": "json_schema", "name": "answer", "schema": {{{{Schema}}}}, "strict": true}}}""");

        string text = body.GetProperty("output")[0].GetProperty("content")[0].GetProperty("text").GetString()!;
        using JsonDocument answer = JsonDocument.Parse(text);
        Assert.Equal(JsonValueKind.Number, answer.RootElement.GetProperty("n").ValueKind);
        Assert.Equal("json_schema", body.GetProperty("text").GetProperty("format").GetProperty("type").GetString());
    }
}
