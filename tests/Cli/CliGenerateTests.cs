using System.Text.Json;
using System.Text.Json.Nodes;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Cli;

/// <summary>generate's sampling, stopping, batches and log-probs, through the command line on the demo model.</summary>
public sealed class CliGenerateTests
{
    private static int[] Ids(JsonElement array) => [.. array.EnumerateArray().Select(e => e.GetInt32())];

    private static JsonElement[] Sequences(CliRunner.Result result)
    {
        Assert.True(result.ExitCode == 0, result.Stderr);
        return [.. result.Json.GetProperty("sequences").EnumerateArray()];
    }

    [Fact]
    public void SameSeedSameText_TheSeedIsReported()
    {
        string[] args = ["generate", "--prompt", "Once upon a time", "--temperature", "1.3", "--max-new-tokens", "40", "--json"];
        CliRunner.Result first = CliRunner.Run([.. args, "--seed", "11"]);
        CliRunner.Result again = CliRunner.Run([.. args, "--seed", "11"]);
        CliRunner.Result other = CliRunner.Run([.. args, "--seed", "12"]);
        CliRunner.Result unseeded = CliRunner.Run(args);

        Assert.Equal(11UL, first.Json.GetProperty("seed").GetUInt64());
        Assert.Equal(Ids(Sequences(first)[0].GetProperty("ids")), Ids(Sequences(again)[0].GetProperty("ids")));
        Assert.NotEqual(Ids(Sequences(first)[0].GetProperty("ids")), Ids(Sequences(other)[0].GetProperty("ids")));
        ulong reported = unseeded.Json.GetProperty("seed").GetUInt64();
        CliRunner.Result replay = CliRunner.Run([.. args, "--seed", reported.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        Assert.Equal(Ids(Sequences(unseeded)[0].GetProperty("ids")), Ids(Sequences(replay)[0].GetProperty("ids")));
    }

    [SkippableTheory]
    [MemberData(nameof(TestBackends.DevicesData), MemberType = typeof(TestBackends))]
    public void BatchOfSampledPromptsEqualsEachAlone(string device)
    {
        TestBackends.RequireDevice(device);
        string[] sampling = ["--temperature", "1.2", "--top-p", "0.95", "--seed", "5", "--max-new-tokens", "30", "--json", "--device", device];
        JsonElement[] batch = Sequences(CliRunner.Run(["generate", "--prompt", "Lily", "--prompt", "Tom went", "--prompt-ids", "1", .. sampling]));
        JsonElement[] lily = Sequences(CliRunner.Run(["generate", "--prompt", "Lily", .. sampling]));
        JsonElement[] tom = Sequences(CliRunner.Run(["generate", "--prompt", "Tom went", .. sampling]));
        JsonElement[] bos = Sequences(CliRunner.Run(["generate", "--prompt-ids", "1", .. sampling]));

        Assert.Equal(Ids(lily[0].GetProperty("ids")), Ids(batch[0].GetProperty("ids")));
        Assert.Equal(Ids(tom[0].GetProperty("ids")), Ids(batch[1].GetProperty("ids")));
        Assert.Equal(Ids(bos[0].GetProperty("ids")), Ids(batch[2].GetProperty("ids")));
    }

    [SkippableTheory]
    [MemberData(nameof(TestBackends.DevicesData), MemberType = typeof(TestBackends))]
    public void NumReturnSequences_IndependentSamplesOfOnePrompt(string device)
    {
        TestBackends.RequireDevice(device);
        string[] sampling = ["--temperature", "1.5", "--seed", "3", "--max-new-tokens", "25", "--json", "--device", device];
        JsonElement[] samples = Sequences(CliRunner.Run(["generate", "--prompt", "Lily", "--prompt", "Tom", "--num-return-sequences", "3", .. sampling]));
        JsonElement[] alone = Sequences(CliRunner.Run(["generate", "--prompt", "Tom", .. sampling]));

        Assert.Equal(6, samples.Length);
        Assert.Equal(3, samples[..3].Select(s => string.Join(",", Ids(s.GetProperty("ids")))).Distinct().Count());
        // Sample 0 of a prompt is what the prompt gives alone with the same seed.
        Assert.Equal(Ids(alone[0].GetProperty("ids")), Ids(samples[3].GetProperty("ids")));
    }

    [Fact]
    public void EveryEosIdOfGenerationConfigStops()
    {
        // llama2c's greedy continuation of BOS is 403 407 261 378 432 383 ...: make the 6th token (383) the second EOS id.
        string directory = Fixtures.TempDirectory();
        foreach (string file in System.IO.Directory.GetFiles(Fixtures.DemoModel))
        {
            File.Copy(file, Path.Combine(directory, Path.GetFileName(file)));
        }

        JsonNode config = JsonNode.Parse(File.ReadAllText(Path.Combine(directory, "generation_config.json")))!;
        config["eos_token_id"] = new JsonArray(2, 383);
        File.WriteAllText(Path.Combine(directory, "generation_config.json"), config.ToJsonString());

        JsonElement sequence = Sequences(CliRunner.Run("generate", "--model", directory, "--prompt-ids", "1", "--greedy", "--max-new-tokens", "50", "--json"))[0];
        JsonElement ignored = Sequences(CliRunner.Run("generate", "--model", directory, "--prompt-ids", "1", "--greedy", "--max-new-tokens", "50", "--ignore-eos", "--json"))[0];

        Assert.Equal([403, 407, 261, 378, 432, 383], Ids(sequence.GetProperty("ids")));
        Assert.Equal("eos", sequence.GetProperty("stop_reason").GetString());
        Assert.Equal(50, Ids(ignored.GetProperty("ids")).Length);
    }

    [Fact]
    public void StopStringAcrossTokens_CutsTheTextBeforeIt()
    {
        // "named Lily." spans the tokens ▁named, ▁L, ily, . (stories260K's vocabulary is tiny).
        JsonElement sequence = Sequences(CliRunner.Run("generate", "--prompt", "Once upon a time", "--greedy", "--stop", "Lily.", "--stop", "zzz",
            "--max-new-tokens", "60", "--json"))[0];
        CliRunner.Result streamed = CliRunner.Run("generate", "--prompt", "Once upon a time", "--greedy", "--stop", "Lily.", "--max-new-tokens", "60");

        Assert.Equal("stop", sequence.GetProperty("stop_reason").GetString());
        Assert.Equal(", there was a little girl named ", sequence.GetProperty("text").GetString());
        Assert.Equal("Once upon a time, there was a little girl named \n", streamed.Stdout);
    }

    [SkippableTheory]
    [MemberData(nameof(TestBackends.DevicesData), MemberType = typeof(TestBackends))]
    public void Logprobs_EqualScoringTheSameIds(string device)
    {
        TestBackends.RequireDevice(device);
        JsonElement sequence = Sequences(CliRunner.Run("generate", "--prompt-ids", "1,403,407", "--temperature", "1", "--seed", "9",
            "--max-new-tokens", "12", "--logprobs", "3", "--json", "--device", device))[0];
        int[] generated = Ids(sequence.GetProperty("ids"));
        JsonElement[] logprobs = [.. sequence.GetProperty("logprobs").EnumerateArray()];
        CliRunner.Result score = CliRunner.Run(["score", "--prompt-ids", string.Join(",", new[] { 1, 403, 407 }.Concat(generated)), "--top", "3", "--json", "--device", device]);
        JsonElement[] positions = [.. score.Json.GetProperty("positions").EnumerateArray()];

        Assert.Equal(generated.Length, logprobs.Length);
        for (int i = 0; i < generated.Length; i++)
        {
            JsonElement scored = positions[2 + i];
            Assert.Equal(generated[i], logprobs[i].GetProperty("id").GetInt32());
            Assert.Equal(scored.GetProperty("logprob").GetDouble(), logprobs[i].GetProperty("logprob").GetDouble(), 1e-5);
            Assert.Equal(scored.GetProperty("top").EnumerateArray().Select(t => t.GetProperty("id").GetInt32()),
                logprobs[i].GetProperty("top").EnumerateArray().Select(t => t.GetProperty("id").GetInt32()));
        }
    }

    [Fact]
    public void GenerationConfigDefaultsSampleUnlessGreedy()
    {
        // The demo model's generation_config.json asks for sampling (do_sample, temperature 0.8, top_p 0.9):
        // without --greedy two seeds differ; with --greedy the output is llama2c's argmax continuation.
        string[] args = ["generate", "--prompt-ids", "1", "--max-new-tokens", "40", "--json"];
        int[] a = Ids(Sequences(CliRunner.Run([.. args, "--seed", "1"]))[0].GetProperty("ids"));
        int[] b = Ids(Sequences(CliRunner.Run([.. args, "--seed", "2"]))[0].GetProperty("ids"));
        using JsonDocument llama2c = Fixtures.Json("stories260K", "llama2c_expected_greedy_ids.json");
        int[] greedy = Ids(Sequences(CliRunner.Run([.. args, "--greedy"]))[0].GetProperty("ids"));

        Assert.NotEqual(a, b);
        Assert.Equal(Ids(llama2c.RootElement)[1..41], greedy);
    }

    /// <summary>
    /// llama.cpp's samplers where they leave one token (top-n-sigma at a tiny n keeps the largest logit; mirostat at a target
    /// surprise of 0 keeps the most likely token) give llama2c's argmax continuation while sampling at temperature 1.
    /// </summary>
    [Theory]
    [InlineData("--top-n-sigma 0.0001")]
    [InlineData("--mirostat 2 --mirostat-tau 0")]
    [InlineData("--mirostat 1 --mirostat-tau 0 --mirostat-eta 0.5")]
    public void SamplersThatLeaveOneToken_GiveTheArgmaxContinuation(string options)
    {
        string[] args = ["generate", "--prompt-ids", "1", "--max-new-tokens", "40", "--json", "--temperature", "1", "--top-k", "0", "--top-p", "1", "--seed", "1"];
        using JsonDocument llama2c = Fixtures.Json("stories260K", "llama2c_expected_greedy_ids.json");

        int[] ids = Ids(Sequences(CliRunner.Run([.. args, .. options.Split(' ')]))[0].GetProperty("ids"));

        Assert.Equal(Ids(llama2c.RootElement)[1..41], ids);
        Assert.NotEqual(Ids(llama2c.RootElement)[1..41], Ids(Sequences(CliRunner.Run(args))[0].GetProperty("ids")));
    }

    [Theory]
    [InlineData("--greedy --typical-p 0.5", "--greedy takes the argmax of the logits; --typical-p does not apply")]
    [InlineData("--mirostat 3", "--mirostat '3'")]
    [InlineData("--xtc-threshold 2", "--xtc-threshold '2'")]
    [InlineData("--typical-p 0", "--typical-p '0'")]
    [InlineData("--greedy --temperature 0.5", "--greedy takes the argmax of the logits; --temperature does not apply")]
    [InlineData("--top-p 1.5", "--top-p '1.5' is not a number greater than 0 and at most 1")]
    [InlineData("--top-p 0", "--top-p '0' is not a number greater than 0 and at most 1")]
    [InlineData("--temperature -1", "--temperature '-1' is not a number from 0")]
    [InlineData("--seed -4", "--seed '-4' is not a non-negative integer")]
    [InlineData("--greedy --num-return-sequences 2", "--num-return-sequences above 1 needs sampling")]
    [InlineData("--num-beams 2 --temperature 0.7", "beam search is deterministic here; --temperature does not apply")]
    [InlineData("--num-beams 2 --num-return-sequences 3", "--num-return-sequences 3 is more than --num-beams 2")]
    [InlineData("--length-penalty 0.5", "--length-penalty and --early-stopping go with --num-beams")]
    [InlineData("--num-beams 2 --logprobs 2 --json", "--logprobs does not apply to beam search here")]
    [InlineData("--logprobs 3", "--logprobs goes with --json")]
    public void BadGenerationOptions_OneLineAndExitCode2(string options, string message)
    {
        CliRunner.Result result = CliRunner.Run(["generate", "--prompt-ids", "1", "--max-new-tokens", "3", .. options.Split(' ')]);

        Assert.Equal(2, result.ExitCode);
        Assert.Contains(message, Assert.Single(result.ErrorLines), StringComparison.Ordinal);
    }

    [Fact]
    public void Beams_BestFirstWithScores()
    {
        JsonElement[] sequences = Sequences(CliRunner.Run("generate", "--prompt", "Once upon a time", "--num-beams", "3", "--num-return-sequences", "3",
            "--length-penalty", "0.8", "--max-new-tokens", "10", "--json"));

        Assert.Equal(3, sequences.Length);
        double[] scores = [.. sequences.Select(s => s.GetProperty("score").GetDouble())];
        Assert.Equal(scores.OrderByDescending(s => s), scores);
        Assert.All(sequences, s => Assert.False(string.IsNullOrEmpty(s.GetProperty("text").GetString())));
    }

    [Theory]
    [InlineData("config.json", "eos_token_id", "383")]
    [InlineData("tokenizer_config.json", "eos_token", "\"\u2581there\"")]
    public void WithoutGenerationConfig_ConfigAndTokenizerEosBothStop(string file, string field, string value)
    {
        // No generation_config.json: config.json's eos_token_id and tokenizer_config.json's eos_token both end a
        // sequence. 383 ("▁there") is the 6th token of llama2c's greedy continuation of BOS.
        string directory = Fixtures.TempDirectory();
        foreach (string path in System.IO.Directory.GetFiles(Fixtures.DemoModel).Where(p => !p.EndsWith("generation_config.json", StringComparison.Ordinal)))
        {
            File.Copy(path, Path.Combine(directory, Path.GetFileName(path)));
        }

        JsonNode json = JsonNode.Parse(File.ReadAllText(Path.Combine(directory, file)))!;
        json[field] = JsonNode.Parse(value);
        File.WriteAllText(Path.Combine(directory, file), json.ToJsonString());

        JsonElement sequence = Sequences(CliRunner.Run("generate", "--model", directory, "--prompt-ids", "1", "--greedy", "--max-new-tokens", "50", "--json"))[0];

        Assert.Equal([403, 407, 261, 378, 432, 383], Ids(sequence.GetProperty("ids")));
        Assert.Equal("eos", sequence.GetProperty("stop_reason").GetString());
    }
}
