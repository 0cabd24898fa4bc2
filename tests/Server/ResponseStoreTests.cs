// The OpenAI package marks its Responses client as for evaluation (OPENAI001): the client is what is under test here.
#pragma warning disable OPENAI001
using System.Net;
using System.Text.Json;
using Microsoft.Extensions.AI;
using QwenSharp.Server.Api;
using QwenSharp.Tests.Support;
using AIChatMessage = Microsoft.Extensions.AI.ChatMessage;

namespace QwenSharp.Tests.Server;

/// <summary>
/// The Responses API's stored responses, with a model whose answer is known (<see cref="ScriptedModel"/>): a request
/// that goes on from one by <c>previous_response_id</c> reads its conversation before its own input (the prompt grows
/// by exactly the answer's and the new message's tokens, written out and counted by the tokenizer (itself checked against Hugging Face's); its instructions are
/// not carried); <c>GET</c> gives the object back as answered, whole or streamed; <c>input_items</c> pages through the
/// request's items; <c>item_reference</c>s stand for the stored items they name; <c>DELETE</c> forgets it;
/// <c>store: false</c> keeps nothing; Microsoft.Extensions.AI goes on by its ConversationId; and the store's bounds
/// evict the oldest.
/// </summary>
public sealed class ResponseStoreTests : IAsyncLifetime
{
    private const string Answer = "{\"city\": \"Paris\"}}";
    private static readonly Lazy<string> s_model = new(() => ScriptedModel.Write(Answer));
    private TestServer _server = null!;

    public async Task InitializeAsync() => _server = await TestServer.StartAsync(s_model.Value, new QwenSharp.Server.ServerOptions { Context = 1024 });

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private static string Request(string fields) => $$"""{{{fields}}, "max_output_tokens": 32, "temperature": 0}""";

    /// <summary>Tokens a conversation grows by with the scripted answer and then the user's <paramref name="next"/> (the tokenizer's count of the text written out).</summary>
    private static int Grown(string next) =>
        TestTokenizers.Qwen.Encode($"<|im_start|>assistant\n{Answer}<|im_end|>\n<|im_start|>user\n{next}<|im_end|>\n").Length;

    private static int InputTokens(JsonElement response) => response.GetProperty("usage").GetProperty("input_tokens").GetInt32();

    [Fact]
    public async Task AFollowUp_ReadsTheStoredConversationFirst_WithoutItsInstructions()
    {
        JsonElement alone = await _server.PostOkAsync("/v1/responses", Request("\"input\": \"Weather in Paris?\""));
        JsonElement first = await _server.PostOkAsync("/v1/responses", Request("\"input\": \"Weather in Paris?\", \"instructions\": \"Answer in JSON.\""));
        string id = first.GetProperty("id").GetString()!;

        JsonElement second = await _server.PostOkAsync("/v1/responses", Request($"\"input\": \"And in Rome?\", \"previous_response_id\": \"{id}\""));
        JsonElement third = await _server.PostOkAsync("/v1/responses",
            Request($"\"input\": [{{\"role\": \"user\", \"content\": \"And in Oslo?\"}}], \"previous_response_id\": \"{second.GetProperty("id").GetString()}\""));

        Assert.Equal(Answer, second.GetProperty("output")[0].GetProperty("content")[0].GetProperty("text").GetString());
        Assert.Equal(InputTokens(alone) + Grown("And in Rome?"), InputTokens(second));
        Assert.Equal(InputTokens(second) + Grown("And in Oslo?"), InputTokens(third));
        Assert.Equal(id, second.GetProperty("previous_response_id").GetString());
        Assert.True(second.GetProperty("store").GetBoolean());
    }

    [Fact]
    public async Task ItemReferences_StandForTheStoredItemsTheyName()
    {
        JsonElement alone = await _server.PostOkAsync("/v1/responses", Request("\"input\": \"Weather in Paris?\""));
        JsonElement first = await _server.PostOkAsync("/v1/responses", Request("\"input\": [{\"id\": \"msg_question\", \"role\": \"user\", \"content\": \"Weather in Paris?\"}]"));
        string answerId = first.GetProperty("output")[0].GetProperty("id").GetString()!;

        JsonElement referenced = await _server.PostOkAsync("/v1/responses", Request(
            $"\"input\": [{{\"type\": \"item_reference\", \"id\": \"msg_question\"}}, {{\"type\": \"item_reference\", \"id\": \"{answerId}\"}}, {{\"role\": \"user\", \"content\": \"And in Rome?\"}}], \"store\": false"));

        Assert.Equal(InputTokens(alone) + Grown("And in Rome?"), InputTokens(referenced));
    }

