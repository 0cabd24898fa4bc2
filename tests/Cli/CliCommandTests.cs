using System.Text.Json;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Cli;

/// <summary>The CLI contract of ARCHITECTURE.md: option names, JSON shapes and exit codes that scripts depend on.</summary>
public sealed class CliCommandTests
{
    [Fact]
    public void Generate_DemoModelGreedyJson_ReproducesLlama2c()
    {
        using var expected = Fixtures.Json("stories260K", "llama2c_expected_greedy_ids.json");
        int[] llama2c = [.. expected.RootElement.EnumerateArray().Select(e => e.GetInt32())];

        CliRunner.Result result = CliRunner.Run("generate", "--prompt-ids", "1", "--max-new-tokens", "20", "--greedy", "--json");

        Assert.Equal(0, result.ExitCode);
        JsonElement sequence = Assert.Single(result.Json.GetProperty("sequences").EnumerateArray());
        Assert.Equal(llama2c[1..21], sequence.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal("length", sequence.GetProperty("stop_reason").GetString());
        Assert.True(result.Json.GetProperty("prefill_tokens_per_s").GetDouble() > 0);
        Assert.True(result.Json.GetProperty("decode_tokens_per_s").GetDouble() > 0);
    }

    [Fact]
    public void Generate_PromptLookup_ReproducesLlama2cAndSaysHowManyGuessesItTook()
    {
        using var expected = Fixtures.Json("stories260K", "llama2c_expected_greedy_ids.json");
        int[] llama2c = [.. expected.RootElement.EnumerateArray().Select(e => e.GetInt32())];

        CliRunner.Result result = CliRunner.Run("generate", "--prompt-ids", "1", "--max-new-tokens", "200", "--greedy", "--prompt-lookup", "6", "--json");

        Assert.Equal(0, result.ExitCode);
        JsonElement sequence = Assert.Single(result.Json.GetProperty("sequences").EnumerateArray());
        Assert.Equal(llama2c[1..201], sequence.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));
        int drafted = result.Json.GetProperty("lookup_drafted").GetInt32(), accepted = result.Json.GetProperty("lookup_accepted").GetInt32();
        Assert.InRange(accepted, 1, drafted - 1);
    }

    /// <summary>
    /// bench says how much memory the matrices repacked at load take besides their rows: Q4_0's panels hold 20 bytes per 32
    /// values (the codes' nibbles, an f32 scale). Every matrix of these random models is whole panels; an embedding table is
    /// repacked only where it is also the head (tied), since otherwise it is only gathered from.
    /// </summary>
    [Fact]
    public void Bench_SaysWhatTheRepackedPanelsTake()
    {
        long Repacked(params string[] model)
        {
            CliRunner.Result result = CliRunner.Run(["bench", .. model, "--quantize", "q4_0", "--prompt-tokens", "4", "--new-tokens", "2", "--threads", "1", "--json"]);
            Assert.True(result.ExitCode == 0, result.Stderr);
            return result.Json.GetProperty("weights_repacked_bytes").GetInt64();
        }

        // Untied: two layers of 589,824 values and a 512 × 256 head; the 512 × 256 embedding stays as stored. 20 bytes a row
        // per 32 values, 18 where the CPU keeps the panels' scales as f16 (AMD Zen 3).
        int blockBytes = PanelDecode.Scales(KernelPaths.Default) == PanelScales.F16 ? 18 : 20;
        Assert.Equal(((2 * 589_824) + 131_072) / 32 * blockBytes, Repacked("--model", RandomKQuantModel.Folder.Value));

        // Tied, one such layer: the table is the head too.
        string config = Path.Combine(Fixtures.TempDirectory(), "config.json");
        File.WriteAllText(config, """
            {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": 256, "intermediate_size": 512,
             "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512,
             "max_position_embeddings": 256, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": true}
            """);
        Assert.Equal((589_824 + 131_072) / 32 * blockBytes, Repacked("--config", config, "--random-weights"));
    }

