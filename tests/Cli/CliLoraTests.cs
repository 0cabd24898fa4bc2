using System.Text.Json;
using QwenSharp.Lora;
using QwenSharp.Qwen2;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Cli;

/// <summary>--lora and --lora-scale on the command line: llama.cpp's greedy tokens with the same adapter, and one-line refusals.</summary>
public sealed class CliLoraTests
{
    /// <summary>BOS and "Once upon a time" in the demo's vocabulary.</summary>
    private const string Prompt = "1,403,407,261,378";

    private static readonly Qwen2Config s_demo = Qwen2Config.Load(Path.Combine(Fixtures.DemoModel, Qwen2Config.FileName));

    [Fact]
    public void GenerateWithLora_GivesLlamaCppsGreedyTokensWithTheAdapter()
    {
        var adapter = RandomLoraAdapter.Make(s_demo, rank: 4, alpha: 8, seed: 11, LoraTargets.All, layers: null);
        string dir = Fixtures.TempDirectory();
        string peft = adapter.WritePeft(Path.Combine(dir, "peft"));
        string ggufAdapter = adapter.WriteGguf(Path.Combine(dir, "adapter.gguf"), s_demo);
        int[] ids = Ids(CliRunner.Run("generate", "--lora", peft, "--prompt-ids", Prompt, "--greedy", "--max-new-tokens", "24", "--json"));
        int[] plain = Ids(CliRunner.Run("generate", "--prompt-ids", Prompt, "--greedy", "--max-new-tokens", "24", "--json"));
        Assert.NotEqual(plain[^24..], ids[^24..]);

        // llama.cpp reads the same tokens with the adapter: each generated token is its argmax after the ones before.
        float[][] theirs = LlamaCpp.Logits(GgufFixture.Write(Fixtures.DemoModel), ids, [(ggufAdapter, 1f)]);
        for (int i = ids.Length - 24; i < ids.Length; i++)
        {
            float[] logits = theirs[i - 1];
            int best = Array.IndexOf(logits, logits.Max());
            float margin = logits[best] - logits.Where((_, j) => j != best).Max();
            Assert.True(best == ids[i] || margin < 1e-3, $"token {i}: ours {ids[i]}, llama.cpp's argmax {best} (by {margin:E2})");
        }

        // The GGUF form gives the same tokens; a scale of 0 is the model alone.
        Assert.Equal(ids, Ids(CliRunner.Run("generate", "--lora", ggufAdapter, "--prompt-ids", Prompt, "--greedy", "--max-new-tokens", "24", "--json")));
        Assert.Equal(plain, Ids(CliRunner.Run("generate", "--lora", peft, "--lora-scale", "0", "--prompt-ids", Prompt, "--greedy", "--max-new-tokens", "24", "--json")));
    }

    [Fact]
    public async Task QwenModelOptionsLoraAdapters_GiveTheCommandLinesTokens()
    {
        // The library (as chat and serve load models) against generate --lora, whose tokens the test above checks against llama.cpp.
        var adapter = RandomLoraAdapter.Make(s_demo, rank: 4, alpha: 8, seed: 11, LoraTargets.All, layers: null);
        string peft = adapter.WritePeft(Path.Combine(Fixtures.TempDirectory(), "peft"));
        int[] expected = Ids(CliRunner.Run("generate", "--lora", peft, "--lora-scale", "0.75", "--prompt-ids", Prompt, "--greedy", "--max-new-tokens", "24", "--json"));

        using QwenModel model = QwenModel.Load(Fixtures.DemoModel, new QwenModelOptions { LoraAdapters = [new LoraAdapterOptions(peft, 0.75f)] });
        var ids = new List<int>();
        await foreach (GenerationUpdate update in model.GenerateAsync(Prompt.Split(',').Select(int.Parse).ToArray(),
            new TextGenerationOptions { Sampling = new() { Greedy = true }, MaxNewTokens = 24 }))
        {
            if (update.TokenId >= 0)
            {
                ids.Add(update.TokenId);
            }
        }

        Assert.Equal(expected[^24..], ids);
        Assert.Equal(peft, Assert.Single(model.Model.Adapters).Path);
    }

