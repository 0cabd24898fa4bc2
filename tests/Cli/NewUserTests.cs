using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;
using QwenSharp.Cli;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Cli;

/// <summary>What a new user met first: defaults that fit the bundled model, help that matches the parser, errors in words, output that stops with its reader.</summary>
public sealed partial class NewUserTests
{
    private static void AssertBadInput(CliRunner.Result result, string expected)
    {
        Assert.Equal(2, result.ExitCode);
        string line = Assert.Single(result.ErrorLines);
        Assert.True(line.Contains(expected, StringComparison.Ordinal), $"expected \"{expected}\" in: {line}");
    }

    [Fact]
    public void Bench_NoOptionsOnTheDemoModel_ShrinksTheDefaultsAndSaysSo()
    {
        CliRunner.Result result = CliRunner.Run("bench", "--json");

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Contains("note: measuring a 447-token prompt and 64 new tokens (the defaults, 512 and 64, do not fit the model's context of 512)", result.Stderr);
        Assert.Equal(447, result.Json.GetProperty("prompt_tokens").GetInt32());
    }

    [Fact]
    public void Bench_Batch_ReportsPerSequenceAndTotalAndWeightReadsPerStep()
    {
        CliRunner.Result one = CliRunner.Run("bench", "--prompt-tokens", "16", "--new-tokens", "8", "--json");
        CliRunner.Result four = CliRunner.Run("bench", "--prompt-tokens", "16", "--new-tokens", "8", "--batch", "4", "--json");

        JsonElement j = four.Json;
        Assert.Equal(8, j.GetProperty("new_tokens").GetInt32());
        Assert.Equal(32, j.GetProperty("new_tokens_total").GetInt32());
        Assert.Equal(j.GetProperty("decode_tokens_per_s").GetDouble() / 4, j.GetProperty("decode_tokens_per_s_per_sequence").GetDouble(), 0.01);
        // Weights are read once per step: GB/s follows the per-sequence rate, not the batch's total.
        double bytes = j.GetProperty("decode_bytes_per_token").GetDouble();
        Assert.Equal(bytes * j.GetProperty("decode_tokens_per_s_per_sequence").GetDouble() / 1e9, j.GetProperty("decode_gb_per_s").GetDouble(), 0.01);
        Assert.Equal(8, one.Json.GetProperty("new_tokens_total").GetInt32());
    }

    [Fact]
    public void Bench_Memory_MeasuresReadBandwidthAndDecodeIsSetAgainstIt()
    {
        CliRunner.Result memory = CliRunner.Run("bench", "--memory", "--json", "--threads", "1");
        CliRunner.Result decode = CliRunner.Run("bench", "--prompt-tokens", "16", "--new-tokens", "8", "--json");
        CliRunner.Result misuse = CliRunner.Run("bench", "--memory", "--batch", "2");

        Assert.True(memory.Json.GetProperty("read_gb_per_s_1_thread").GetDouble() > 0);
        double read = decode.Json.GetProperty("memory_read_gb_per_s").GetDouble();
        double before = decode.Json.GetProperty("memory_read_gb_per_s_before").GetDouble(), after = decode.Json.GetProperty("memory_read_gb_per_s_after").GetDouble();
        Assert.True(before > 0 && after > 0, $"measured {before} GB/s before the decode and {after} after");
        Assert.Equal((before + after) / 2, read, 0.002);
        Assert.Equal(decode.Json.GetProperty("decode_gb_per_s").GetDouble() / read, decode.Json.GetProperty("decode_fraction_of_read_bandwidth").GetDouble(), 0.001);
        AssertBadInput(misuse, "--memory measures the machine alone; --batch does not apply to it");
    }

    [Fact]
    public void Bench_ConfigTooBigForMemory_RefusedBeforeAllocating()
    {
        string config = Path.Combine(Fixtures.TempDirectory(), "config.json");
        File.WriteAllText(config, File.ReadAllText(Fixtures.File("qwen2.5-0.5b-instruct", "config.json")).Replace("\"hidden_size\": 896", "\"hidden_size\": 89600", StringComparison.Ordinal));

        CliRunner.Result result = CliRunner.Run("bench", "--config", config, "--random-weights");

        AssertBadInput(result, "random BF16 weights (");
        Assert.Matches(@"need [0-9.]+ GiB; [0-9.]+ GiB of memory is available", result.ErrorLines[0]);
    }