    /// <summary>
    /// `--batch-invariant` reaches the CPU backend of the commands that build one (bench's backend line says so), and the Engine's
    /// (chat, serve); what it does is tested in Q8_0PanelsTests and PromptLookupTests.
    /// </summary>
    [Fact]
    public void BatchInvariant_ReachesTheCpuBackend()
    {
        string[] bench = ["bench", "--model", Fixtures.DemoModel, "--prompt-tokens", "4", "--new-tokens", "2", "--threads", "1", "--json"];
        string Backend(params string[] extra)
        {
            CliRunner.Result result = CliRunner.Run([.. bench, .. extra]);
            Assert.True(result.ExitCode == 0, result.Stderr);
            return result.Json.GetProperty("backend").GetString()!;
        }

        Assert.EndsWith(", batch-invariant", Backend("--batch-invariant"));
        Assert.DoesNotContain("batch-invariant", Backend());
        using QwenModel model = QwenModel.Load(Fixtures.DemoModel, new QwenModelOptions { Threads = 1, BatchInvariant = true });
        Assert.EndsWith(", batch-invariant", model.Model.Backend.Description);
    }

    [Fact]
    public void KvCacheType_ReachesTheCacheInfoAndBench()
    {
        long PerToken(params string[] extra)
        {
            CliRunner.Result result = CliRunner.Run(["info", "--model", Fixtures.DemoModel, "--json", .. extra]);
            Assert.True(result.ExitCode == 0, result.Stderr);
            return result.Json.GetProperty("kv_cache_bytes_per_token").GetInt64();
        }

        // stories260K: 5 layers of 4 KV heads of 8, keys and values.
        Assert.Equal(2 * 5 * 32 * 4, PerToken());
        Assert.Equal(2 * 5 * 32 * 2, PerToken("--kv-cache-type", "f16"));
        Assert.Equal(2 * 5 * 32 * 2, PerToken("--kv-cache-type", "bf16"));

        CliRunner.Result bench = CliRunner.Run(["bench", "--model", Fixtures.DemoModel, "--prompt-tokens", "4", "--new-tokens", "2", "--threads", "1", "--json", "--kv-cache-type", "bf16"]);
        Assert.True(bench.ExitCode == 0, bench.Stderr);
        Assert.Equal("bf16", bench.Json.GetProperty("kv_cache_type").GetString());
    }

    [Fact]
    public void Generate_KvCacheTypeUnknown_ExitsTwoNamingIt()
    {
        CliRunner.Result result = CliRunner.Run(["generate", "--prompt-ids", "1", "--max-new-tokens", "2", "--kv-cache-type", "q4_1"]);

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("--kv-cache-type 'q4_1' is not one of f32, f16, bf16, q8_0, q4_0", Assert.Single(result.ErrorLines), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("q8_0")]
    [InlineData("q4_0")]
    public void Generate_QuantizedKvCacheType_OnHeadsOfEight_ExitsTwoSayingWhy(string type)
    {
        CliRunner.Result result = CliRunner.Run(["generate", "--prompt-ids", "1", "--max-new-tokens", "2", "--kv-cache-type", type]);

        Assert.Equal(2, result.ExitCode);
        Assert.Equal($"qwensharp generate: error: --kv-cache-type {type}: a {type} KV cache stores each head in blocks of 32 values, and this model's heads have 8",
            Assert.Single(result.ErrorLines));
    }

    [Theory]
    [InlineData("--prompt-lookup '7' is not an integer from 1 to 6", "--prompt-lookup", "7")]
    [InlineData("--prompt-lookup does not apply to beam search", "--prompt-lookup", "2", "--num-beams", "2")]
    public void Generate_PromptLookupOutOfRange_ExitsTwoNamingIt(string message, params string[] args)
    {
        CliRunner.Result result = CliRunner.Run(["generate", "--prompt-ids", "1", "--max-new-tokens", "5", .. args]);

        Assert.Equal(2, result.ExitCode);
        Assert.Contains(message, Assert.Single(result.ErrorLines), StringComparison.Ordinal);
    }

    [Fact]
    public void Generate_LogitBias_BansAndForcesTokensAsLlamaCppSpellsIt()
    {
        using var expected = Fixtures.Json("stories260K", "llama2c_expected_greedy_ids.json");
        int[] llama2c = [.. expected.RootElement.EnumerateArray().Select(e => e.GetInt32())];
        int[] Ids(params string[] bias) => [.. CliRunner.Run(["generate", "--prompt-ids", "1", "--max-new-tokens", "3", "--greedy", "--json", .. bias.SelectMany(b => new[] { "--logit-bias", b })])
            .Json.GetProperty("sequences")[0].GetProperty("ids").EnumerateArray().Select(e => e.GetInt32())];

        int[] banned = Ids($"{llama2c[1]}-100");
        int[] forced = Ids("500+100", "7-3");

        Assert.NotEqual(llama2c[1], banned[0]);
        Assert.Equal([500, 500, 500], forced);
        Assert.Equal(llama2c[1..4], Ids());
    }

    [Fact]
    public void Generate_JsonObject_AnswersWithAnObjectThatEndsTheSequence()
    {
        string close = $"{TestTokenizers.Qwen.TokenToId("}")}+30";
        CliRunner.Result closed = CliRunner.Run("generate", "--model", TestTokenizers.TinyQwenWithTokenizer, "--chat", "JSON please", "--json-object",
            "--greedy", "--logit-bias", close, "--max-new-tokens", "30", "--json");
        CliRunner.Result free = CliRunner.Run("generate", "--model", TestTokenizers.TinyQwenWithTokenizer, "--chat", "JSON please",
            "--greedy", "--logit-bias", close, "--max-new-tokens", "3", "--json");

        Assert.Equal(0, closed.ExitCode);
        JsonElement sequence = closed.Json.GetProperty("sequences")[0];
        using (JsonDocument answer = JsonDocument.Parse(sequence.GetProperty("text").GetString()!))
        {
            Assert.Empty(answer.RootElement.EnumerateObject());
        }

        Assert.Equal("eos", sequence.GetProperty("stop_reason").GetString());
        // Without the rule the same bias just repeats the brace.
        Assert.Equal("}}}", free.Json.GetProperty("sequences")[0].GetProperty("text").GetString());
    }