    [Fact]
    public void QuantizeWithLora_WritesAModelThatGeneratesTheAdaptersTokens()
    {
        var adapter = RandomLoraAdapter.Make(s_demo, rank: 4, alpha: 8, seed: 14, LoraTargets.All, layers: null);
        string dir = Fixtures.TempDirectory();
        string peft = adapter.WritePeft(Path.Combine(dir, "peft"));
        string merged = Path.Combine(dir, "merged.gguf");
        CliRunner.Result written = CliRunner.Run("quantize", "--model", Fixtures.DemoModel, "--type", "f32", "--lora", peft, "--lora-scale", "1.5", "--out", merged);
        Assert.True(written.ExitCode == 0, written.Stderr);

        int[] applied = Ids(CliRunner.Run("generate", "--lora", peft, "--lora-scale", "1.5", "--prompt-ids", Prompt, "--greedy", "--max-new-tokens", "24", "--json"));
        Assert.Equal(applied, Ids(CliRunner.Run("generate", "--model", merged, "--prompt-ids", Prompt, "--greedy", "--max-new-tokens", "24", "--json")));
        Assert.NotEqual(applied, Ids(CliRunner.Run("generate", "--prompt-ids", Prompt, "--greedy", "--max-new-tokens", "24", "--json")));
    }

    [Fact]
    public void Info_ShowsTheAdapters()
    {
        string peft = RandomLoraAdapter.Make(s_demo, 4, 8, 12, [LoraTarget.Q, LoraTarget.V], [0, 1]).WritePeft(Path.Combine(Fixtures.TempDirectory(), "peft"));
        CliRunner.Result text = CliRunner.Run("info", "--lora", peft, "--lora-scale", "0.5");
        Assert.Equal(0, text.ExitCode);
        Assert.Contains($"LoRA          {Path.GetFullPath(peft)} (PEFT, rank 4, 4 projections of 2 layers, scale 0.5, trained on stories260K)", text.Stdout);

        JsonElement adapter = CliRunner.Run("info", "--lora", peft, "--json").Json.GetProperty("lora_adapters")[0];
        Assert.Equal("PEFT", adapter.GetProperty("format").GetString());
        Assert.Equal(4, adapter.GetProperty("projections").GetInt32());
        Assert.Equal(1.0, adapter.GetProperty("scale").GetDouble());
    }

    [Fact]
    public void BadLoraArguments_ExitTwoWithOneLine()
    {
        string dir = Fixtures.TempDirectory();
        string peft = RandomLoraAdapter.Make(s_demo, 4, 8, 13, [LoraTarget.Q], [0]).WritePeft(Path.Combine(dir, "peft"));
        string dora = RandomLoraAdapter.Make(s_demo, 4, 8, 13, [LoraTarget.Q], [0])
            .WritePeft(Path.Combine(dir, "dora"), new Dictionary<string, object> { ["use_dora"] = true });
        (string[] Args, string Expected)[] cases =
        [
            (["--lora", Path.Combine(dir, "nowhere")], "no such folder or file"),
            (["--lora", peft, "--lora", peft, "--lora-scale", "2"], "1 --lora-scale for 2 --lora"),
            (["--lora", peft, "--lora-scale", "strong"], "--lora-scale 'strong' is not a number"),
            (["--lora", dora], "use_dora is true"),
        ];
        foreach ((string[] args, string expected) in cases)
        {
            CliRunner.Result result = CliRunner.Run(["generate", "--prompt", "Once", "--max-new-tokens", "2", .. args]);
            Assert.Equal(2, result.ExitCode);
            Assert.Single(result.ErrorLines);
            Assert.Contains(expected, result.ErrorLines[0]);
        }
    }

    private static int[] Ids(CliRunner.Result result)
    {
        Assert.True(result.ExitCode == 0, result.Stderr);
        JsonElement sequence = result.Json.GetProperty("sequences")[0];
        return [.. Prompt.Split(',').Select(int.Parse).Concat(sequence.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()))];
    }
}
