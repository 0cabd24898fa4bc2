using System.Text.Json;
using QwenSharp.Server;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Server;

/// <summary>
/// The server's prompt lookup: requests get the answers they get without it (greedy and sampled, several samples of a
/// prompt, log-probs, stop strings, the token limit and the slot's end), alone and at once, while some guesses are
/// taken and some dropped; the model-wide setting applies and 0 switches it off; a bad value is refused naming the option.
/// </summary>
public sealed class PromptLookupServerTests
{
    /// <summary>Prompts that repeat themselves, so their answers (tiny random weights) have runs to look up.</summary>
    private static readonly string[] Prompts =
    [
        "one two three one two three one two three one two",
        "the cat sat on the mat, the cat sat on the mat, the cat",
        "A B C D A B C D A B",
    ];

    private static string Body(int i) => JsonSerializer.Serialize(new Dictionary<string, object>
    {
        ["prompt"] = Prompts[i % Prompts.Length],
        // Slots of 64 positions: the long answers end at the slot's end, the short ones at max_tokens.
        ["max_tokens"] = i % 2 == 0 ? 80 : 17,
        ["temperature"] = i < 3 ? 0 : 0.9,
        ["top_p"] = 0.95,
        ["seed"] = 77 + i,
        ["n"] = i == 4 ? 2 : 1,
        ["logprobs"] = 2,
        ["stop"] = i == 5 ? new[] { "two three one" } : Array.Empty<string>(),
    });

    /// <summary>
    /// Six requests, one after another or all at once (at most three sequences decode together): each answer's choices
    /// as JSON, and the lookup metrics.
    /// </summary>
    private static async Task<(string[] Answers, double Guessed, double Taken)> AnswersAsync(ServerOptions options, bool atOnce, int? modelPromptLookup = null,
        string? draftModel = null)
    {
        await using TestServer server = await TestServer.StartAsync(TestTokenizers.TinyQwenWithTokenizer, options with { MaxConcurrent = 3, Context = 64 },
            modelPromptLookup: modelPromptLookup, draftModel: draftModel);
        (string[] Answers, double Guessed, double Taken) result = await AnswersOfAsync(server, atOnce);
        // The draft made every guess the server counted (none came from looking the text up).
        Assert.Equal(draftModel is null ? 0 : result.Guessed, server.Model.Draft?.Guessed ?? 0);
        return result;
    }

    private static async Task<(string[] Answers, double Guessed, double Taken)> AnswersOfAsync(TestServer server, bool atOnce)
    {
        async Task<string> Answer(int i) => (await server.PostOkAsync("/v1/completions", Body(i))).GetProperty("choices").GetRawText();
        var answers = new string[6];
        if (atOnce)
        {
            answers = await Task.WhenAll(Enumerable.Range(0, answers.Length).Select(Answer)).WaitAsync(TimeSpan.FromMinutes(2));
        }
        else
        {
            for (int i = 0; i < answers.Length; i++)
            {
                answers[i] = await Answer(i);
            }
        }

        return (answers, await server.MetricAsync("qwensharp_lookup_draft_tokens_total"), await server.MetricAsync("qwensharp_lookup_accepted_tokens_total"));
    }

    /// <summary>Alone, a request's steps are its own: its answer, log-probs included, is the same to the bit.</summary>
    [Fact]
    public async Task AnswersAloneAreThoseWithoutLookupToTheBit()
    {
        (string[] plain, double plainGuessed, _) = await AnswersAsync(new ServerOptions(), atOnce: false);
        (string[] looked, double guessed, double taken) = await AnswersAsync(new ServerOptions { PromptLookup = 4 }, atOnce: false);

        Assert.Equal(0, plainGuessed);
        Assert.Equal(plain, looked);
        Assert.True(taken > 0 && taken < guessed, $"{taken} of {guessed} guesses taken: the test should take some and drop some");
        Assert.Contains("\"finish_reason\":\"length\"", looked[0], StringComparison.Ordinal);
    }