    [Fact]
    public void Generate_JsonSchema_AnswersPassAnIndependentValidator()
    {
        const string Schema = """
            {"type": "object", "required": ["ok", "count"], "properties": {"ok": {"type": "boolean"}, "count": {"type": "integer"}}}
            """;
        string file = Path.Combine(Fixtures.TempDirectory(), "reading.schema.json");
        File.WriteAllText(file, Schema);

        CliRunner.Result result = CliRunner.Run("generate", "--model", TestTokenizers.TinyQwenWithTokenizer, "--chat", "JSON please", "--json-schema", file,
            "--temperature", "1", "--seed", "3", "--num-return-sequences", "3", "--max-new-tokens", "200", "--json");

        Assert.Equal(0, result.ExitCode);
        Json.Schema.JsonSchema validator = Json.Schema.JsonSchema.FromText(Schema);
        foreach (JsonElement sequence in result.Json.GetProperty("sequences").EnumerateArray())
        {
            using JsonDocument answer = JsonDocument.Parse(sequence.GetProperty("text").GetString()!);
            Assert.True(validator.Evaluate(answer.RootElement).IsValid, sequence.GetProperty("text").GetString());
            Assert.Equal("eos", sequence.GetProperty("stop_reason").GetString());
        }
    }

    [Fact]
    public void Generate_ChoiceAndRegex_AnswersArePlainTextHeldToThem()
    {
        CliRunner.Result choice = CliRunner.Run("generate", "--model", TestTokenizers.TinyQwenWithTokenizer, "--chat", "Sentiment?", "--choice", "positive",
            "--choice", "very positive", "--choice", "négatif", "--temperature", "1.5", "--seed", "3", "--num-return-sequences", "4", "--max-new-tokens", "16", "--json");
        CliRunner.Result regex = CliRunner.Run("generate", "--model", TestTokenizers.TinyQwenWithTokenizer, "--prompt", "Code:", "--regex", @"\d{3}-[A-Z]{2}",
            "--temperature", "1.5", "--seed", "3", "--num-return-sequences", "4", "--max-new-tokens", "16", "--json");

        Assert.Equal(0, choice.ExitCode);
        Assert.All(choice.Json.GetProperty("sequences").EnumerateArray(), s => Assert.Contains(s.GetProperty("text").GetString(), new[] { "positive", "very positive", "négatif" }));
        Assert.Equal(0, regex.ExitCode);
        Assert.All(regex.Json.GetProperty("sequences").EnumerateArray(), s => Assert.Matches(@"^\d{3}-[A-Z]{2}\z", s.GetProperty("text").GetString()!));
    }

