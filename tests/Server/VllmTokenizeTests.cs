using System.Text.Json;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Server;

/// <summary>
/// vLLM's <c>/tokenize</c> and <c>/detokenize</c> shapes beside llama-server's: a chat's messages (and tools) through the
/// template, and the rendered text as a prompt, give the ids transformers gave for the fixture's conversations, with
/// vLLM's count, max_model_len and token strings (the tokenizer.json's spellings); the ids detokenize to the text as vLLM's "prompt" (and llama-server's
/// "content").
/// </summary>
public sealed class VllmTokenizeTests
{
    [Fact]
    public async Task ChatsAndPrompts_GiveTransformersIds_InVllmsShape()
    {
        await using TestServer server = await TestServer.StartAsync(new QwenSharp.Server.ServerOptions { Context = 512 });
        using JsonDocument cases = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.RepositoryRoot, "tests", "fixtures", "tokenizer", "qwen2.5-chat-cases.json")));
        int checkedCases = 0;

        // Each id's spelling, from the tokenizer.json itself (its vocabulary and added tokens), as convert_ids_to_tokens reads it.
        using JsonDocument tokenizer = JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures.RepositoryRoot, "tests", "fixtures", "qwen2.5-0.5b-instruct", "tokenizer.json")));
        var spelled = new Dictionary<int, string>();
        foreach (JsonProperty entry in tokenizer.RootElement.GetProperty("model").GetProperty("vocab").EnumerateObject())
        {
            spelled[entry.Value.GetInt32()] = entry.Name;
        }

        foreach (JsonElement added in tokenizer.RootElement.GetProperty("added_tokens").EnumerateArray())
        {
            spelled[added.GetProperty("id").GetInt32()] = added.GetProperty("content").GetString()!;
        }

        foreach (JsonElement @case in cases.RootElement.EnumerateArray())
        {
            if (@case.GetProperty("messages").GetRawText().Contains("\"tool_calls\"", StringComparison.Ordinal))
            {
                // transformers' own shape of a call (arguments an object), which OpenAI's API does not take.
                continue;
            }

            int[] ids = [.. @case.GetProperty("ids").EnumerateArray().Select(i => i.GetInt32())];
            string text = @case.GetProperty("text").GetString()!;
            string name = @case.GetProperty("name").GetString()!;
            string tools = @case.TryGetProperty("tools", out JsonElement t) && t.ValueKind == JsonValueKind.Array ? $", \"tools\": {t.GetRawText()}" : "";
            string chat = $"{{\"model\": \"tiny\", \"messages\": {@case.GetProperty("messages").GetRawText()}{tools}, \"add_generation_prompt\": {(@case.GetProperty("add_generation_prompt").GetBoolean() ? "true" : "false")}}}";

            JsonElement fromChat = await server.PostOkAsync("/tokenize", chat);
            Assert.True(ids.SequenceEqual(fromChat.GetProperty("tokens").EnumerateArray().Select(i => i.GetInt32())), $"{name}: the chat's ids differ from transformers'");
            Assert.Equal(ids.Length, fromChat.GetProperty("count").GetInt32());
            Assert.Equal(512, fromChat.GetProperty("max_model_len").GetInt32());
            Assert.Equal(JsonValueKind.Null, fromChat.GetProperty("token_strs").ValueKind);

            JsonElement fromPrompt = await server.PostOkAsync("/tokenize", JsonSerializer.Serialize(new { prompt = text, return_token_strs = true }));
            Assert.True(ids.SequenceEqual(fromPrompt.GetProperty("tokens").EnumerateArray().Select(i => i.GetInt32())), $"{name}: the text's ids differ from transformers'");
            Assert.Equal(ids.Select(id => spelled[id]), fromPrompt.GetProperty("token_strs").EnumerateArray().Select(s => s.GetString()));

            JsonElement back = await server.PostOkAsync("/detokenize", JsonSerializer.Serialize(new { tokens = ids }));
            Assert.Equal(text, back.GetProperty("prompt").GetString());
            Assert.Equal(text, back.GetProperty("content").GetString());
            checkedCases++;
        }

        Assert.True(checkedCases >= 4, $"only {checkedCases} fixture conversations");
        await server.AssertRefusedAsync("/tokenize", """{"prompt": "Hi", "with_pieces": true}""", "with_pieces", "with_pieces");
    }
}
