using System.Text.Json;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Cli;

/// <summary>chat over piped stdin and perplexity over a file, checked against generate, tokenize and score, on the CPU and the GPU.</summary>
public sealed class CliChatPerplexityTests
{
    private static int[] Ids(JsonElement array) => [.. array.EnumerateArray().Select(e => e.GetInt32())];

    private static string GenerateText(string device, params string[] args)
    {
        CliRunner.Result result = CliRunner.Run(["generate", "--model", TestTokenizers.TinyQwenWithTokenizer, "--greedy", "--max-new-tokens", "8", "--json", "--device", device, .. args]);
        Assert.True(result.ExitCode == 0, result.Stderr);
        return result.Json.GetProperty("sequences")[0].GetProperty("text").GetString()!;
    }

    [SkippableTheory]
    [MemberData(nameof(TestBackends.DevicesData), MemberType = typeof(TestBackends))]
    public void Chat_PipedStdin_AnswersEachLineInContextAndResets(string device)
    {
        TestBackends.RequireDevice(device);
        string first = GenerateText(device, "--chat", "Hi");
        string directory = Fixtures.TempDirectory();
        string messages = Path.Combine(directory, "messages.json");
        File.WriteAllText(messages, JsonSerializer.Serialize(new[]
        {
            new Dictionary<string, string> { ["role"] = "user", ["content"] = "Hi" },
            new Dictionary<string, string> { ["role"] = "assistant", ["content"] = first },
            new Dictionary<string, string> { ["role"] = "user", ["content"] = "Name a prime." },
        }));
        CliRunner.Result rendered = CliRunner.Run("tokenize", "--model", TestTokenizers.TinyQwenWithTokenizer, "--messages", messages, "--json");
        string second = GenerateText(device, "--prompt-ids", string.Join(",", Ids(rendered.Json.GetProperty("ids"))));

        CliRunner.Result chat = CliRunner.RunWithInput("Hi\n\nName a prime.\n/reset\nHi\n/exit\nnever read\n",
            "chat", "--model", TestTokenizers.TinyQwenWithTokenizer, "--greedy", "--max-new-tokens", "8", "--device", device);

        Assert.Equal(0, chat.ExitCode);
        Assert.Equal($"{first}\n{second}\n{first}\n", chat.Stdout);

        // With prompt lookup, the same answers (PromptLookupTests check that guesses are made and taken, on both devices).
        if (device != "cpu")
        {
            return;
        }

        CliRunner.Result looked = CliRunner.RunWithInput("Hi\n\nName a prime.\n/reset\nHi\n/exit\n",
            "chat", "--model", TestTokenizers.TinyQwenWithTokenizer, "--greedy", "--max-new-tokens", "8", "--device", device, "--prompt-lookup", "4");
        Assert.Equal(chat.Stdout, looked.Stdout);
    }

    [Fact]
    public void Chat_ModelWithoutTemplate_ExitCode2()
    {
        CliRunner.Result result = CliRunner.RunWithInput("hi\n", "chat");

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("the bundled demo model (stories260K) is a story model with no chat template; pass --model with an instruct model", Assert.Single(result.ErrorLines), StringComparison.Ordinal);
    }

    [SkippableTheory]
    [MemberData(nameof(TestBackends.DevicesData), MemberType = typeof(TestBackends))]
    public void Perplexity_OneWindow_IsExpOfScoresMeanNll(string device)
    {
        TestBackends.RequireDevice(device);
        string file = Path.Combine(Fixtures.TempDirectory(), "story.txt");
        File.WriteAllText(file, "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.");

        CliRunner.Result perplexity = CliRunner.Run("perplexity", "--file", file, "--json", "--device", device);
        CliRunner.Result score = CliRunner.Run("score", "--file", file, "--json", "--device", device);

        Assert.Equal(0, perplexity.ExitCode);
        Assert.Equal(1, perplexity.Json.GetProperty("windows").GetInt32());
        Assert.Equal(score.Json.GetProperty("perplexity").GetDouble(), perplexity.Json.GetProperty("perplexity").GetDouble(), 1e-9);
        Assert.Equal(score.Json.GetProperty("mean_nll").GetDouble(), perplexity.Json.GetProperty("mean_nll").GetDouble(), 1e-9);
    }

    [SkippableTheory]
    [MemberData(nameof(TestBackends.DevicesData), MemberType = typeof(TestBackends))]
    public void Perplexity_SlidingWindows_ScoreEachTokenOnceWithItsWindowAsContext(string device)
    {
        TestBackends.RequireDevice(device);
        string file = Path.Combine(Fixtures.TempDirectory(), "story.txt");
        File.WriteAllText(file, "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball.");
        int[] ids = [1, .. Ids(CliRunner.Run("tokenize", "--file", file, "--json").Json.GetProperty("ids"))];
        const int context = 16, stride = 6;

        // Hugging Face's guide, by hand: window [begin, begin+16) scores the targets the previous window did not.
        double nll = 0;
        int scored = 0, previousEnd = 0;
        for (int begin = 0; previousEnd < ids.Length; begin += stride)
        {
            int end = Math.Min(begin + context, ids.Length);
            JsonElement[] positions = [.. CliRunner.Run("score", "--prompt-ids", string.Join(",", ids[begin..end]), "--json", "--device", device).Json.GetProperty("positions").EnumerateArray()];
            for (int target = Math.Max(previousEnd, begin + 1); target < end; target++)
            {
                nll -= positions[target - 1 - begin].GetProperty("logprob").GetDouble();
                scored++;
            }

            previousEnd = end;
        }

        CliRunner.Result result = CliRunner.Run("perplexity", "--file", file, "--context", context.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--stride", stride.ToString(System.Globalization.CultureInfo.InvariantCulture), "--json", "--device", device);

        Assert.Equal(ids.Length - 1, scored);
        Assert.Equal(scored, result.Json.GetProperty("scored_tokens").GetInt32());
        Assert.Equal(Math.Exp(nll / scored), result.Json.GetProperty("perplexity").GetDouble(), 1e-6);
    }

    [Fact]
    public void Perplexity_Errors_OneLineAndExitCode2()
    {
        string empty = Path.Combine(Fixtures.TempDirectory(), "empty.txt");
        File.WriteAllText(empty, "");
        string story = Path.Combine(Fixtures.TempDirectory(), "story.txt");
        File.WriteAllText(story, "Once upon a time.");

        foreach ((string[] args, string message) in new (string[], string)[]
        {
            (["perplexity"], "perplexity needs --file F"),
            (["perplexity", "--file", empty], "perplexity needs at least 2"),
            (["perplexity", "--file", story, "--context", "1"], "--context '1' is not an integer >= 2"),
            (["perplexity", "--file", story, "--stride", "600"], "--stride '600' is not an integer from 1 to 512"),
            (["perplexity", "--file", story, "--context", "1000"], "--context 1000 is more than the model's max_position_embeddings (512)"),
        })
        {
            CliRunner.Result result = CliRunner.Run(args);
            Assert.Equal(2, result.ExitCode);
            Assert.Contains(message, Assert.Single(result.ErrorLines), StringComparison.Ordinal);
        }
    }
}