    /// <summary>--json-schema takes the schema inline too, as llama.cpp's -j does; a bad one is named as the option.</summary>
    [Fact]
    public void Generate_InlineJsonSchema_HoldsTheAnswer()
    {
        const string Schema = """{"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": false}""";
        CliRunner.Result held = CliRunner.Run("generate", "--model", TestTokenizers.TinyQwenWithTokenizer, "--prompt", "JSON:", "--json-schema", Schema,
            "--temperature", "1.5", "--seed", "2", "--num-return-sequences", "3", "--max-new-tokens", "24", "--json");
        CliRunner.Result broken = CliRunner.Run("generate", "--model", TestTokenizers.TinyQwenWithTokenizer, "--prompt", "x", "--json-schema", "{\"type\": ");
        CliRunner.Result refused = CliRunner.Run("generate", "--model", TestTokenizers.TinyQwenWithTokenizer, "--prompt", "x", "--json-schema", """{"type": "object", "not": {}}""");

        Assert.Equal(0, held.ExitCode);
        Assert.All(held.Json.GetProperty("sequences").EnumerateArray(), s =>
            Assert.Matches(@"^\{\s*""ok""\s*:\s*(true|false)\s*\}$", s.GetProperty("text").GetString()!));
        Assert.Equal(2, broken.ExitCode);
        Assert.StartsWith("--json-schema: the schema given inline is not valid JSON", Assert.Single(broken.ErrorLines).Split("error: ")[1], StringComparison.Ordinal);
        Assert.Equal(2, refused.ExitCode);
        Assert.StartsWith("--json-schema: ", Assert.Single(refused.ErrorLines).Split("error: ")[1], StringComparison.Ordinal);
    }

    /// <summary>llama.cpp's --grammar and --grammar-file (GBNF; a file's byte-order mark is not part of the grammar).</summary>
    [Fact]
    public void Generate_Grammar_AnswersArePlainTextTheGrammarAllows()
    {
        const string Grammar = "root ::= code (\" \" code)?\ncode ::= [0-9]{3} \"-\" [A-Z]{2}  # a comment";
        string file = Path.Combine(Fixtures.TempDirectory(), "code.gbnf");
        File.WriteAllText(file, Grammar, new System.Text.UTF8Encoding(encoderShouldEmitUTF8Identifier: true));

        foreach (string[] option in (string[][])[["--grammar", Grammar], ["--grammar-file", file]])
        {
            CliRunner.Result result = CliRunner.Run(["generate", "--model", TestTokenizers.TinyQwenWithTokenizer, "--prompt", "Code:", .. option,
                "--temperature", "1.5", "--seed", "3", "--num-return-sequences", "4", "--max-new-tokens", "16", "--json"]);

            Assert.Equal(0, result.ExitCode);
            Assert.All(result.Json.GetProperty("sequences").EnumerateArray(), s => Assert.Matches(@"^\d{3}-[A-Z]{2}( \d{3}-[A-Z]{2})?\z", s.GetProperty("text").GetString()!));
        }
    }

