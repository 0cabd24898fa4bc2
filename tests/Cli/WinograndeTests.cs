using System.Globalization;
using System.Text.Json;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Cli;

/// <summary>
/// perplexity --winogrande against llama.cpp (LLamaSharp) on the same GGUF file: both choices' scores computed here from
/// llama.cpp's logits of each whole sentence by llama-perplexity's rules (its scored span, its left-out last token, and its
/// first logits for the second sentence where the choice is scored, as its source takes them).
/// </summary>
public sealed class WinograndeTests
{
    private static string TaskFile => Fixtures.File("winogrande", "tinystories-winogrande.csv");

    [SkippableTheory]
    [MemberData(nameof(TestBackends.DevicesData), MemberType = typeof(TestBackends))]
    public void Scores_AreWhatLlamaCppsLogitsGive(string device)
    {
        TestBackends.RequireDevice(device);
        string gguf = GgufFixture.Write(Fixtures.DemoModel);
        string[] lines = File.ReadAllLines(TaskFile)[1..];
        var expected = new List<(double First, double Second)>();
        int choicesScored = 0;
        foreach (string line in lines)
        {
            // index,sentence,choice1,choice2,answer; the sentence quoted where it holds a comma.
            string[] fields = line.Contains('"', StringComparison.Ordinal)
                ? [line[..line.IndexOf(',', StringComparison.Ordinal)], line.Split('"')[1], .. line.Split('"')[2].TrimStart(',').Split(',')]
                : line.Split(',');
            string first = fields[1][..fields[1].IndexOf('_', StringComparison.Ordinal)], second = fields[1][(fields[1].IndexOf('_', StringComparison.Ordinal) + 1)..];
            int[] Tokens(string text) => [1, .. LlamaCpp.Tokenize(gguf, [text])[0]];    // BOS first, as the demo tokenizer adds it
            int[][] sentences = [Tokens(first + fields[2] + second), Tokens(first + fields[3] + second)];
            int[] throughChoice = [Tokens(first + fields[2]).Length, Tokens(first + fields[3]).Length];
            float[][][] logits = [LlamaCpp.Logits(gguf, sentences[0]), LlamaCpp.Logits(gguf, sentences[1])];
            int shared = sentences[0].AsSpan().CommonPrefixLength(sentences[1]);
            bool choicesSkipped = sentences[0].Length - shared > 3 && sentences[1].Length - shared > 3;
            choicesScored += choicesSkipped ? 0 : 1;
            double Score(int s)
            {
                int start = choicesSkipped ? throughChoice[s] : shared, last = sentences[s].Length - start > 1 ? 1 : 0;
                double sum = 0;
                for (int j = start - 1; j < sentences[s].Length - 1 - last; j++)
                {
                    // llama-perplexity's second sentence, its choice scored: the first logits are the first sentence's last.
                    float[] row = s == 1 && j == shared - 1 && shared < sentences[0].Length ? logits[0][^1] : logits[s][j];
                    double max = row.Max(), logSumExp = max + Math.Log(row.Sum(l => Math.Exp(l - max)));
                    sum += row[sentences[s][j + 1]] - logSumExp;
                }

                return sum / (sentences[s].Length - start - last);
            }

            expected.Add((Score(0), Score(1)));
        }

        CliRunner.Result result = CliRunner.Run("perplexity", "--model", gguf, "--winogrande", "--file", TaskFile, "--device", device);

        Assert.True(result.ExitCode == 0, result.Stderr);
        string[] printed = result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(lines.Length + 1, printed.Length);
        int correct = 0;
        for (int t = 0; t < lines.Length; t++)
        {
            string[] columns = printed[t].Split(['\t', ' '], StringSplitOptions.RemoveEmptyEntries);
            double first = double.Parse(columns[2], CultureInfo.InvariantCulture), second = double.Parse(columns[3], CultureInfo.InvariantCulture);
            Assert.Equal(expected[t].First, first, 2e-5);
            Assert.Equal(expected[t].Second, second, 2e-5);
            int choice = expected[t].First > expected[t].Second ? 1 : 2, answer = lines[t][^1] - '0';
            Assert.Equal((t + 1).ToString(CultureInfo.InvariantCulture), columns[0]);
            Assert.Equal(choice.ToString(CultureInfo.InvariantCulture), columns[4]);
            Assert.Equal(answer.ToString(CultureInfo.InvariantCulture), columns[5]);
            correct += choice == answer ? 1 : 0;
        }

        Assert.StartsWith($"Final Winogrande score({lines.Length} tasks): {100.0 * correct / lines.Length:F4} +/- ", printed[^1], StringComparison.Ordinal);
        Assert.Contains(expected, e => !(e.First > e.Second) && e.First != e.Second);    // both kinds of choice happen
        Assert.Contains(expected, e => e.First > e.Second);
        Assert.InRange(choicesScored, 1, lines.Length - 1);    // both of llama-perplexity's spans are taken

        JsonElement json = CliRunner.Run("perplexity", "--model", gguf, "--winogrande", "--file", TaskFile, "--winogrande-tasks", "3", "--json", "--device", device).Json;
        Assert.Equal(3, json.GetProperty("tasks").GetInt32());
        int[] drawn = Generation.TaskDrawsTests.Drawn("scaled", 10, 3);    // llama-perplexity's three of ten, as the C++ library drew them
        Assert.Equal(drawn, json.GetProperty("tasks_drawn").EnumerateArray().Select(c => c.GetInt32()));
        Assert.Equal(drawn.Select(t => expected[t].First > expected[t].Second ? 1 : 2), json.GetProperty("choices").EnumerateArray().Select(c => c.GetInt32()));
    }

    [Fact]
    public void Errors_OneLineByPlace()
    {
        string directory = Fixtures.TempDirectory();
        string noBlank = Path.Combine(directory, "blank.csv"), badAnswer = Path.Combine(directory, "answer.csv"), fewCommas = Path.Combine(directory, "commas.csv");
        File.WriteAllText(noBlank, "0,Lily gave Tom the ball.,Lily,Tom,1\n");
        File.WriteAllText(badAnswer, "0,Lily gave _ the ball.,Lily,Tom,1\n1,Tom gave _ the ball.,Lily,Tom,3\n");
        File.WriteAllText(fewCommas, "0,Lily gave _ the ball.,Lily\n");
        foreach ((string[] args, string message) in new (string[], string)[]
        {
            (["perplexity", "--winogrande", "--file", noBlank], "blank.csv, line 1: the sentence has no _ for the choices to fill"),
            (["perplexity", "--winogrande", "--file", badAnswer], "answer.csv, line 2: answer '3' is neither 1 nor 2"),
            (["perplexity", "--winogrande", "--file", fewCommas], "commas.csv, line 1: not index,sentence,choice1,choice2,answer (found 2 of its 4 commas outside quotes)"),
            (["perplexity", "--winogrande", "--file", TaskFile, "--hellaswag"], "--hellaswag and --winogrande are two task scores; give one at a time"),
            (["perplexity", "--file", TaskFile, "--winogrande-tasks", "2"], "--winogrande-tasks goes with --winogrande"),
            (["perplexity", "--winogrande"], "perplexity --winogrande needs --file F"),
        })
        {
            CliRunner.Result result = CliRunner.Run(args);
            Assert.True(result.ExitCode == 2, $"{string.Join(' ', args)}: exit {result.ExitCode}: {result.Stderr}");
            Assert.Contains(message, Assert.Single(result.ErrorLines), StringComparison.Ordinal);
        }
    }
}
