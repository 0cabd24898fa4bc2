using QwenSharp.Sampling;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Generation;

/// <summary>
/// DRY against llama.cpp's own DRY sampler (through LLamaSharp), on a GGUF file of the Qwen2.5 tokenizer: the breakers
/// made from their texts by each side's vocabulary, the text so far given token by token, and the penalised logits
/// compared for every token; texts that repeat across a breaker, within one, and past the window.
/// </summary>
public sealed class DryPenaltyTests
{
    private static readonly Lazy<string> s_gguf = new(() => GgufFixture.Write(TestTokenizers.TinyQwenWithTokenizer));

    public static TheoryData<string, string[], double, double, int, int> Cases() => new()
    {
        { "The cat sat on the mat. The cat sat on the mat. The cat sat on the", ["\n", ":", "\"", "*"], 0.8, 1.75, 2, -1 },
        { "one two three four five\none two three four five\none two three", ["\n", ":", "\"", "*"], 0.8, 1.75, 2, -1 },
        { "Alice: hello there my friend, how are you\nBob: hello there my friend, how are", ["\n", ":", "\"", "*"], 1.2, 1.5, 1, -1 },
        { "a b c d e f g a b c d e f g a b c d e f", ["\n"], 0.5, 1.1, 3, 12 },
        { "<br>red green blue yellow<br>red green blue yellow<br>red green blue", ["<br>", "Question:"], 0.8, 1.75, 2, -1 },
        { "Question: what is it? Answer: it is a cat. Question: what is it? Answer: it is a", ["Question:"], 2, 2, 2, -1 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void DryPenalizesAsLlamaCppsDry(string text, string[] breakers, double multiplier, double @base, int allowed, int lastN)
    {
        int[] history = TestTokenizers.Qwen.Encode(text);
        var random = new Random(history.Length);
        float[] logits = [.. Enumerable.Range(0, 151936).Select(_ => (float)(random.NextDouble() * 4))];

        float[] expected = LlamaCpp.DryPenalized(s_gguf.Value, logits, history, breakers, (float)multiplier, (float)@base, allowed, lastN);
        float[] ours = (float[])logits.Clone();
        DryPenalty.Apply(ours, multiplier, @base, allowed, lastN, DrySequenceBreakers.Of(TestTokenizers.Qwen, breakers), history, []);

        int penalized = 0;
        for (int i = 0; i < ours.Length; i++)
        {
            Assert.True(Math.Abs(expected[i] - ours[i]) <= 1e-4 * Math.Max(1, Math.Abs(expected[i])), $"token {i} ({TestTokenizers.Qwen.IdToToken(i)}): {ours[i]} against llama.cpp's {expected[i]}");
            penalized += expected[i] != logits[i] ? 1 : 0;
        }

        Assert.True(penalized > 0, "llama.cpp penalised nothing: the case says nothing");
    }

    [Fact]
    public void TheTextSplitBetweenPromptAndAnswer_IsOneText()
    {
        int[] history = TestTokenizers.Qwen.Encode("The cat sat on the mat. The cat sat on the mat. The cat sat on the");
        DryBreakers breakers = DrySequenceBreakers.Of(TestTokenizers.Qwen, DrySequenceBreakers.Default);
        float[] whole = new float[151936], split = new float[151936];

        DryPenalty.Apply(whole, 0.8, 1.75, 2, -1, breakers, history, []);
        DryPenalty.Apply(split, 0.8, 1.75, 2, -1, breakers, history[..7], history[7..]);

        Assert.Equal(whole, split);
        Assert.Contains(whole, v => v < 0);
    }

    /// <summary>
    /// The demo model's greedy continuation under DRY, through the command line, against llama.cpp's greedy continuation
    /// under its DRY on the same GGUF file (Sample accepts each token into the chain, as the answer grows).
    /// </summary>
    [Fact]
    public void Cli_GreedyUnderDry_IsLlamaCppsGreedyUnderDry()
    {
        int[] prompt = [1];
        string gguf = GgufFixture.Write(Fixtures.DemoModel);
        int[] expected = LlamaCpp.GreedyWithDry(gguf, prompt, 150, ["\n", ":", "\"", "*"], 4f, 1.75f, 2);

        Cli.CliRunner.Result result = Cli.CliRunner.Run("generate", "--model", Fixtures.DemoModel, "--prompt-ids", "1", "--greedy", "--max-new-tokens", "150",
            "--ignore-eos", "--dry-multiplier", "4", "--json");
        int[] ours = [.. result.Json.GetProperty("sequences")[0].GetProperty("ids").EnumerateArray().Select(e => e.GetInt32())];
        int[] plain = LlamaCpp.GreedyWithDry(gguf, prompt, 150, ["\n"], 0f, 1.75f, 2);

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Equal(expected, ours);
        Assert.NotEqual(plain, expected);
    }
}
