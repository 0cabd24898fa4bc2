using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Cli;

/// <summary>Every kind of bad input: exit code 2 and one clear line on stderr naming what is wrong, never a stack trace.</summary>
public sealed class CliErrorTests
{
    private static void AssertBadInput(CliRunner.Result result, string expected)
    {
        Assert.Equal(2, result.ExitCode);
        string line = Assert.Single(result.ErrorLines);
        Assert.True(line.Contains(expected, StringComparison.Ordinal), $"expected \"{expected}\" in: {line}");
        Assert.DoesNotContain("Exception", line);
        Assert.DoesNotContain(".cs:line", line);
    }

    private static string ModelWithConfig(string config)
    {
        string dir = TinyCheckpoint.Write();
        File.WriteAllText(Path.Combine(dir, "config.json"), config);
        return dir;
    }

    [Fact]
    public void MissingModelFolderOrFile()
    {
        AssertBadInput(CliRunner.Run("generate", "--model", "/no/such/model", "--prompt-ids", "1", "--greedy"), "model folder '/no/such/model' not found");
        AssertBadInput(CliRunner.Run("generate", "--model", "/no/such/model.gguf", "--prompt-ids", "1", "--greedy"), "GGUF file '/no/such/model.gguf' not found");
        AssertBadInput(CliRunner.Run("generate", "--model", "/no/such/model.gguf", "--prompt", "hi", "--greedy"), "/no/such/model.gguf: GGUF file not found");
    }

    [Fact]
    public void MissingConfigFile()
    {
        string dir = Fixtures.TempDirectory();
        AssertBadInput(CliRunner.Run("score", "--model", dir, "--prompt-ids", "1,2"), "config.json: file not found");
    }

    [Fact]
    public void MissingSafetensors()
    {
        string dir = Fixtures.TempDirectory();
        File.WriteAllText(Path.Combine(dir, "config.json"), TinyCheckpoint.Config);
        AssertBadInput(CliRunner.Run("info", "--model", dir), "no model.safetensors or model.safetensors.index.json");
    }

    [Fact]
    public void UnsupportedModelType() =>
        AssertBadInput(CliRunner.Run("info", "--model", ModelWithConfig(TinyCheckpoint.Config.Replace("\"qwen2\"", "\"mamba\"", StringComparison.Ordinal))),
            "config.json: model_type 'mamba' is not supported");

    [Fact]
    public void CorruptConfigJson() =>
        AssertBadInput(CliRunner.Run("info", "--model", ModelWithConfig("{\"model_type\": \"qwen2\", ")), "config.json: invalid JSON");

    [Fact]
    public void TruncatedSafetensors()
    {
        string dir = TinyCheckpoint.Write();
        string file = Path.Combine(dir, "model.safetensors");
        byte[] bytes = File.ReadAllBytes(file);
        File.WriteAllBytes(file, bytes[..^100]);
        AssertBadInput(CliRunner.Run("generate", "--model", dir, "--prompt-ids", "1", "--greedy"), "model.safetensors: tensor 'model.layers.0.mlp.down_proj.weight': data_offsets [2176, 2560] lie outside the data area of 2492 bytes");
    }

    [Fact]
    public void GarbageSafetensors()
    {
        string dir = TinyCheckpoint.Write();
        File.WriteAllText(Path.Combine(dir, "model.safetensors"), "this is not a safetensors file at all");
        AssertBadInput(CliRunner.Run("info", "--model", dir), "model.safetensors: header length");
    }

    [Fact]
    public void MissingTensor() =>
        AssertBadInput(CliRunner.Run("info", "--model", TinyCheckpoint.Write(skip: "model.layers.0.mlp.up_proj.weight")),
            "model.safetensors: tensor 'model.layers.0.mlp.up_proj.weight' not found");

    [Fact]
    public void WrongShape() =>
        AssertBadInput(CliRunner.Run("info", "--model", TinyCheckpoint.Write(reshape: ("model.embed_tokens.weight", [15, 8]))),
            "tensor 'model.embed_tokens.weight' has shape [15, 8], expected [16, 8] (vocab_size, hidden_size)");

    [Fact]
    public void TokenIdOutsideVocabulary() =>
        AssertBadInput(CliRunner.Run("generate", "--prompt-ids", "1,512", "--greedy"),
            "token id 512 at index 1 is outside the vocabulary (vocab_size is 512, ids 0..511)");

    [Fact]
    public void ScoredTokenOutsideVocabulary() =>
        AssertBadInput(CliRunner.Run("score", "--prompt-ids", "1,9999", "--json"), "token id 9999 at index 1 is outside the vocabulary");

    [Fact]
    public void PromptLongerThanContext() =>
        AssertBadInput(CliRunner.Run("generate", "--prompt-ids", "1,2,3,4", "--context", "3", "--greedy"), "prompt has 4 tokens, more than the context of 3");

    [Fact]
    public void ScoredSequenceLongerThanModelContext() =>
        AssertBadInput(CliRunner.Run("score", "--prompt-ids", string.Join(",", Enumerable.Repeat(1, 513))),
            "the sequence has 513 tokens, more than the model's context of 512 (max_position_embeddings)");

    [Fact]
    public void UnknownOption() =>
        AssertBadInput(CliRunner.Run("generate", "--prompt-ids", "1", "--frobnicate"), "unknown option '--frobnicate' for 'generate'");

