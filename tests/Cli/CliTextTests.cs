using System.Text;
using System.Text.Json;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Cli;

/// <summary>Text in and out of the CLI: tokenize, generate --prompt/--chat, score --file, against the independent references.</summary>
public sealed class CliTextTests
{
    private static string Llama2cText => File.ReadAllText(Fixtures.File("stories260K", "llama2c_expected_greedy.txt"));

    private static int[] Ids(JsonElement array) => [.. array.EnumerateArray().Select(e => e.GetInt32())];

    [Fact]
    public void Generate_TextPrompt_StreamsWhatLlama2cPrints()
    {
        // llama2c's 200 greedy tokens after BOS start with "Once upon a time" (4 tokens): continuing that prompt must print its text.
        CliRunner.Result result = CliRunner.Run("generate", "--prompt", "Once upon a time", "--max-new-tokens", "196", "--greedy");

        Assert.Equal(0, result.ExitCode);
        Assert.Equal(Llama2cText + "\n", result.Stdout);
    }

    [Fact]
    public void Generate_TextPromptJson_HasIdsAndTextOfTheNewTokens()
    {
        using JsonDocument expected = Fixtures.Json("stories260K", "llama2c_expected_greedy_ids.json");
        int[] llama2c = Ids(expected.RootElement);

        CliRunner.Result result = CliRunner.Run("generate", "--prompt", "Once upon a time", "--max-new-tokens", "30", "--greedy", "--json");

        Assert.Equal(0, result.ExitCode);
        JsonElement sequence = Assert.Single(result.Json.GetProperty("sequences").EnumerateArray());
        Assert.Equal(llama2c[5..35], Ids(sequence.GetProperty("ids")));
        string text = sequence.GetProperty("text").GetString()!;
        Assert.StartsWith(", there was a little girl named Lily.", text, StringComparison.Ordinal);
        Assert.StartsWith("Once upon a time" + text, Llama2cText, StringComparison.Ordinal);
    }

    [Fact]
    public void Generate_ChatMessage_UsesTheChatTemplateIds()
    {
        using JsonDocument cases = Fixtures.Json("tokenizer", "qwen2.5-chat-cases.json");
        JsonElement userOnly = cases.RootElement.EnumerateArray().First(c => c.GetProperty("name").GetString() == "user only, default system");
        string message = userOnly.GetProperty("messages")[0].GetProperty("content").GetString()!;
        string templateIds = string.Join(",", Ids(userOnly.GetProperty("ids")));

        CliRunner.Result chat = CliRunner.Run("generate", "--model", TestTokenizers.TinyQwenWithTokenizer, "--chat", message,
            "--greedy", "--ignore-eos", "--max-new-tokens", "6", "--json");
        CliRunner.Result ids = CliRunner.Run("generate", "--model", TestTokenizers.TinyQwenWithTokenizer, "--prompt-ids", templateIds,
            "--greedy", "--ignore-eos", "--max-new-tokens", "6", "--json");

        Assert.Equal(0, chat.ExitCode);
        JsonElement chatSequence = chat.Json.GetProperty("sequences")[0];
        JsonElement idsSequence = ids.Json.GetProperty("sequences")[0];
        Assert.Equal(Ids(idsSequence.GetProperty("ids")), Ids(chatSequence.GetProperty("ids")));
        Assert.Equal(idsSequence.GetProperty("text").GetString(), chatSequence.GetProperty("text").GetString());
    }

    [Fact]
    public void Generate_BatchOfTextAndIds_KeepsCommandLineOrder()
    {
        CliRunner.Result result = CliRunner.Run("generate", "--prompt", "Once upon a time", "--prompt-ids", "1,403,407,261,378",
            "--max-new-tokens", "8", "--greedy", "--json");

        JsonElement[] sequences = [.. result.Json.GetProperty("sequences").EnumerateArray()];
        Assert.Equal(2, sequences.Length);
        Assert.Equal(Ids(sequences[0].GetProperty("ids")), Ids(sequences[1].GetProperty("ids")));
    }