    [Fact]
    public void Generate_BadGrammar_IsOneLineNamingWhereAndExitCode2()
    {
        string file = Path.Combine(Fixtures.TempDirectory(), "bad.gbnf");
        File.WriteAllText(file, "root ::= answer\nanswer ::= [a-z\n");

        CliRunner.Result inline = CliRunner.Run("generate", "--model", TestTokenizers.TinyQwenWithTokenizer, "--prompt", "x", "--grammar", "root ::= foo");
        CliRunner.Result fromFile = CliRunner.Run("generate", "--model", TestTokenizers.TinyQwenWithTokenizer, "--prompt", "x", "--grammar-file", file);
        CliRunner.Result both = CliRunner.Run("generate", "--model", TestTokenizers.TinyQwenWithTokenizer, "--prompt", "x", "--grammar", "root ::= \"a\"", "--regex", "a");

        Assert.Equal(2, inline.ExitCode);
        Assert.Contains("--grammar: line 1, column 10: rule 'foo' is used but never defined", Assert.Single(inline.ErrorLines), StringComparison.Ordinal);
        Assert.Equal(2, fromFile.ExitCode);
        Assert.Contains($"{file}: line 2, column 12: this character class is never closed (a ']' is missing)", Assert.Single(fromFile.ErrorLines), StringComparison.Ordinal);
        Assert.Equal(2, both.ExitCode);
        Assert.Contains("give one", both.Stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--regex", "a(?=b)", "--regex: lookarounds are not supported")]
    [InlineData("--choice", "", "--choice: choice 0 is empty")]
    [InlineData("--json-object", null, "--json-object and --regex: give one")]
    public void Generate_BadChoiceOrRegex_IsOneLineAndExitCode2(string option, string? value, string message)
    {
        string[] rule = value is null ? [option, "--regex", "a"] : [option, value];
        CliRunner.Result result = CliRunner.Run(["generate", "--model", TestTokenizers.TinyQwenWithTokenizer, "--prompt", "x", .. rule]);

        Assert.Equal(2, result.ExitCode);
        Assert.Contains(message, result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Generate_MessagesWithTools_CallsOrAnswersAreHeld()
    {
        const string Parameters = """{"type": "object", "properties": {"fast": {"type": "boolean"}}, "required": ["fast"], "additionalProperties": false}""";
        const string Answer = """{"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": false}""";
        string folder = Fixtures.TempDirectory();
        string messages = Path.Combine(folder, "chat.json"), schema = Path.Combine(folder, "answer.schema.json");
        File.WriteAllText(messages, $$$"""
            {"messages": [{"role": "user", "content": "Check the gauge."}],
             "tools": [{"type": "function", "function": {"name": "check", "description": "Checks the gauge", "parameters": {{{Parameters}}}}}]}
            """);
        File.WriteAllText(schema, Answer);

        CliRunner.Result result = CliRunner.Run("generate", "--model", TestTokenizers.TinyQwenWithTokenizer, "--messages", messages, "--json-schema", schema,
            "--temperature", "1", "--seed", "5", "--num-return-sequences", "8", "--max-new-tokens", "120", "--json");

        Assert.Equal(0, result.ExitCode);
        int calls = 0, answers = 0;
        foreach (JsonElement sequence in result.Json.GetProperty("sequences").EnumerateArray())
        {
            string text = sequence.GetProperty("text").GetString()!;
            bool ended = sequence.GetProperty("stop_reason").GetString() == "eos";
            if (text.StartsWith("<tool_call>", StringComparison.Ordinal))
            {
                // One call or several (a messages file allows parallel calls), each whole and to the tool; a sequence the
                // token limit stopped may have begun one more.
                List<ToolCallBlock> blocks = ChatJson.ToolCallBlocks(text);
                Assert.NotEmpty(blocks);
                foreach (ToolCallBlock call in blocks)
                {
                    Assert.Equal("check", call.Name);
                    Assert.True(Json.Schema.JsonSchema.FromText(Parameters).Evaluate(JsonDocument.Parse(call.ArgumentsJson).RootElement).IsValid, text);
                }

                Assert.True(!ended || blocks[^1].End == text.Length, text);
                calls++;
            }
            else
            {
                Assert.True(ended, text);
                Assert.True(Json.Schema.JsonSchema.FromText(Answer).Evaluate(JsonDocument.Parse(text).RootElement).IsValid, text);
                answers++;
            }
        }

        Assert.True(calls > 0 && answers > 0, $"{calls} calls, {answers} answers");
    }

    [Fact]
    public void Generate_MessagesWithAStrictToolItCannotHold_IsRefusedByName()
    {
        string messages = Path.Combine(Fixtures.TempDirectory(), "chat.json");
        File.WriteAllText(messages, """
            {"messages": [{"role": "user", "content": "Hi"}],
             "tools": [{"type": "function", "function": {"name": "f", "strict": true, "parameters": {"type": "object", "properties": {"n": {"not": {"type": "null"}}}}}}]}
            """);

        CliRunner.Result result = CliRunner.Run("generate", "--model", TestTokenizers.TinyQwenWithTokenizer, "--messages", messages, "--max-new-tokens", "4");

        Assert.Equal(2, result.ExitCode);
        Assert.Contains($"{messages}: tools[0].function.parameters: tool 'f' is strict", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("'not'", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Generate_RepeatedPromptIds_OneSequencePerPromptInOrder()
    {
        Reference reference = Reference.Load("tiny-qwen2");
        string prompt = string.Join(",", reference.PromptIds);

        CliRunner.Result result = CliRunner.Run("generate", "--model", Fixtures.Directory("tiny-qwen2"), "--prompt-ids", "151644,872",
            "--prompt-ids", prompt, "--greedy", "--ignore-eos", "--max-new-tokens", "5", "--json");

        Assert.Equal(0, result.ExitCode);
        JsonElement[] sequences = [.. result.Json.GetProperty("sequences").EnumerateArray()];
        Assert.Equal(2, sequences.Length);
        Assert.Equal(reference.GreedyNewIds[..5], sequences[1].GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));
    }

    [Fact]
    public void Score_Json_MatchesReferenceNextTokenLogprobsAndNll()
    {
        Reference reference = Reference.Load("tiny-qwen2-f16-sharded");

        CliRunner.Result result = CliRunner.Run("score", "--model", Fixtures.Directory("tiny-qwen2-f16-sharded"),
            "--prompt-ids", string.Join(",", reference.PromptIds), "--top", "3", "--json");

        Assert.Equal(0, result.ExitCode);
        JsonElement[] positions = [.. result.Json.GetProperty("positions").EnumerateArray()];
        Assert.Equal(reference.PromptIds.Length, positions.Length);
        for (int i = 0; i < positions.Length - 1; i++)
        {
            Assert.Equal(reference.PromptIds[i + 1], positions[i].GetProperty("id").GetInt32());
            Assert.Equal(reference.Positions[i].NextIdLogprob!.Value, positions[i].GetProperty("logprob").GetDouble(), 1e-3);
            JsonElement best = positions[i].GetProperty("top")[0];
            Assert.Equal(reference.Positions[i].TopIds[0], best.GetProperty("id").GetInt32());
            Assert.Equal(3, positions[i].GetProperty("top").GetArrayLength());
        }

        Assert.False(positions[^1].TryGetProperty("id", out _));
        Assert.Equal(reference.PromptMeanNll, result.Json.GetProperty("mean_nll").GetDouble(), 1e-4);
        Assert.Equal(1, result.Json.GetProperty("perplexity").GetDouble() / reference.PromptPerplexity, 1e-3);
    }

    [Fact]
    public void Info_DemoModel_DescribesArchitectureAndContext()
    {
        CliRunner.Result result = CliRunner.Run("info", "--json");

        Assert.Equal(0, result.ExitCode);
        Assert.Equal("LlamaForCausalLM", result.Json.GetProperty("architecture").GetString());
        Assert.Equal(512, result.Json.GetProperty("context_length").GetInt32());
        Assert.Equal(5 * 9 + 2, result.Json.GetProperty("dtypes").GetProperty("F32").GetInt32()); // 9 per layer, embedding, final norm; the head is tied
        Assert.True(result.Json.GetProperty("vector_bits").GetInt32() is 0 or 256 or 512);
        Assert.Equal(QwenSharp.Cpu.Kernels.CpuIdentity.Describe(), result.Json.GetProperty("cpu").GetString());
    }

    [Fact]
    public void Bench_RandomWeightsOfAConfig_ReportsBothSpeeds()
    {
        CliRunner.Result result = CliRunner.Run("bench", "--config", Fixtures.File("tiny-qwen2", "config.json"), "--random-weights",
            "--dtype", "f16", "--prompt-tokens", "8", "--new-tokens", "3", "--threads", "1", "--json");

        Assert.Equal(0, result.ExitCode);
        Assert.True(result.Json.GetProperty("prefill_tokens_per_s").GetDouble() > 0);
        Assert.True(result.Json.GetProperty("decode_tokens_per_s").GetDouble() > 0);
        Assert.Equal(3, result.Json.GetProperty("new_tokens").GetInt32());
        Assert.Equal("F16", result.Json.GetProperty("dtype").GetString());
    }

    [Fact]
    public void Bench_Sample_DrawsWithTheConfigsSettingsOrTransformersDefaults()
    {
        // A config folder without generation_config.json (random weights): --sample still draws, with transformers'
        // defaults; the demo model with its own (temperature 0.8, top-p 0.9). Without the flag, greedy.
        string[] common = ["--prompt-tokens", "4", "--new-tokens", "3", "--threads", "1", "--batch", "2"];
        CliRunner.Result random = CliRunner.Run(["bench", "--config", Fixtures.File("tiny-qwen2", "config.json"), "--random-weights", .. common, "--sample"]);
        CliRunner.Result json = CliRunner.Run(["bench", "--model", Fixtures.DemoModel, .. common, "--sample", "--json"]);
        CliRunner.Result greedy = CliRunner.Run(["bench", "--model", Fixtures.DemoModel, .. common, "--json"]);

        Assert.Equal(0, random.ExitCode);
        Assert.Contains("sampled (temperature 1, top-k 50, top-p 1, repetition penalty 1)", random.Stdout, StringComparison.Ordinal);
        Assert.True(json.Json.GetProperty("sampled").GetBoolean());
        Assert.False(greedy.Json.GetProperty("sampled").GetBoolean());
    }

    [Fact]
    public void Bench_Rounds_SetEachDecodeAgainstTheReadsEitherSide_AndReportTheMedianShare()
    {
        CliRunner.Result result = CliRunner.Run("bench", "--config", Fixtures.File("tiny-qwen2", "config.json"), "--random-weights",
            "--prompt-tokens", "4", "--new-tokens", "6", "--threads", "1", "--rounds", "3", "--json");

        Assert.Equal(0, result.ExitCode);
        Assert.Equal(3, result.Json.GetProperty("rounds").GetInt32());
        double[] shares = [.. result.Json.GetProperty("decode_fraction_of_read_bandwidth_by_round").EnumerateArray().Select(e => e.GetDouble())];
        Assert.Equal(3, shares.Length);
        Assert.All(shares, s => Assert.True(s > 0));
        Assert.Equal(shares.Order().ElementAt(1), result.Json.GetProperty("decode_fraction_of_read_bandwidth").GetDouble(), 1e-4);

        // Round i's share is its decode GB/s over the mean of read measurements i and i + 1 (one before it, one after).
        double[] reads = [.. result.Json.GetProperty("memory_read_gb_per_s_measured").EnumerateArray().Select(e => e.GetDouble())];
        double[] decodes = [.. result.Json.GetProperty("decode_gb_per_s_by_round").EnumerateArray().Select(e => e.GetDouble())];
        Assert.Equal(4, reads.Length);
        Assert.Equal(3, decodes.Length);
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(decodes[i] / ((reads[i] + reads[i + 1]) / 2), shares[i], 2e-3);
        }

        Assert.Equal(reads.Order().ElementAt(1), result.Json.GetProperty("memory_read_gb_per_s").GetDouble(), 1e-3);
        Assert.Equal(decodes.Order().ElementAt(1), result.Json.GetProperty("decode_gb_per_s").GetDouble(), 1e-3);
    }

    [Fact]
    public void BenchServe_Json_HasEveryLevel_AndOneStreamAllDecodingIsAtMostItsDecode()
    {
        // The demo model: its own tokenizer gives nearly every token text, so a chunk each.
        CliRunner.Result result = CliRunner.Run("bench", "--serve", "1,3", "--prompt-tokens", "4", "--new-tokens", "12", "--rounds", "1", "--threads", "1", "--json");

        Assert.Equal(0, result.ExitCode);
        JsonElement[] levels = [.. result.Json.GetProperty("levels").EnumerateArray()];
        Assert.Equal([1, 3], levels.Select(l => l.GetProperty("streams").GetInt32()));
        Assert.All(levels, l => Assert.True(l.GetProperty("tokens_per_s").GetDouble() > 0));

        // One stream's window of "every stream decoding" is its own decode: its tokens after the first over the same time,
        // fewer only when a token's text waits for the next (so never more). (The JSON itself once failed to write: a level
        // with no window gave an infinite ratio.)
        double decode = levels[0].GetProperty("decode_tokens_per_s").GetDouble();
        double steady = levels[0].GetProperty("steady_decode_tokens_per_s").GetDouble();
        Assert.InRange(steady, 0.5 * decode, decode * (1 + 1e-9));
    }

    [Theory]
    [InlineData("--help")]
    [InlineData("generate", "--help")]
    [InlineData("bench", "--help")]
    public void Help_PrintsUsageAndExitsZero(params string[] args)
    {
        CliRunner.Result result = CliRunner.Run(args);
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("usage: qwensharp", result.Stdout);
    }
}
