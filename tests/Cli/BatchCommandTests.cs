using System.Text.Json;
using QwenSharp.Tests.Server;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Cli;

/// <summary>
/// <c>qwensharp batch</c>: an OpenAI batch file run through the server's own endpoints, each answer a line in the input's
/// order (a chat answer tiny-qwen2's transformers reference continuation, an embedding, a refused request's error
/// object with its status), the exit code 2 naming the first request that failed; a bad batch file refused naming its
/// line before the model loads, and an existing --out left as it was.
/// </summary>
public sealed class BatchCommandTests
{
    private static string Line(string customId, string url, object body) =>
        JsonSerializer.Serialize(new { custom_id = customId, method = "POST", url, body });

    [Fact]
    public void ABatchFile_IsAnsweredLineByLine_InItsOrder()
    {
        (string system, string user) = OpenAiClientTests.ReferenceConversation();
        string directory = Fixtures.TempDirectory();
        string input = Path.Combine(directory, "requests.jsonl");
        string output = Path.Combine(directory, "results.jsonl");
        File.WriteAllLines(input,
        [
            Line("chat-1", "/v1/chat/completions", new { messages = new object[] { new { role = "system", content = system }, new { role = "user", content = user } }, max_tokens = 4, temperature = 0 }),
            "",
            Line("refused", "/v1/completions", new { prompt = "Hi", max_tokens = -1 }),
            Line("embedding", "/v1/embeddings", new { input = "Hello" }),
            Line("chat-2", "/v1/chat/completions", new { messages = new object[] { new { role = "system", content = system }, new { role = "user", content = user } }, max_tokens = 2, temperature = 0 }),
        ]);

        CliRunner.Result result = CliRunner.Run("batch", "--model", TestTokenizers.TinyQwenWithTokenizer, "--input", input, "--out", output, "--max-concurrent", "2", "--context", "256");

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("line 3 ('refused'): 400: 'max_tokens' must be an integer from 1", Assert.Single(result.ErrorLines, l => l.Contains("error:", StringComparison.Ordinal)), StringComparison.Ordinal);
        JsonElement[] lines = [.. File.ReadAllLines(output).Select(l => JsonDocument.Parse(l).RootElement)];
        Assert.Equal(["chat-1", "refused", "embedding", "chat-2"], lines.Select(l => l.GetProperty("custom_id").GetString()));
        Assert.Equal([200, 400, 200, 200], lines.Select(l => l.GetProperty("response").GetProperty("status_code").GetInt32()));
        Assert.Equal(4, lines.Select(l => l.GetProperty("id").GetString()).Distinct().Count());
        Assert.All(lines, l => Assert.Equal(JsonValueKind.Null, l.GetProperty("error").ValueKind));

        JsonElement Body(int i) => lines[i].GetProperty("response").GetProperty("body");
        Assert.Equal(OpenAiClientTests.ReferenceAnswer(4), Body(0).GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
        Assert.Equal(OpenAiClientTests.ReferenceAnswer(2), Body(3).GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
        Assert.Equal("max_tokens", Body(1).GetProperty("error").GetProperty("param").GetString());
        Assert.Equal("embedding", Body(2).GetProperty("data")[0].GetProperty("object").GetString());
    }

    [Fact]
    public void ABadBatchFile_IsRefusedNamingItsLine_AndAnExistingOutIsLeftAsItWas()
    {
        string directory = Fixtures.TempDirectory();
        string good = Line("a", "/v1/completions", new { prompt = "Hi" });
        foreach ((string[] lines, string message) in ((string[], string)[])[
            ([good, "{\"custom_id\": \"b\""], "line 2: not JSON"),
            ([good, good], "line 2: custom_id 'a' is already another request's"),
            (["{\"custom_id\": \"a\", \"method\": \"GET\", \"url\": \"/v1/models\", \"body\": {}}"], "line 1: method is 'GET'; a batch's requests are POST"),
            ([Line("a", "v1/completions", new { prompt = "Hi" })], "line 1: url 'v1/completions' is not a path"),
            ([Line("a", "/v1/completions", new { prompt = "Hi", stream = true })], "line 1: body.stream is true"),
            (["{\"custom_id\": \"a\", \"method\": \"POST\", \"url\": \"/v1/completions\", \"body\": {}, \"priority\": 1}"], "line 1: unknown field 'priority'"),
            ([""], "no requests")])
        {
            string input = Path.Combine(directory, $"bad-{Guid.NewGuid():N}.jsonl");
            File.WriteAllLines(input, lines);

            CliRunner.Result result = CliRunner.Run("batch", "--input", input);

            Assert.True(result.ExitCode == 2, $"{message}: {result.ExitCode} {result.Stderr}");
            Assert.Contains(message, Assert.Single(result.ErrorLines), StringComparison.Ordinal);
        }

        string existing = Path.Combine(directory, "results.jsonl");
        File.WriteAllText(existing, "keep me");
        string requests = Path.Combine(directory, "requests.jsonl");
        File.WriteAllText(requests, good);
        CliRunner.Result refused = CliRunner.Run("batch", "--input", requests, "--out", existing);
        Assert.Equal(2, refused.ExitCode);
        Assert.Contains("already exists; batch does not overwrite anything", Assert.Single(refused.ErrorLines), StringComparison.Ordinal);
        Assert.Equal("keep me", File.ReadAllText(existing));
    }
}
