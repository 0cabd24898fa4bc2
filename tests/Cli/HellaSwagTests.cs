using System.Text.Json;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Cli;

/// <summary>
/// perplexity --hellaswag against llama.cpp (LLamaSharp) on the same GGUF file: each task's answer is the ending with the
/// highest mean log-prob per token after the shared tokens, computed here from llama.cpp's logits of each whole text.
/// </summary>
public sealed class HellaSwagTests
{
    private static string TaskFile => Fixtures.File("hellaswag", "tinystories-hellaswag.txt");

    [SkippableTheory]
    [MemberData(nameof(TestBackends.DevicesData), MemberType = typeof(TestBackends))]
    public void Answers_AreTheEndingsLlamaCppsLogitsFavour(string device)
    {
        TestBackends.RequireDevice(device);
        string gguf = GgufFixture.Write(Fixtures.DemoModel);
        string[] lines = File.ReadAllLines(TaskFile);
        var expected = new List<int>();
        int correct = 0;
        for (int t = 0; t < lines.Length / 6; t++)
        {
            // The demo model's tokenizer puts BOS (1) first, as llama-perplexity's tokenization does.
            int[][] sequences = [.. Enumerable.Range(2, 4).Select(e => new[] { 1 }.Concat(LlamaCpp.Tokenize(gguf, [$"{lines[6 * t]} {lines[(6 * t) + e]}"])[0]).ToArray())];
            double[] scores = LlamaCppEndingScores(gguf, sequences);
            int choice = Array.IndexOf(scores, scores.Max());
            expected.Add(choice);
            correct += choice == int.Parse(lines[(6 * t) + 1], System.Globalization.CultureInfo.InvariantCulture) ? 1 : 0;
        }

        CliRunner.Result result = CliRunner.Run("perplexity", "--model", gguf, "--hellaswag", "--file", TaskFile, "--json", "--device", device);

        Assert.True(result.ExitCode == 0, result.Stderr);
        JsonElement json = result.Json;
        // llama-perplexity's order, drawn at random whatever the count: the C++ library's draws for six tasks.
        int[] drawn = [.. json.GetProperty("tasks_drawn").EnumerateArray().Select(c => c.GetInt32())];
        Assert.Equal(Generation.TaskDrawsTests.Drawn("hellaswag", 6, 6), drawn);
        Assert.Equal(drawn.Select(t => expected[t]), json.GetProperty("choices").EnumerateArray().Select(c => c.GetInt32()));
        Assert.Equal(correct, json.GetProperty("correct").GetInt32());
        Assert.Equal(lines.Length / 6, json.GetProperty("tasks").GetInt32());
        Assert.InRange(correct, 1, lines.Length / 6 - 1);

        // As text, llama-perplexity's lines: the running accuracy and its Wilson interval after each task.
        CliRunner.Result text = CliRunner.Run("perplexity", "--model", gguf, "--hellaswag", "--file", TaskFile, "--hellaswag-tasks", "2", "--device", device);
        string[] printed = text.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("task\tacc_norm\t95% confidence interval", printed[0]);
        Assert.StartsWith("2\t", printed[2], StringComparison.Ordinal);
        Assert.Contains("over 2 tasks", printed[3], StringComparison.Ordinal);
        int[] firstTwo = Generation.TaskDrawsTests.Drawn("hellaswag", 6, 2);
        int right = firstTwo.Count(t => expected[t] == int.Parse(lines[(6 * t) + 1], System.Globalization.CultureInfo.InvariantCulture));
        Assert.StartsWith(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"2\t{100.0 * right / 2:F8}%"), printed[2], StringComparison.Ordinal);
    }

    /// <summary>
    /// Each text's mean log-prob per token after the tokens all the texts share, from llama.cpp's logits of the whole text
    /// (llama-perplexity's acc_norm score of an ending or answer).
    /// </summary>
    internal static double[] LlamaCppEndingScores(string gguf, int[][] sequences)
    {
        int shared = sequences.Min(s => s.AsSpan().CommonPrefixLength(sequences[0]));
        return [.. sequences.Select(s =>
        {
            float[][] logits = LlamaCpp.Logits(gguf, s);
            double sum = 0;
            for (int p = shared - 1; p < s.Length - 1; p++)
            {
                double max = logits[p].Max(), logSumExp = max + Math.Log(logits[p].Sum(l => Math.Exp(l - max)));
                sum += logits[p][s[p + 1]] - logSumExp;
            }

            return sum / (s.Length - shared);
        })];
    }

    [Fact]
    public void Errors_OneLineByPlace()
    {
        string directory = Fixtures.TempDirectory();
        string five = Path.Combine(directory, "five.txt"), badGold = Path.Combine(directory, "gold.txt");
        File.WriteAllText(five, "a\n0\nb\nc\nd\n");
        File.WriteAllText(badGold, "a\n0\nb\nc\nd\ne\nf\nfour\ng\nh\ni\nj\n");

        foreach ((string[] args, string message) in new (string[], string)[]
        {
            (["perplexity", "--hellaswag", "--file", five], "five.txt: 5 lines; a HellaSwag file holds six a task"),
            (["perplexity", "--hellaswag", "--file", badGold], "gold.txt, line 8: 'four' is not the right ending's index (0, 1, 2 or 3)"),
            (["perplexity", "--hellaswag", "--file", TaskFile, "--chunks", "2"], "--hellaswag scores its tasks whole; --chunks is for perplexity"),
            (["perplexity", "--file", TaskFile, "--hellaswag-tasks", "2"], "--hellaswag-tasks goes with --hellaswag"),
            (["perplexity", "--hellaswag"], "perplexity --hellaswag needs --file F"),
        })
        {
            CliRunner.Result result = CliRunner.Run(args);
            Assert.True(result.ExitCode == 2, $"{string.Join(' ', args)}: exit {result.ExitCode}: {result.Stderr}");
            Assert.Contains(message, Assert.Single(result.ErrorLines), StringComparison.Ordinal);
        }
    }
}