    [Fact]
    public void ChatTemplateCommands_OnTheDemoModel_SayItIsAStoryModelAndWhatToUse()
    {
        AssertBadInput(CliRunner.RunWithInput("hello\n", "chat"), "chat: the bundled demo model (stories260K) is a story model with no chat template; pass --model with an instruct model such as Qwen2.5-0.5B-Instruct (README: A real model)");
        AssertBadInput(CliRunner.Run("generate", "--chat", "hi"), "generate --chat: the bundled demo model (stories260K) is a story model");
        string messages = Path.Combine(Fixtures.TempDirectory(), "m.json");
        File.WriteAllText(messages, """[{"role": "user", "content": "hi"}]""");
        AssertBadInput(CliRunner.Run("tokenize", "--messages", messages), "tokenize --messages: the bundled demo model (stories260K) is a story model");
    }

    [Fact]
    public void Chat_ConversationOutgrowsTheContext_DropsOldTurnsAndGoesOn()
    {
        string[] lines = [.. Enumerable.Range(1, 6).Select(i => $"Tell me about the number {i} in a few words.")];
        CliRunner.Result result = CliRunner.RunWithInput(string.Join("\n", lines) + "\n",
            "chat", "--model", TestTokenizers.TinyQwenWithTokenizer, "--greedy", "--max-new-tokens", "8", "--context", "120", "--system", "Be brief.");

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Equal(6, result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        Assert.Matches(@"\[the \d+ oldest turns? dropped to fit the context of 120 tokens\]", result.Stderr);
    }

    [Fact]
    public void Chat_MessageLongerThanTheContext_RefusedForThatTurnOnly()
    {
        string huge = string.Join(" ", Enumerable.Repeat("word", 300));
        CliRunner.Result result = CliRunner.RunWithInput($"Hi\n{huge}\nHi again\n",
            "chat", "--model", TestTokenizers.TinyQwenWithTokenizer, "--greedy", "--max-new-tokens", "4", "--context", "64");

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Equal(2, result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        Assert.Matches(@"\[that message makes a prompt of \d+ tokens, more than the context of 64: not sent\]", result.Stderr);
    }

    [Theory]
    [InlineData(@"\n\n", "\n\n")]
    [InlineData(@"a\tb", "a\tb")]
    [InlineData(@"back\\slash", @"back\slash")]
    [InlineData(@"\x stays", @"\x stays")]
    [InlineData(@"end\", @"end\")]
    [InlineData("plain", "plain")]
    public void StopString_Escapes_BecomeTheCharacters(string typed, string meant) => Assert.Equal(meant, TextInput.Unescape(typed));

    [Fact]
    public void Generate_StopWithEscapedNewline_StopsAtTheNewline()
    {
        // stories260K's stories have paragraphs: "\n" typed as backslash-n stops at the first line break.
        CliRunner.Result result = CliRunner.Run("generate", "--prompt", "Once upon a time", "--greedy", "--max-new-tokens", "200", "--stop", @"\n", "--json");

        JsonElement sequence = result.Json.GetProperty("sequences")[0];
        Assert.Equal("stop", sequence.GetProperty("stop_reason").GetString());
        Assert.DoesNotContain("\n", sequence.GetProperty("text").GetString()!, StringComparison.Ordinal);
    }

    [Fact]
    public void Help_EveryOptionItMentions_TheParserAccepts()
    {
        foreach (ICommand command in CliApp.Commands)
        {
            CliRunner.Result help = CliRunner.Run(command.Name, "--help");
            Assert.Equal(0, help.ExitCode);
            HashSet<string> accepted = [.. command.Options.Select(o => o.Name), "help"];
            foreach (Match option in OptionPattern().Matches(help.Stdout))
            {
                Assert.True(accepted.Contains(option.Groups[1].Value), $"qwensharp {command.Name} --help mentions --{option.Groups[1].Value}, which it does not take");
            }
        }
    }

    [Fact]
    public void Readme_EveryCommandLine_UsesOnlyOptionsItsCommandTakes()
    {
        string readme = File.ReadAllText(Path.Combine(Fixtures.RepositoryRoot, "README.md"));
        int checkedLines = 0;
        foreach (Match line in ReadmeCommandPattern().Matches(readme))
        {
            string name = line.Groups[1].Value;
            ICommand? command = CliApp.Commands.FirstOrDefault(c => c.Name == name);
            Assert.True(command is not null, $"README runs 'qwensharp {name}', which is no command");
            HashSet<string> accepted = [.. command.Options.Select(o => o.Name), "help"];
            foreach (Match option in OptionPattern().Matches(line.Groups[2].Value))
            {
                Assert.True(accepted.Contains(option.Groups[1].Value), $"README: qwensharp {name} ... --{option.Groups[1].Value}: not an option of {name}");
            }

            checkedLines++;
        }

        Assert.True(checkedLines >= 10, $"only {checkedLines} command lines found in README.md");
    }

    [Fact]
    public void Generate_PromptLongerThanTheContext_NothingOnStdout()
    {
        CliRunner.Result result = CliRunner.Run("generate", "--prompt", string.Concat(Enumerable.Repeat("Once upon a time ", 200)));

        AssertBadInput(result, "more than the context of 512");
        Assert.Equal("", result.Stdout);
    }

    [Fact]
    public async Task Generate_ReaderClosesStdout_StopsAndExitsQuietly()
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string arg in new[] { Path.Combine(AppContext.BaseDirectory, "qwensharp.dll"), "generate", "--prompt", "Once upon a time", "--max-new-tokens", "100000", "--ignore-eos", "--context", "512" })
        {
            start.ArgumentList.Add(arg);
        }

        // The demo model writes its whole context in well under a second either way, so what tells a quiet stop
        // from a crash into the closed pipe is the exit code and an empty stderr.
        using Process process = Process.Start(start)!;
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        var buffer = new char[20];
        process.StandardOutput.ReadBlock(buffer, 0, buffer.Length);
        process.StandardOutput.Close();
        Assert.True(process.WaitForExit(60_000), "generate still runs a minute after its reader left");

        Assert.Equal(0, process.ExitCode);
        Assert.DoesNotContain("error", await stderr, StringComparison.Ordinal);
        Assert.Equal("Once upon a time", new string(buffer, 0, 16));
    }

    [Fact]
    public void Files_FolderStdinAndModelFile_AreUnderstood()
    {
        AssertBadInput(CliRunner.Run("score", "--file", Fixtures.TempDirectory()), "is a folder; a file is needed here (or - for standard input)");
        AssertBadInput(CliRunner.Run("generate", "--model", Fixtures.File("tiny-qwen2", "config.json"), "--prompt-ids", "1"),
            "config.json is a file but not a GGUF file: pass the model folder (the one with config.json and the *.safetensors) or a .gguf file");

        var start = new ProcessStartInfo("dotnet") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string arg in new[] { Path.Combine(AppContext.BaseDirectory, "qwensharp.dll"), "tokenize", "--file", "-", "--json" })
        {
            start.ArgumentList.Add(arg);
        }

        using Process process = Process.Start(start)!;
        process.StandardInput.Write("Once upon a time");
        process.StandardInput.Close();
        string stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        CliRunner.Result direct = CliRunner.Run("tokenize", "Once upon a time", "--json");
        Assert.Equal(0, process.ExitCode);
        Assert.Equal(direct.Stdout.Trim(), stdout.Trim());
    }

    [Fact]
    public void GenerationConfig_ValueOfTheWrongType_NamesKeyValueAndType()
    {
        string dir = TinyCheckpoint.Write();
        File.WriteAllText(Path.Combine(dir, "generation_config.json"), """{"temperature": "hot", "top_k": 20}""");

        AssertBadInput(CliRunner.Run("generate", "--model", dir, "--prompt-ids", "1"), "generation_config.json (line 1): 'temperature' is \"hot\", expected a number");
    }

    [Theory]
    [InlineData("1,,2", "--prompt-ids '1,,2': item 2 is empty")]
    [InlineData("1,2,", "--prompt-ids '1,2,': item 3 is empty")]
    [InlineData(",", "--prompt-ids ',' holds no token ids")]
    public void PromptIds_EmptyItems_Refused(string ids, string message) =>
        AssertBadInput(CliRunner.Run("generate", "--prompt-ids", ids), message);

    [Fact]
    public void Context_BeyondMaxPositionEmbeddings_RefusedByEveryCommand()
    {
        string story = Path.Combine(Fixtures.TempDirectory(), "story.txt");
        File.WriteAllText(story, "Once upon a time.");
        const string Message = "--context 100000 is more than the model's max_position_embeddings (512)";
        AssertBadInput(CliRunner.Run("generate", "--prompt-ids", "1", "--context", "100000"), Message);
        AssertBadInput(CliRunner.Run("perplexity", "--file", story, "--context", "100000"), Message);
        AssertBadInput(CliRunner.RunWithInput("hi\n", "chat", "--model", TestTokenizers.TinyQwenWithTokenizer, "--context", "100000"),
            "--context 100000 is more than the model's max_position_embeddings");
    }

    [SkippableTheory]
    [MemberData(nameof(TestBackends.DevicesData), MemberType = typeof(TestBackends))]
    public void Generate_NonFiniteLogits_StopsNamingTheStep(string device)
    {
        TestBackends.RequireDevice(device);
        string dir = TinyCheckpoint.Write(fill: ("model.norm.weight", float.NaN));

        AssertBadInput(CliRunner.Run("generate", "--model", dir, "--prompt-ids", "1,2", "--greedy", "--device", device),
            "the model's logits at position 1 (token 2, sequence slot 0) are not finite (NaN or infinity): the weights may be corrupt");
    }

    [Fact]
    public void Generate_OneNewToken_PrintsNoDecodeSpeed()
    {
        CliRunner.Result result = CliRunner.Run("generate", "--prompt-ids", "1", "--greedy", "--max-new-tokens", "1");

        Assert.Equal(0, result.ExitCode);
        Assert.Contains("prefill", result.Stderr);
        Assert.DoesNotContain("decode", result.Stderr);
        Assert.Contains("(JIT build: includes compiling the code)", result.Stderr);   // the tests run the JIT build
    }

    [Fact]
    public void Generate_Batch_LabelsEachSequenceWithItsPrompt()
    {
        CliRunner.Result result = CliRunner.Run("generate", "--prompt", "Lily", "--prompt-ids", "1", "--num-return-sequences", "2", "--temperature", "1", "--seed", "3", "--max-new-tokens", "4");

        string[] lines = result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(["[prompt 1, #1]", "[prompt 1, #2]", "[prompt 2, #1]", "[prompt 2, #2]"], lines.Select(l => l[..(l.IndexOf(']', StringComparison.Ordinal) + 1)]));
    }

    [Fact]
    public void Score_Text_ShowsEachTokensText()
    {
        CliRunner.Result result = CliRunner.Run("score", "--prompt-ids", "1,403,407", "--top", "1");

        // Each token's own piece, as llama.cpp prints it: sentencepiece's ▁ is the word's space.
        Assert.Contains("1 \"<s>\" -> 403 \" Once\"", result.Stdout);
        Assert.Contains("403 \" Once\" -> 407 \" upon\"", result.Stdout);
    }

    [Fact]
    public void Readme_LibraryExample_IsTheSampleProgramVerbatim()
    {
        // samples/QuickStart is built with the solution (and against the packed packages in CI), so README's copy runs as written.
        string readme = File.ReadAllText(Path.Combine(Fixtures.RepositoryRoot, "README.md"));
        string sample = File.ReadAllText(Path.Combine(Fixtures.RepositoryRoot, "samples", "QuickStart", "Program.cs"));

        Assert.Contains("```csharp\n" + sample + "```", readme, StringComparison.Ordinal);
    }

    [GeneratedRegex(@"(?<![\w-])--([a-z][a-z0-9-]*)")]
    private static partial Regex OptionPattern();

    [GeneratedRegex(@"^(?:out/)?qwensharp\s+([a-z]+)\b([^\n]*)$", RegexOptions.Multiline)]
    private static partial Regex ReadmeCommandPattern();
}