    [Fact]
    public async Task AStoredResponse_IsReadBackAsAnswered_ListedAndDeleted()
    {
        string items = """[{"role": "developer", "content": "Answer in JSON."}, {"id": "msg_mine", "role": "user", "content": "Weather in Paris?"}, {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Quickly."}]}]""";
        JsonElement posted = await _server.PostOkAsync("/v1/responses", Request($"\"input\": {items}"));
        string id = posted.GetProperty("id").GetString()!;

        JsonElement got = await GetOkAsync($"/v1/responses/{id}");
        Assert.Equal(posted.GetRawText(), got.GetRawText());

        JsonElement newest = await GetOkAsync($"/v1/responses/{id}/input_items");
        Assert.Equal("list", newest.GetProperty("object").GetString());
        JsonElement[] listed = [.. newest.GetProperty("data").EnumerateArray()];
        Assert.Equal(["Quickly.", "Weather in Paris?", "Answer in JSON."], listed.Select(i => i.GetProperty("content")[0].GetProperty("text").GetString()));
        Assert.All(listed, i => Assert.Equal("input_text", i.GetProperty("content")[0].GetProperty("type").GetString()));
        Assert.All(listed, i => Assert.Equal("message", i.GetProperty("type").GetString()));
        Assert.Equal("msg_mine", listed[1].GetProperty("id").GetString());
        Assert.All(listed, i => Assert.StartsWith("msg_", i.GetProperty("id").GetString(), StringComparison.Ordinal));
        Assert.Equal(3, listed.Select(i => i.GetProperty("id").GetString()).Distinct().Count());
        Assert.False(newest.GetProperty("has_more").GetBoolean());

        JsonElement page = await GetOkAsync($"/v1/responses/{id}/input_items?order=asc&limit=2");
        Assert.Equal(["developer", "user"], page.GetProperty("data").EnumerateArray().Select(i => i.GetProperty("role").GetString()));
        Assert.True(page.GetProperty("has_more").GetBoolean());
        Assert.Equal("msg_mine", page.GetProperty("last_id").GetString());
        JsonElement rest = await GetOkAsync($"/v1/responses/{id}/input_items?order=asc&limit=2&after=msg_mine");
        Assert.Equal("Quickly.", Assert.Single(rest.GetProperty("data").EnumerateArray()).GetProperty("content")[0].GetProperty("text").GetString());
        Assert.False(rest.GetProperty("has_more").GetBoolean());

        using (HttpResponseMessage deleted = await _server.Http.DeleteAsync($"/v1/responses/{id}"))
        {
            using JsonDocument body = JsonDocument.Parse(await deleted.Content.ReadAsStringAsync());
            Assert.Equal(HttpStatusCode.OK, deleted.StatusCode);
            Assert.Equal(id, body.RootElement.GetProperty("id").GetString());
            Assert.True(body.RootElement.GetProperty("deleted").GetBoolean());
        }

        await AssertNotFoundAsync(HttpMethod.Get, $"/v1/responses/{id}", id);
        await AssertNotFoundAsync(HttpMethod.Delete, $"/responses/{id}", id);
        await _server.AssertRefusedAsync("/v1/responses", Request($"\"input\": \"Hi\", \"previous_response_id\": \"{id}\""), "previous_response_id",
            $"Previous response with id '{id}' not found.");
    }

    [Fact]
    public async Task AStreamedResponse_IsStoredAsItsLastEvent_AndStoreFalseKeepsNothing()
    {
        List<(string Event, JsonElement Data)> events = await TypedEvents.PostAsync(_server, "/v1/responses", Request("\"input\": \"Weather in Paris?\", \"stream\": true"));
        JsonElement completed = events[^1].Data.GetProperty("response");
        JsonElement got = await GetOkAsync($"/responses/{completed.GetProperty("id").GetString()}");
        Assert.Equal(completed.GetRawText(), got.GetRawText());
        Assert.Equal("completed", got.GetProperty("status").GetString());

        JsonElement unkept = await _server.PostOkAsync("/v1/responses", Request("\"input\": \"Weather in Paris?\", \"store\": false"));
        Assert.False(unkept.GetProperty("store").GetBoolean());
        string id = unkept.GetProperty("id").GetString()!;
        await AssertNotFoundAsync(HttpMethod.Get, $"/v1/responses/{id}", id);
    }