    [Theory]
    [InlineData("generate", "--n-gpu-layers", "99", "unknown option '--n-gpu-layers' for 'generate' (see qwensharp generate --help; llama.cpp's --n-gpu-layers is --gpu-layers here)")]
    [InlineData("generate", "-ngl", "99", "unexpected argument '-ngl' (options start with --; see qwensharp generate --help; llama.cpp's -ngl is --gpu-layers here)")]
    [InlineData("generate", "--ctx-size", "2048", "unknown option '--ctx-size' for 'generate' (see qwensharp generate --help; llama.cpp's --ctx-size is --context here)")]
    [InlineData("generate", "--top-nsigma", "1", "unknown option '--top-nsigma' for 'generate' (see qwensharp generate --help; llama.cpp's --top-nsigma is --top-n-sigma here)")]
    [InlineData("generate", "--mirostat-lr", "0.2", "unknown option '--mirostat-lr' for 'generate' (see qwensharp generate --help; llama.cpp's --mirostat-lr is --mirostat-eta here)")]
    [InlineData("serve", "--cache-type-k", "q8_0", "unknown option '--cache-type-k' for 'serve' (see qwensharp serve --help; llama.cpp's --cache-type-k is --kv-cache-type here, one type for keys and values)")]
    [InlineData("generate", "-fa", "on", "unexpected argument '-fa' (options start with --; see qwensharp generate --help; llama.cpp's -fa has no counterpart: attention is always the fused kind here (an online softmax over the KV cache, on the CPU and the GPU); leave it out)")]
    [InlineData("serve", "--mlock", "x", "unknown option '--mlock' for 'serve' (see qwensharp serve --help; llama.cpp's --mlock has no counterpart: weights are memory-mapped and read where they lie; leave it out)")]
    [InlineData("serve", "--alias", "coder", "unknown option '--alias' for 'serve' (see qwensharp serve --help; llama.cpp's --alias is --name here)")]
    [InlineData("generate", "-mg", "1", "unexpected argument '-mg' (options start with --; see qwensharp generate --help; llama.cpp's -mg is --device here (gpu:N picks a GPU of qwensharp devices))")]
    [InlineData("generate", "-j", "{}", "unexpected argument '-j' (options start with --; see qwensharp generate --help; llama.cpp's -j is --json-schema here)")]
    [InlineData("score", "--temp", "0.7", "unknown option '--temp' for 'score' (see qwensharp score --help)")]    // no sampling in score: no hint
    public void LlamaCppOptionName_SaysWhichOptionToWrite(string command, string option, string value, string message)
    {
        CliRunner.Result result = command == "serve" ? CliRunner.Run(command, option, value) : CliRunner.Run(command, "--prompt-ids", "1", option, value);
        Assert.Equal(2, result.ExitCode);
        Assert.Equal($"qwensharp {command}: error: {message}", Assert.Single(result.ErrorLines));
    }

    [Fact]
    public void BadNumber() =>
        AssertBadInput(CliRunner.Run("generate", "--prompt-ids", "1", "--greedy", "--max-new-tokens", "lots"), "--max-new-tokens 'lots' is not an integer >= 0");

    [Theory]
    [InlineData("15", "--logit-bias '15' is not a token id followed by + or - and a bias up to 100 (15043+1, 13-100)")]
    [InlineData("x+1", "--logit-bias 'x+1' is not a token id followed by + or - and a bias up to 100 (15043+1, 13-100)")]
    [InlineData("5+101", "--logit-bias '5+101' is not a token id followed by + or - and a bias up to 100 (15043+1, 13-100)")]
    [InlineData("512+1", "logit_bias names token 512, outside the model's vocabulary of 512")]
    public void BadLogitBias(string bias, string message) =>
        AssertBadInput(CliRunner.Run("generate", "--prompt-ids", "1", "--greedy", "--logit-bias", bias), message);

    [Fact]
    public void JsonObjectWithBeams() =>
        AssertBadInput(CliRunner.Run("generate", "--prompt-ids", "1", "--num-beams", "2", "--json-object"), "--json-object does not apply to beam search here");

    [Fact]
    public void UnsupportedJsonSchema()
    {
        string file = Path.Combine(Fixtures.TempDirectory(), "s.json");
        File.WriteAllText(file, """{"type": "object", "properties": {"name": {"type": "string", "pattern": "^(?=A)"}}}""");
        AssertBadInput(CliRunner.Run("generate", "--model", TestTokenizers.TinyQwenWithTokenizer, "--prompt", "x", "--json-schema", file),
            "s.json: schema.properties.name.pattern: lookarounds are not supported (at character 2 of the pattern)");
    }

    [Fact]
    public void BadTokenId() =>
        AssertBadInput(CliRunner.Run("generate", "--prompt-ids", "1,two", "--greedy"), "--prompt-ids: 'two' (item 2) is not a token id");

    [Fact]
    public void MissingValue() =>
        AssertBadInput(CliRunner.Run("score", "--prompt-ids"), "--prompt-ids needs a value");

    [Fact]
    public void UnknownCommand() =>
        AssertBadInput(CliRunner.Run("frobnicate"), "unknown command 'frobnicate'");

    [Fact]
    public void BenchConfigWithoutRandomWeights() =>
        AssertBadInput(CliRunner.Run("bench", "--config", Fixtures.File("tiny-qwen2", "config.json")), "--config needs --random-weights");

    [Fact]
    public void RealProcess_BadInput_ExitsWithCode2AndOneLine()
    {
        CliRunner.Result result = CliRunner.RunProcess("generate", "--prompt-ids", "1,700", "--greedy");
        AssertBadInput(result, "token id 700 at index 1 is outside the vocabulary");
    }
}
