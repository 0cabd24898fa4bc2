using Microsoft.Extensions.AI;
using QwenSharp.Lora;
using QwenSharp.Qwen2;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Engine;

/// <summary>
/// The library's per-call LoRA adapters (<see cref="TextGenerationOptions.LoraAdapter"/>, <see cref="TextGenerationOptions.LoraScales"/>,
/// and <c>ChatOptions.ModelId</c> through <see cref="IChatClient"/>), as a server's requests weigh them: llama.cpp's greedy
/// tokens at those scales, and a chat whose kept cache never carries one call's adapters into another's.
/// </summary>
public sealed class LoraGenerationTests
{
    private static readonly int[] s_prompt = [1, 403, 407, 261, 378];

    [Fact]
    public async Task EachCallRunsTheAdaptersItNames_AsLlamaCppDoes()
    {
        Qwen2Config demo = Qwen2Config.Load(Path.Combine(Fixtures.DemoModel, Qwen2Config.FileName));
        string dir = Fixtures.TempDirectory();
        var alpha = RandomLoraAdapter.Make(demo, rank: 4, alpha: 8, seed: 41, LoraTargets.All, layers: null);
        var beta = RandomLoraAdapter.Make(demo, rank: 2, alpha: 4, seed: 42, [LoraTarget.K, LoraTarget.Up], layers: null);
        string alphaGguf = alpha.WriteGguf(Path.Combine(dir, "alpha.gguf"), demo), betaGguf = beta.WriteGguf(Path.Combine(dir, "beta.gguf"), demo);
        string gguf = GgufFixture.Write(Fixtures.DemoModel);
        using QwenModel model = await QwenModel.LoadAsync(Fixtures.DemoModel, new QwenModelOptions
        {
            Threads = 2,
            LoraAdapters = [new LoraAdapterOptions(alpha.WritePeft(Path.Combine(dir, "alpha")), 0.75f), new LoraAdapterOptions(betaGguf, 0f)],
        });
        Assert.Equal(["alpha", "beta"], model.AdapterNames);

        Assert.Equal(Greedy(gguf, [(alphaGguf, 0.75f)]), await Ids(model, new TextGenerationOptions()));
        Assert.Equal(Greedy(gguf, [(betaGguf, 1f)]), await Ids(model, new TextGenerationOptions { LoraAdapter = "beta" }));
        Assert.Equal(Greedy(gguf, [(alphaGguf, 0.5f), (betaGguf, 1.5f)]), await Ids(model, new TextGenerationOptions { LoraScales = [0.5f, 1.5f] }));

        // Scoring at the call's scales: each token's log-prob as llama.cpp's logits at those scales give it.
        float[][] logits = LlamaCpp.Logits(gguf, s_prompt, [(alphaGguf, 0.5f), (betaGguf, 1.5f)]);
        QwenSharp.Generation.ScoreResult scored = model.Score(s_prompt, top: 1, loraScales: [0.5f, 1.5f]);
        for (int k = 0; k + 1 < s_prompt.Length; k++)
        {
            double max = logits[k].Max(), logSumExp = max + Math.Log(logits[k].Sum(l => Math.Exp(l - max)));
            Assert.Equal(logits[k][s_prompt[k + 1]] - logSumExp, scored.Positions[k].NextLogprob!.Value, 1e-3);
        }

        Assert.NotEqual(scored.Positions[0].NextLogprob, model.Score(s_prompt, top: 1).Positions[0].NextLogprob);

        var unknown = await Assert.ThrowsAsync<ArgumentException>(() => Ids(model, new TextGenerationOptions { LoraAdapter = "gamma" }));
        Assert.Contains("'gamma' is not one of the model's ('alpha', 'beta')", unknown.Message, StringComparison.Ordinal);
        var count = await Assert.ThrowsAsync<ArgumentException>(() => Ids(model, new TextGenerationOptions { LoraScales = [1f] }));
        Assert.Contains("gives 1 scale(s); the model has 2", count.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ANameTwoAdaptersShare_PicksNeither()
    {
        string folder = Fixtures.DemoModel;
        Qwen2Config config = Qwen2Config.Load(Path.Combine(folder, Qwen2Config.FileName));
        string first = RandomLoraAdapter.Make(config, rank: 2, alpha: 4, seed: 44, LoraTargets.All, layers: null).WritePeft(Path.Combine(Fixtures.TempDirectory(), "tune"));
        string second = RandomLoraAdapter.Make(config, rank: 2, alpha: 4, seed: 45, LoraTargets.All, layers: null).WritePeft(Path.Combine(Fixtures.TempDirectory(), "tune"));
        using QwenModel model = await QwenModel.LoadAsync(folder, new QwenModelOptions
        {
            Threads = 2,
            LoraAdapters = [new LoraAdapterOptions(first, 0f), new LoraAdapterOptions(second, 0f), new LoraAdapterOptions(second, 0f) { Name = "other" }],
        });
        Assert.Equal(["tune", "tune", "other"], model.AdapterNames);

        var shared = await Assert.ThrowsAsync<ArgumentException>(() => Ids(model, new TextGenerationOptions { LoraAdapter = "tune" }));
        Assert.Contains("'tune' is shared by adapters 0 and 1", shared.Message, StringComparison.Ordinal);
        Assert.Equal(16, (await Ids(model, new TextGenerationOptions { LoraAdapter = "other" })).Length);
    }

    [Fact]
    public async Task AChatClientsModelIdPicksAnAdapter_AndItsKeptCacheIsNotCarriedAcross()
    {
        string folder = TestTokenizers.TinyQwenWithTokenizer;
        Qwen2Config config = Qwen2Config.Load(Path.Combine(folder, Qwen2Config.FileName));
        string peft = RandomLoraAdapter.Make(config, rank: 4, alpha: 32, seed: 43, LoraTargets.All, layers: null).WritePeft(Path.Combine(Fixtures.TempDirectory(), "tune"));
        ChatMessage[] conversation = [new(ChatRole.User, "Tell me a story about a fox and a crow.")];
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 12 };
        var tune = new ChatOptions { Temperature = 0, MaxOutputTokens = 12, ModelId = "tune" };

        using QwenModel plain = await QwenModel.LoadAsync(folder, new QwenModelOptions { Threads = 2 });
        using IChatClient plainClient = plain.AsChatClient();
        string alone = (await plainClient.GetResponseAsync(conversation, options)).Text;

        using QwenModel adapted = await QwenModel.LoadAsync(folder, new QwenModelOptions { Threads = 2, LoraAdapters = [new LoraAdapterOptions(peft, 0f)] });
        using IChatClient client = adapted.AsChatClient();
        ChatResponse tuned = await client.GetResponseAsync(conversation, tune);
        Assert.Equal("tune", tuned.ModelId);
        // The same conversation without the adapter (loaded at 0), then with it again: the cache kept from the turn before
        // holds keys and values of the other weights, and must be read again.
        Assert.Equal(alone, (await client.GetResponseAsync(conversation, options)).Text);
        Assert.Equal(tuned.Text, (await client.GetResponseAsync(conversation, tune)).Text);
        Assert.NotEqual(alone, tuned.Text);
    }

    private static async Task<int[]> Ids(QwenModel model, TextGenerationOptions options)
    {
        var ids = new List<int>();
        await foreach (GenerationUpdate update in model.GenerateAsync(s_prompt,
            options with { Sampling = new() { Greedy = true }, MaxNewTokens = 16, IgnoreEos = true }))
        {
            if (update.TokenId >= 0)
            {
                ids.Add(update.TokenId);
            }
        }

        return [.. ids];
    }

    /// <summary>llama.cpp's 16 greedy tokens after the prompt with the adapters.</summary>
    private static int[] Greedy(string gguf, (string Path, float Scale)[] adapters)
    {
        var ids = new List<int>(s_prompt);
        for (int i = 0; i < 16; i++)
        {
            float[] last = LlamaCpp.Logits(gguf, ids, adapters)[^1];
            ids.Add(Array.IndexOf(last, last.Max()));
        }

        return [.. ids.Skip(s_prompt.Length)];
    }
}