    [Fact]
    public async Task BadQueries_Are400sNamingTheParameter()
    {
        string id = (await _server.PostOkAsync("/v1/responses", Request("\"input\": \"Hi\""))).GetProperty("id").GetString()!;
        foreach ((string path, string param, string message) in ((string, string, string)[])[
            ($"/v1/responses/{id}?stream=true", "stream", "keeps a response's object, not its events"),
            ($"/v1/responses/{id}?colour=red", "colour", "query parameter 'colour' is not one of"),
            ($"/v1/responses/{id}/input_items?limit=0", "limit", "from 1 to 100"),
            ($"/v1/responses/{id}/input_items?order=up", "order", "it is asc or desc"),
            ($"/v1/responses/{id}/input_items?after=msg_none", "after", "not one of this response's input items")])
        {
            using HttpResponseMessage response = await _server.Http.GetAsync(path);
            using JsonDocument body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Equal(param, body.RootElement.GetProperty("error").GetProperty("param").GetString());
            Assert.Contains(message, body.RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        }

        await _server.AssertRefusedAsync($"/v1/responses/{id}/cancel", "{}", null!, "Only responses created with background=true can be cancelled");
    }

    [Fact]
    public async Task TheOpenAIPackage_GoesOnByItsConversationId()
    {
        IChatClient client = ResponsesApiTests.Client(_server);
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 32 };

        ChatResponse first = await client.GetResponseAsync([new AIChatMessage(ChatRole.User, "Weather in Paris?")], options);
        Assert.Equal(first.ResponseId, first.ConversationId);
        ChatResponse second = await client.GetResponseAsync([new AIChatMessage(ChatRole.User, "And in Rome?")], new ChatOptions
        {
            Temperature = 0,
            MaxOutputTokens = 32,
            ConversationId = first.ConversationId,
        });

        Assert.Equal(Answer, second.Text);
        Assert.Equal(first.Usage!.InputTokenCount + Grown("And in Rome?"), second.Usage!.InputTokenCount);
    }

    [Fact]
    public void TheStore_EvictsTheOldest_PastItsCountOrItsBytes()
    {
        var byCount = new ResponseStore(capacity: 2);
        foreach (string id in (string[])["resp_a", "resp_b", "resp_c"])
        {
            byCount.Add(Stored(id, 10));
        }

        Assert.Null(byCount.Find("resp_a"));
        Assert.NotNull(byCount.Find("resp_b"));
        Assert.NotNull(byCount.Find("resp_c"));

        // Each counts its object and its whole conversation: the first's 600-odd bytes and the second's pass 1000.
        var byBytes = new ResponseStore(capacity: 100, maxBytes: 1000);
        StoredResponse first = Stored("resp_a", 500);
        byBytes.Add(first);
        byBytes.Add(Stored("resp_b", 500));
        Assert.Null(byBytes.Find("resp_a"));
        Assert.NotNull(byBytes.Find("resp_b"));
        Assert.Equal(1, byBytes.Count);

        // One larger than the bound on its own is still kept, as the newest, until the next comes.
        byBytes.Add(Stored("resp_c", 5000));
        Assert.NotNull(byBytes.Find("resp_c"));
        Assert.True(byBytes.Remove("resp_c"));
        Assert.False(byBytes.Remove("resp_c"));
    }

    [Fact]
    public void AServerThatKeepsNothing_RefusesPreviousResponseId_AndSaysSo()
    {
        using JsonDocument body = JsonDocument.Parse("""{"input": "Hi", "previous_response_id": "resp_1"}""");
        ApiException error = Assert.Throws<ApiException>(() => ResponsesRequest.Read(body.RootElement, store: null));
        Assert.Equal("previous_response_id", error.Param);
        Assert.Contains("--stored-responses 0", error.Message, StringComparison.Ordinal);

        using JsonDocument kept = JsonDocument.Parse("""{"input": "Hi", "store": true}""");
        ResponsesRequest request = ResponsesRequest.Read(kept.RootElement, store: null);
        using (request.Chat)
        {
            Assert.False(request.Store);
        }
    }

    private static StoredResponse Stored(string id, int bytes)
    {
        using JsonDocument item = JsonDocument.Parse(JsonSerializer.Serialize(new { type = "message", role = "user", content = new string('x', bytes) }));
        return new StoredResponse(id, new byte[100], [], [item.RootElement.Clone()]);
    }

    private async Task<JsonElement> GetOkAsync(string path)
    {
        using HttpResponseMessage response = await _server.Http.GetAsync(path);
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{path}: {(int)response.StatusCode} {text}");
        return JsonDocument.Parse(text).RootElement;
    }

    private async Task AssertNotFoundAsync(HttpMethod method, string path, string id)
    {
        using HttpResponseMessage response = await _server.Http.SendAsync(new HttpRequestMessage(method, path));
        using JsonDocument body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal($"Response with id '{id}' not found.", body.RootElement.GetProperty("error").GetProperty("message").GetString());
    }
}