    /// <summary>
    /// At once, the same texts and ends. (The log-probs' last bits follow which rows share a step, with or without lookup:
    /// a prompt read beside other rows goes through the many-token kernels. Guesses come only in the steps where one
    /// sequence is left decoding, so how many depends on timing.)
    /// </summary>
    [Fact]
    public async Task ConcurrentAnswersAreThoseWithoutLookup()
    {
        (string[] plain, _, _) = await AnswersAsync(new ServerOptions(), atOnce: true);
        (string[] looked, _, _) = await AnswersAsync(new ServerOptions { PromptLookup = 4 }, atOnce: true);

        Assert.Equal(plain.Select(TextsAndEnds), looked.Select(TextsAndEnds));
    }

    /// <summary>A draft model (the model's Q8_0 copy) guesses instead of the lookup: the same answers, alone and at once.</summary>
    [Fact]
    public async Task DraftModelAnswersAreThoseWithout()
    {
        string draft = GgufFixture.Write(TestTokenizers.TinyQwenWithTokenizer, QwenSharp.Formats.DType.Q8_0);
        (string[] plain, _, _) = await AnswersAsync(new ServerOptions(), atOnce: false);
        (string[] drafted, double guessed, double taken) = await AnswersAsync(new ServerOptions(), atOnce: false, draftModel: draft);
        Assert.Equal(plain.Select(TextsAndEnds), drafted.Select(TextsAndEnds));
        Assert.True(taken > 0 && guessed > taken, $"{taken} of {guessed} of the draft's guesses taken");

        (string[] plainAtOnce, _, _) = await AnswersAsync(new ServerOptions(), atOnce: true);
        (string[] draftedAtOnce, _, _) = await AnswersAsync(new ServerOptions { PromptLookup = 2 }, atOnce: true, draftModel: draft);
        Assert.Equal(plainAtOnce.Select(TextsAndEnds), draftedAtOnce.Select(TextsAndEnds));
    }

    private static string TextsAndEnds(string choices) =>
        string.Join('|', JsonDocument.Parse(choices).RootElement.EnumerateArray().Select(c => $"{c.GetProperty("text").GetString()}:{c.GetProperty("finish_reason").GetString()}"));

    [Fact]
    public async Task TheModelWideSettingAppliesAndZeroSwitchesItOff()
    {
        (_, double modelWide, _) = await AnswersAsync(new ServerOptions(), atOnce: false, modelPromptLookup: 3);
        (_, double off, _) = await AnswersAsync(new ServerOptions { PromptLookup = 0 }, atOnce: false, modelPromptLookup: 3);

        Assert.True(modelWide > 0);
        Assert.Equal(0, off);
    }

    [Fact]
    public async Task AnOutOfRangeValueIsRefusedNamingIt()
    {
        using QwenModel model = await QwenModel.LoadAsync(TestTokenizers.TinyQwenWithTokenizer, new QwenModelOptions { Threads = 1 });

        var error = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => QwenServer.StartAsync(model, new ServerOptions { Port = 0, PromptLookup = 7 }));

