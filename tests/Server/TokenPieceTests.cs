using System.Text;
using System.Text.Json;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Server;

/// <summary>
/// Tokens as the server lists them (log-probs, <c>/tokenize</c>'s pieces): their own bytes, so that joined they are the
/// text even where a character's bytes span tokens, and a sentencepiece word keeps its space. The demo model
/// (stories260K) is sentencepiece; the Qwen tokenizer is byte-level.
/// </summary>
public sealed class TokenPieceTests
{
    private const string Prompt = "Once upon";

    [Fact]
    public async Task CompletionLogprobTokensJoinIntoTheTextAtTheirOffsets()
    {
        await using TestServer server = await TestServer.StartAsync(Fixtures.DemoModel, options: null);
        JsonElement response = await server.PostOkAsync("/v1/completions", $"{{\"prompt\": \"{Prompt}\", \"max_tokens\": 12, \"temperature\": 0, \"logprobs\": 2}}");

        JsonElement choice = response.GetProperty("choices")[0];
        string text = choice.GetProperty("text").GetString()!;
        string[] tokens = [.. choice.GetProperty("logprobs").GetProperty("tokens").EnumerateArray().Select(t => t.GetString()!)];
        int[] offsets = [.. choice.GetProperty("logprobs").GetProperty("text_offset").EnumerateArray().Select(o => o.GetInt32())];

        Assert.StartsWith(" ", text, StringComparison.Ordinal);
        Assert.Equal(text, string.Concat(tokens));
        Assert.Equal(Enumerable.Range(0, tokens.Length).Select(i => tokens[..i].Sum(t => t.Length)), offsets);
        Assert.All(choice.GetProperty("logprobs").GetProperty("top_logprobs")[0].EnumerateObject(), a => Assert.StartsWith(" ", a.Name, StringComparison.Ordinal));
    }

    [Fact]
    public async Task StreamedCompletionOffsetsGoOnFromChunkToChunk()
    {
        await using TestServer server = await TestServer.StartAsync(Fixtures.DemoModel, options: null);
        using var content = new StringContent($"{{\"prompt\": \"{Prompt}\", \"max_tokens\": 12, \"temperature\": 0, \"logprobs\": 1, \"stream\": true}}", Encoding.UTF8, "application/json");
        using HttpResponseMessage response = await server.Http.PostAsync("/v1/completions", content);
        string body = await response.Content.ReadAsStringAsync();

        var text = new StringBuilder();
        var offsets = new List<int>();
        var expected = new List<int>();
        foreach (string line in body.Split('\n').Where(l => l.StartsWith("data: {", StringComparison.Ordinal)))
        {
            using JsonDocument chunk = JsonDocument.Parse(line["data: ".Length..]);
            JsonElement choice = chunk.RootElement.GetProperty("choices")[0];
            if (choice.GetProperty("logprobs").ValueKind == JsonValueKind.Object)
            {
                // One token a chunk (the closing chunk lists none): it starts where the text so far ends.
                int[] chunkOffsets = [.. choice.GetProperty("logprobs").GetProperty("text_offset").EnumerateArray().Select(o => o.GetInt32())];
                offsets.AddRange(chunkOffsets);
                expected.AddRange(chunkOffsets.Select(_ => text.Length));
            }

            text.Append(choice.GetProperty("text").GetString());
        }

        Assert.Equal(12, offsets.Count);
        Assert.Equal(expected, offsets);
        Assert.True(offsets[^1] > 0);
    }

    [Fact]
    public async Task TokenizePiecesAreTextOrTheBytesOfPartOfACharacter()
    {
        const string text = "Hello 世界 🤗 naïve";
        await using TestServer server = await TestServer.StartAsync();
        JsonElement response = await server.PostOkAsync("/tokenize", JsonSerializer.Serialize(new Dictionary<string, object> { ["content"] = text, ["with_pieces"] = true }));

        JsonElement[] tokens = [.. response.GetProperty("tokens").EnumerateArray()];
        byte[] Bytes(JsonElement piece) => piece.ValueKind == JsonValueKind.String
            ? Encoding.UTF8.GetBytes(piece.GetString()!)
            : [.. piece.EnumerateArray().Select(b => b.GetByte())];

        Assert.Equal(TestTokenizers.Qwen.Encode(text), tokens.Select(t => t.GetProperty("id").GetInt32()));
        Assert.Equal(Encoding.UTF8.GetBytes(text), tokens.SelectMany(t => Bytes(t.GetProperty("piece"))));
        Assert.Contains(tokens, t => t.GetProperty("piece").ValueKind == JsonValueKind.Array);
    }

    [Fact]
    public async Task ChatLogprobBytesJoinIntoTheAnswerAndKeepPartsOfCharacters()
    {
        await using TestServer server = await TestServer.StartAsync();
        JsonElement response = await server.PostOkAsync("/v1/chat/completions",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"写一首诗 🤗\"}], \"max_tokens\": 24, \"temperature\": 0, \"logprobs\": true, \"top_logprobs\": 20}");

        JsonElement choice = response.GetProperty("choices")[0];
        JsonElement[] content = [.. choice.GetProperty("logprobs").GetProperty("content").EnumerateArray()];
        static byte[] Bytes(JsonElement token) => [.. token.GetProperty("bytes").EnumerateArray().Select(b => b.GetByte())];
        JsonElement[] alternatives = [.. content.SelectMany(t => t.GetProperty("top_logprobs").EnumerateArray())];

        Assert.Equal(Encoding.UTF8.GetBytes(choice.GetProperty("message").GetProperty("content").GetString()!), content.SelectMany(Bytes));
        Assert.All(content.Concat(alternatives), t => Assert.Equal(Encoding.UTF8.GetString(Bytes(t)), t.GetProperty("token").GetString()));
        // The random model ranks parts of characters among its top 20; their bytes are those parts, not U+FFFD's.
        JsonElement[] parts = [.. alternatives.Where(t => t.GetProperty("token").GetString()!.Contains('\uFFFD', StringComparison.Ordinal))];
        Assert.NotEmpty(parts);
        Assert.All(parts, t => Assert.False(System.Text.Unicode.Utf8.IsValid(Bytes(t))));
    }

    [Fact]
    public async Task APaddingIdInTheAnswerIsListedWithoutText()
    {
        await using TestServer server = await TestServer.StartAsync();
        // Greedy, this prompt's 40 tokens include one of the embedding's padding rows (an id past the tokenizer's vocabulary).
        JsonElement response = await server.PostOkAsync("/v1/chat/completions",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"写一首诗 🤗\"}], \"max_tokens\": 40, \"temperature\": 0, \"logprobs\": true}");

        JsonElement[] content = [.. response.GetProperty("choices")[0].GetProperty("logprobs").GetProperty("content").EnumerateArray()];

        Assert.Equal(40, content.Length);
        JsonElement padding = Assert.Single(content, t => t.GetProperty("bytes").GetArrayLength() == 0);
        Assert.Equal("", padding.GetProperty("token").GetString());
    }
}
