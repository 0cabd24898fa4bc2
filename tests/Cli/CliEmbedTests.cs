using LLama.Native;
using QwenSharp.Tests.Engine;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Cli;

/// <summary><c>qwensharp embed</c> on the demo model against llama.cpp's embeddings of the same file, and its errors.</summary>
public sealed class CliEmbedTests
{
    private static float[] Vector(System.Text.Json.JsonElement json, int i) => [.. json.GetProperty("embeddings")[i].EnumerateArray().Select(v => v.GetSingle())];

    private static float[] LlamaCppOf(string text, LLamaPoolingType pooling, LLamaAttentionType attention = LLamaAttentionType.Causal) =>
        LlamaCpp.Embedding(GgufFixture.Write(Fixtures.DemoModel), TestTokenizers.Stories.Encode(text, addSpecialTokens: true), pooling, attention);

    private static void AssertClose(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double error = expected.Zip(actual, (a, b) => (double)Math.Abs(a - b)).Max();
        Assert.True(error <= 1e-5, $"{what}: differs from llama.cpp's by {error:E3}");
    }

    [Fact]
    public void Json_IsLlamaCppsEmbeddings_AsTheModelOrTheOptionsSay()
    {
        string file = Path.Combine(Fixtures.TempDirectory(), "texts.txt");
        File.WriteAllText(file, "Once upon a time\r\n\nThe end.\n");

        CliRunner.Result byDefault = CliRunner.Run(["embed", "--model", Fixtures.DemoModel, "--file", file, "--text", "Lily", "--json"]);
        CliRunner.Result mean = CliRunner.Run(["embed", "--model", Fixtures.DemoModel, "Once upon a time", "--pooling", "mean", "--no-normalize", "--json"]);
        CliRunner.Result first8 = CliRunner.Run(["embed", "--model", Fixtures.DemoModel, "Once upon a time", "--dimensions", "8", "--json"]);
        CliRunner.Result nonCausal = CliRunner.Run(["embed", "--model", Fixtures.DemoModel, "Once upon a time", "--pooling", "mean", "--no-normalize", "--attention", "non-causal", "--json"]);

        Assert.True(byDefault.ExitCode == 0, byDefault.Stderr);
        Assert.Equal("last", byDefault.Json.GetProperty("pooling").GetString());
        Assert.True(byDefault.Json.GetProperty("normalized").GetBoolean());
        Assert.Equal(3, byDefault.Json.GetProperty("embeddings").GetArrayLength());
        string[] texts = ["Once upon a time", "The end.", "Lily"];
        for (int i = 0; i < texts.Length; i++)
        {
            AssertClose(EmbeddingTests.Normalized(LlamaCppOf(texts[i], LLamaPoolingType.Last)), Vector(byDefault.Json, i), $"text {i}");
            Assert.Equal(TestTokenizers.Stories.Encode(texts[i], addSpecialTokens: true).Length, byDefault.Json.GetProperty("tokens")[i].GetInt32());
        }

        Assert.True(mean.ExitCode == 0, mean.Stderr);
        Assert.False(mean.Json.GetProperty("normalized").GetBoolean());
        AssertClose(LlamaCppOf(texts[0], LLamaPoolingType.Mean), Vector(mean.Json, 0), "mean, not normalized");

        Assert.True(nonCausal.ExitCode == 0, nonCausal.Stderr);
        Assert.Equal("non-causal", nonCausal.Json.GetProperty("attention").GetString());
        Assert.Equal("causal", mean.Json.GetProperty("attention").GetString());
        AssertClose(LlamaCppOf(texts[0], LLamaPoolingType.Mean, LLamaAttentionType.NonCausal), Vector(nonCausal.Json, 0), "mean, non-causal");

        Assert.True(first8.ExitCode == 0, first8.Stderr);
        Assert.Equal(8, first8.Json.GetProperty("dimensions").GetInt32());
        AssertClose(EmbeddingTests.Normalized(LlamaCppOf(texts[0], LLamaPoolingType.Last)[..8]), Vector(first8.Json, 0), "the first 8, normalized");
    }

    [Fact]
    public void Text_PrintsAVectorPerLine_ThenTheCosineSimilarities()
    {
        CliRunner.Result result = CliRunner.Run(["embed", "--model", Fixtures.DemoModel, "--text", "Once upon a time", "--text", "Once upon a time"]);

        Assert.True(result.ExitCode == 0, result.Stderr);
        string[] lines = result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("# 2 embedding(s) of 64 values, last pooling, normalized", lines[0]);
        Assert.Equal(64, lines[1].Split(' ').Length - 1);
        Assert.Equal(lines[1][2..], lines[2][2..]);
        Assert.Equal("# cosine similarity", lines[3]);
        Assert.Equal("1.0000 1.0000", lines[4]);
    }