        Assert.Contains(nameof(ServerOptions.PromptLookup), error.Message, StringComparison.Ordinal);
    }
    private static string ChatBody(string user, object? prediction, string? stop = null) => JsonSerializer.Serialize(new Dictionary<string, object?>
    {
        ["messages"] = new[] { new Dictionary<string, string> { ["role"] = "user", ["content"] = user } },
        ["max_tokens"] = 40,
        ["temperature"] = 0,
        ["prediction"] = prediction,
        ["stop"] = stop,
    });

    /// <summary>
    /// OpenAI's Predicted Outputs on a server without lookup of its own: the answer is the one without a prediction,
    /// whatever the prediction says, and the usage counts the guesses it gave that were taken and dropped.
    /// </summary>
    [Fact]
    public async Task APredictionGivesTheSameAnswerAndCountsItsGuesses()
    {
        await using TestServer server = await TestServer.StartAsync(TestTokenizers.TinyQwenWithTokenizer, new ServerOptions { MaxConcurrent = 2, Context = 128 });
        const string question = "Repeat after me: the cat sat on the mat.";
        JsonElement plain = await server.PostOkAsync("/v1/chat/completions", ChatBody(question, null));
        string answer = plain.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
        Assert.False(plain.GetProperty("usage").TryGetProperty("completion_tokens_details", out _));

        foreach (object prediction in (object[])[
            new { type = "content", content = answer },
            new { type = "content", content = new[] { new { type = "text", text = answer[..(answer.Length / 2)] }, new { type = "text", text = answer[(answer.Length / 2)..] } } },
            new { type = "content", content = "something else entirely, " + answer[..(answer.Length / 3)] },
        ])
        {
            JsonElement predicted = await server.PostOkAsync("/v1/chat/completions", ChatBody(question, prediction));

            Assert.Equal(answer, predicted.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
            JsonElement details = predicted.GetProperty("usage").GetProperty("completion_tokens_details");
            Assert.True(details.GetProperty("accepted_prediction_tokens").GetInt32() >= 0 && details.GetProperty("rejected_prediction_tokens").GetInt32() >= 0);
        }

        // The whole answer as the prediction gives more guesses taken than a prediction unlike it (whose guesses come from
        // the prompt and the answer alone).
        // Each request alone: its usage counts the guesses /metrics counted while it ran.
        async Task<int> Taken(string text, string? stop = null)
        {
            double guessedBefore = await server.MetricAsync("qwensharp_lookup_draft_tokens_total"), takenBefore = await server.MetricAsync("qwensharp_lookup_accepted_tokens_total");
            JsonElement details = (await server.PostOkAsync("/v1/chat/completions", ChatBody(question, new { type = "content", content = text }, stop)))
                .GetProperty("usage").GetProperty("completion_tokens_details");
            int taken = details.GetProperty("accepted_prediction_tokens").GetInt32(), dropped = details.GetProperty("rejected_prediction_tokens").GetInt32();
            Assert.Equal(await server.MetricAsync("qwensharp_lookup_accepted_tokens_total") - takenBefore, taken);
            Assert.Equal(await server.MetricAsync("qwensharp_lookup_draft_tokens_total") - guessedBefore, taken + dropped);
            return taken;
        }

        int whole = await Taken(answer), unlike = await Taken("zzz");
        Assert.True(whole > unlike, $"{whole} guesses taken with the answer as the prediction, {unlike} with 'zzz'");

        // Stopped by a stop string inside the answer, where the guesses run: the stopping step's guesses count too.
        for (int at = answer.Length / 4; at < answer.Length - 4; at += answer.Length / 8)
        {
            await Taken(answer, answer.Substring(at, 3));
        }
    }

    [Theory]
    [InlineData("{\"type\": \"text\", \"content\": \"x\"}", "prediction.type")]
    [InlineData("{\"type\": \"content\"}", "prediction.content")]
    [InlineData("{\"type\": \"content\", \"content\": 3}", "prediction.content")]
    [InlineData("{\"type\": \"content\", \"content\": [{\"type\": \"image_url\"}]}", "prediction.content[0].type")]
    [InlineData("{\"type\": \"content\", \"content\": \"x\", \"extra\": 1}", "prediction.extra")]
    [InlineData("\"x\"", "prediction")]
    [InlineData("{\"type\": \"content\", \"content\": \"LONG\"}", "prediction.content")]
    public async Task ABadPredictionIsA400NamingTheField(string prediction, string param)
    {
        // LONG: more tokens than the test server's 512 positions.
        await using TestServer server = await TestServer.StartAsync();
        prediction = prediction.Replace("LONG", string.Concat(Enumerable.Repeat("word ", 600)), StringComparison.Ordinal);
        string body = $"{{\"messages\": [{{\"role\": \"user\", \"content\": \"hi\"}}], \"max_tokens\": 2, \"prediction\": {prediction}}}";

        (System.Net.HttpStatusCode status, JsonDocument error) = await server.PostAsync("/v1/chat/completions", body);

        Assert.Equal(System.Net.HttpStatusCode.BadRequest, status);
        Assert.Equal(param, error.RootElement.GetProperty("error").GetProperty("param").GetString());
    }
}