    [Fact]
    public void Tokenize_TextAndFile_GiveHuggingFaceIds()
    {
        using JsonDocument cases = Fixtures.Json("tokenizer", "qwen2.5-cases.json");
        foreach (JsonElement c in cases.RootElement.EnumerateArray().Where(c => c.GetProperty("text").GetString()!.Contains('\n', StringComparison.Ordinal)).Take(4))
        {
            string text = c.GetProperty("text").GetString()!;
            string file = Path.Combine(Fixtures.TempDirectory(), "input.txt");
            File.WriteAllBytes(file, Encoding.UTF8.GetBytes(text));

            CliRunner.Result fromText = CliRunner.Run("tokenize", "--model", TestTokenizers.QwenDirectory, "--json", "--", text);
            CliRunner.Result fromFile = CliRunner.Run("tokenize", "--model", TestTokenizers.QwenDirectory, "--file", file, "--json");

            Assert.Equal(Ids(c.GetProperty("ids")), Ids(fromText.Json.GetProperty("ids")));
            Assert.Equal(Ids(c.GetProperty("ids")), Ids(fromFile.Json.GetProperty("ids")));
        }
    }

    [Theory]
    [InlineData("tools, default system")]
    [InlineData("tool call and responses")]
    [InlineData("no generation prompt")]
    public void Tokenize_Messages_RendersAndEncodesAsTransformers(string name)
    {
        using JsonDocument cases = Fixtures.Json("tokenizer", "qwen2.5-chat-cases.json");
        JsonElement c = cases.RootElement.EnumerateArray().First(c => c.GetProperty("name").GetString() == name);
        string directory = Fixtures.TempDirectory();
        string messages = Path.Combine(directory, "messages.json");
        File.WriteAllText(messages, c.GetProperty("messages").GetRawText());
        var args = new List<string> { "tokenize", "--model", TestTokenizers.QwenDirectory, "--messages", messages, "--json" };
        if (c.GetProperty("tools").ValueKind == JsonValueKind.Array)
        {
            string tools = Path.Combine(directory, "tools.json");
            File.WriteAllText(tools, c.GetProperty("tools").GetRawText());
            args.AddRange(["--tools", tools]);
        }

        if (!c.GetProperty("add_generation_prompt").GetBoolean())
        {
            args.Add("--no-generation-prompt");
        }

        CliRunner.Result result = CliRunner.Run([.. args]);

        Assert.Equal(0, result.ExitCode);
        Assert.Equal(c.GetProperty("text").GetString(), result.Json.GetProperty("text").GetString());
        Assert.Equal(Ids(c.GetProperty("ids")), Ids(result.Json.GetProperty("ids")));
    }

    [Fact]
    public void Tokenize_Messages_EndingWithTheAssistants_ContinuesIt_AsTransformersContinueFinalMessage()
    {
        // transformers' render with no generation prompt, less the final turn's <|im_end|> and newline: what
        // apply_chat_template(continue_final_message=True) gives, and what generate --messages reads.
        using JsonDocument cases = Fixtures.Json("tokenizer", "qwen2.5-chat-cases.json");
        JsonElement c = cases.RootElement.EnumerateArray().First(c => c.GetProperty("name").GetString() == "no generation prompt");
        string messages = Path.Combine(Fixtures.TempDirectory(), "messages.json");
        File.WriteAllText(messages, c.GetProperty("messages").GetRawText());

        CliRunner.Result result = CliRunner.Run("tokenize", "--model", TestTokenizers.QwenDirectory, "--messages", messages, "--json");

        Assert.Equal(0, result.ExitCode);
        string text = c.GetProperty("text").GetString()!;
        Assert.Equal(text[..text.LastIndexOf("<|im_end|>", StringComparison.Ordinal)], result.Json.GetProperty("text").GetString());
        Assert.Equal(Ids(c.GetProperty("ids"))[..^2], Ids(result.Json.GetProperty("ids")));
    }