    [Fact]
    public void AFileOfManyLines_StreamsInGroups_WithoutTheSimilarities()
    {
        string file = Path.Combine(Fixtures.TempDirectory(), "many.txt");
        string[] lines = [.. Enumerable.Range(0, 300).Select(i => $"Tom saw {i} birds in the park.")];
        File.WriteAllLines(file, lines);

        CliRunner.Result json = CliRunner.Run(["embed", "--model", Fixtures.DemoModel, "--file", file, "--json"]);
        CliRunner.Result text = CliRunner.Run(["embed", "--model", Fixtures.DemoModel, "--file", file]);

        Assert.True(json.ExitCode == 0, json.Stderr);
        Assert.Equal(300, json.Json.GetProperty("embeddings").GetArrayLength());
        Assert.Equal(300, json.Json.GetProperty("tokens").GetArrayLength());
        foreach (int i in (int[])[0, 255, 256, 299])
        {
            AssertClose(EmbeddingTests.Normalized(LlamaCppOf(lines[i], LLamaPoolingType.Last)), Vector(json.Json, i), $"line {i}");
        }

        string[] output = text.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(301, output.Length);
        Assert.StartsWith("299: ", output[^1], StringComparison.Ordinal);
        Assert.DoesNotContain("# cosine similarity", text.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void InfoAndEmbed_FollowTheFoldersSentenceTransformersFiles()
    {
        string folder = EmbeddingTests.DemoWith(EmbeddingTests.Modules("Transformer", "Pooling"), EmbeddingTests.Pooling("pooling_mode_mean_tokens"));

        CliRunner.Result info = CliRunner.Run(["info", "--model", folder, "--json"]);
        CliRunner.Result demo = CliRunner.Run(["info", "--model", Fixtures.DemoModel]);
        CliRunner.Result embed = CliRunner.Run(["embed", "--model", folder, "Once upon a time", "--json"]);

        Assert.True(info.ExitCode == 0, info.Stderr);
        Assert.Equal("mean", info.Json.GetProperty("embedding_pooling").GetString());
        Assert.False(info.Json.GetProperty("embedding_normalized").GetBoolean());
        Assert.Equal(System.Text.Json.JsonValueKind.Null, info.Json.GetProperty("embedding_unsupported").ValueKind);
        Assert.Contains("embeddings    last pooling, normalized (the default)", demo.Stdout, StringComparison.Ordinal);
        Assert.True(embed.ExitCode == 0, embed.Stderr);
        AssertClose(LlamaCppOf("Once upon a time", LLamaPoolingType.Mean), Vector(embed.Json, 0), "the folder's mean, not normalized");

        string prompts = EmbeddingTests.DemoWith(EmbeddingTests.Prompts(defaultName: null));
        CliRunner.Result query = CliRunner.Run(["embed", "--model", prompts, "Once upon a time", "--prompt-name", "query", "--json"]);
        CliRunner.Result unknown = CliRunner.Run(["embed", "--model", prompts, "Once upon a time", "--prompt-name", "passage"]);
        Assert.True(query.ExitCode == 0, query.Stderr);
        AssertClose(EmbeddingTests.Normalized(LlamaCppOf(EmbeddingTests.QueryPrompt + "Once upon a time", LLamaPoolingType.Last)), Vector(query.Json, 0), "--prompt-name query");
        CliRunner.Result info2 = CliRunner.Run(["info", "--model", prompts, "--json"]);
        Assert.Equal(EmbeddingTests.QueryPrompt, info2.Json.GetProperty("embedding_prompts").GetProperty("query").GetString());
        Assert.Equal(System.Text.Json.JsonValueKind.Null, info2.Json.GetProperty("embedding_default_prompt").ValueKind);
        Assert.Contains("prompts document, query", CliRunner.Run(["info", "--model", prompts]).Stdout, StringComparison.Ordinal);
        string shortModel = EmbeddingTests.DemoWith(("sentence_bert_config.json", """{"max_seq_length": 4}"""));
        CliRunner.Result cut = CliRunner.Run(["embed", "--model", shortModel, "Once upon a time there was a girl", "--truncate", "--json"]);
        Assert.True(cut.ExitCode == 0, cut.Stderr);
        Assert.Equal(4, cut.Json.GetProperty("tokens")[0].GetInt32());
        AssertClose(EmbeddingTests.Normalized(LlamaCpp.Embedding(GgufFixture.Write(Fixtures.DemoModel),
            TestTokenizers.Stories.Encode("Once upon a time there was a girl", addSpecialTokens: true)[..4], LLamaPoolingType.Last)), Vector(cut.Json, 0), "--truncate to 4");
        Assert.Equal(2, unknown.ExitCode);
        Assert.Contains("prompt name 'passage' is not one of the model's prompts", Assert.Single(unknown.ErrorLines), StringComparison.Ordinal);
    }

    public static TheoryData<string[], string> BadUsage() => new()
    {
        { ["embed"], "embed needs a text" },
        { ["embed", "--text", ""], "text 0 is empty" },
        { ["embed", "x", "--pooling", "max"], "--pooling max: expected last, mean or cls" },
        { ["embed", "x", "--dimensions", "65"], "--dimensions '65' is not an integer from 1 to 64" },
        { ["embed", "--file", "/nonexistent/texts.txt"], "/nonexistent/texts.txt" },
        { ["embed", "x", "--attention", "both"], "--attention 'both' is not one of causal, non-causal" },
    };

    [Theory]
    [MemberData(nameof(BadUsage))]
    public void BadUsage_ExitsTwoWithOneLine(string[] args, string message)
    {
        CliRunner.Result result = CliRunner.Run(args);

        Assert.Equal(2, result.ExitCode);
        Assert.Contains(message, Assert.Single(result.ErrorLines), StringComparison.Ordinal);
    }
}