    [Fact]
    public void Tokenize_ForPeople_ShowsEachTokenInContext()
    {
        CliRunner.Result result = CliRunner.Run("tokenize", "Once upon a time");

        Assert.Equal(0, result.ExitCode);
        Assert.Equal(["403  \"Once\"", "407  \" upon\"", "261  \" a\"", "378  \" time\""], result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Trim()));
    }

    [Fact]
    public void Tokenize_ForPeople_ShowsTheBytesOfTokensWithNoTextOfTheirOwn()
    {
        // Sentencepiece: a leading space is its own token (▁), which the text's start drops.
        CliRunner.Result spaced = CliRunner.Run("tokenize", " there was");
        // Byte-level: 🫠's four bytes (F0 9F AB A0) come in three tokens, the first two of them parts of the character.
        CliRunner.Result emoji = CliRunner.Run("tokenize", "--model", TestTokenizers.QwenDirectory, "🫠");

        static IEnumerable<string> Shown(CliRunner.Result result) =>
            result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Trim()).Select(l => l[(l.IndexOf(' ', StringComparison.Ordinal) + 2)..]);
        Assert.Equal(["\" \"", "\" there\"", "\" was\""], Shown(spaced));
        Assert.Equal(["\"\\xF0\\x9F\"  (part of a character)", "\"\\xAB\"  (part of a character)", "\"🫠\""], Shown(emoji));
    }

    [Fact]
    public void Score_File_EqualsScoringItsIds()
    {
        string file = Path.Combine(Fixtures.TempDirectory(), "story.txt");
        File.WriteAllText(file, "Once upon a time, there was a little girl named Lily.");
        using JsonDocument cases = Fixtures.Json("tokenizer", "stories260K-cases.json");
        int[] ids = [1, .. Ids(cases.RootElement[0].GetProperty("ids"))];

        CliRunner.Result fromFile = CliRunner.Run("score", "--file", file, "--json");
        CliRunner.Result fromIds = CliRunner.Run("score", "--prompt-ids", string.Join(",", ids), "--json");

        Assert.Equal(0, fromFile.ExitCode);
        Assert.Equal(fromIds.Json.GetProperty("mean_nll").GetDouble(), fromFile.Json.GetProperty("mean_nll").GetDouble());
        Assert.Equal(ids.Length, fromFile.Json.GetProperty("positions").GetArrayLength());
    }

    [Fact]
    public void TextErrors_OneLineAndExitCode2()
    {
        string noTokenizer = Fixtures.Directory("tiny-qwen2");
        string badUtf8 = Path.Combine(Fixtures.TempDirectory(), "bad.txt");
        File.WriteAllBytes(badUtf8, [0x61, 0x62, 0xFF, 0x63]);
        string notAList = Path.Combine(Fixtures.TempDirectory(), "messages.json");
        File.WriteAllText(notAList, """{"role": "user", "content": "hi"}""");

        AssertBadInput(CliRunner.Run("generate", "--model", noTokenizer, "--prompt", "hi", "--greedy"), "tokenizer.json: file not found");
        AssertBadInput(CliRunner.Run("generate", "--chat", "hi", "--greedy"), "generate --chat: the bundled demo model (stories260K) is a story model with no chat template");
        AssertBadInput(CliRunner.Run("tokenize", "--file", badUtf8), "bad.txt: not valid UTF-8 at byte 2");
        AssertBadInput(CliRunner.Run("tokenize", "--model", TestTokenizers.QwenDirectory, "--messages", notAList), "messages.json: expected a JSON list of messages");
        AssertBadInput(CliRunner.Run("tokenize"), "tokenize needs TEXT, --file F or --messages M.json");
        AssertBadInput(CliRunner.Run("tokenize", "a", "b"), "unexpected argument 'b'");
        AssertBadInput(CliRunner.Run("generate", "stray", "--prompt-ids", "1", "--greedy"), "unexpected argument 'stray'");
        AssertBadInput(CliRunner.Run("tokenize", "--file", "/no/such/file.txt"), "/no/such/file.txt");
    }

    private static void AssertBadInput(CliRunner.Result result, string message)
    {
        Assert.Equal(2, result.ExitCode);
        string line = Assert.Single(result.ErrorLines);
        Assert.Contains(message, line, StringComparison.Ordinal);
    }
}
