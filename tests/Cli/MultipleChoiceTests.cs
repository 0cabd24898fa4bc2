using System.Globalization;
using System.Text;
using System.Text.Json;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Cli;

/// <summary>
/// perplexity --multiple-choice against llama.cpp (LLamaSharp) on the same GGUF file: each task's answer is the one with
/// the highest mean log-prob per token after the tokens all its texts share, computed here from llama.cpp's logits of
/// each whole "question answer" text; the task file read here by hand from llama-perplexity's layout.
/// </summary>
public sealed class MultipleChoiceTests
{
    private static string TaskFile => Fixtures.File("multiple-choice", "tinystories-multiple-choice.bin");

    /// <summary>The file's tasks: question, mc1 answers and labels (mc2 read past).</summary>
    private static List<(string Question, string[] Answers, int[] Labels)> ReadTasks(string path)
    {
        using var reader = new BinaryReader(File.OpenRead(path), Encoding.UTF8);
        int count = reader.ReadInt32();
        reader.BaseStream.Seek(4L * count, SeekOrigin.Current);
        string Text() => Encoding.UTF8.GetString(reader.ReadBytes(reader.ReadInt32()));
        (string[], int[]) Set()
        {
            int n = reader.ReadInt32();
            string[] answers = [.. Enumerable.Range(0, n).Select(_ => Text())];
            return (answers, [.. Enumerable.Range(0, n).Select(_ => reader.ReadInt32())]);
        }

        var tasks = new List<(string, string[], int[])>();
        for (int t = 0; t < count; t++)
        {
            string question = Text();
            (string[] answers, int[] labels) = Set();
            Set();
            tasks.Add((question, answers, labels));
        }

        return tasks;
    }

    [SkippableTheory]
    [MemberData(nameof(TestBackends.DevicesData), MemberType = typeof(TestBackends))]
    public void Answers_AreTheOnesLlamaCppsLogitsFavour(string device)
    {
        TestBackends.RequireDevice(device);
        string gguf = GgufFixture.Write(Fixtures.DemoModel);
        var tasks = ReadTasks(TaskFile);
        var expected = new List<int>();
        var right = new List<bool>();
        foreach ((string question, string[] answers, int[] labels) in tasks)
        {
            // The demo model's tokenizer puts BOS (1) first, as llama-perplexity's tokenization does.
            int[][] sequences = [.. answers.Select(a => new[] { 1 }.Concat(LlamaCpp.Tokenize(gguf, [$"{question} {a}"])[0]).ToArray())];
            double[] scores = HellaSwagTests.LlamaCppEndingScores(gguf, sequences);
            int choice = Array.IndexOf(scores, scores.Max());
            double second = scores.Where((_, i) => i != choice).Max();
            Assert.True(scores[choice] - second > 1e-4, $"'{question}': the two best answers' scores are too close to tell apart");
            expected.Add(choice);
            right.Add(labels[choice] == 1);
        }

        Assert.Contains(true, right);    // the fixture's tasks are neither all right nor all wrong for the demo model
        Assert.Contains(false, right);

        JsonElement json = CliRunner.Run("perplexity", "--model", gguf, "--multiple-choice", "--file", TaskFile, "--json", "--device", device).Json;
        Assert.Equal(Enumerable.Range(0, tasks.Count), json.GetProperty("tasks_drawn").EnumerateArray().Select(c => c.GetInt32()));
        Assert.Equal(expected, json.GetProperty("choices").EnumerateArray().Select(c => c.GetInt32()));
        Assert.Equal(right.Count(r => r), json.GetProperty("correct").GetInt32());
        Assert.Equal((double)right.Count(r => r) / tasks.Count, json.GetProperty("accuracy").GetDouble(), 1e-6);
        Assert.Equal((double)tasks.Count / tasks.Sum(t => t.Answers.Length), json.GetProperty("random_chance").GetDouble(), 1e-6);

        // As text, llama-perplexity's lines: the running accuracy after each task, then the totals; three tasks drawn as it draws them.
        CliRunner.Result text = CliRunner.Run("perplexity", "--model", gguf, "--multiple-choice", "--file", TaskFile, "--multiple-choice-tasks", "3", "--device", device);
        Assert.True(text.ExitCode == 0, text.Stderr);
        string[] printed = text.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        int[] drawn = Generation.TaskDrawsTests.Drawn("scaled", 7, 3);
        Assert.Equal("task\tacc_norm", printed[0]);
        int correct = 0;
        for (int t = 0; t < 3; t++)
        {
            correct += right[drawn[t]] ? 1 : 0;
            Assert.Equal(string.Create(CultureInfo.InvariantCulture, $"{t + 1}\t{100.0 * correct / (t + 1):F8}"), printed[t + 1]);
        }

        float p = correct / 3f, chance = 3f / drawn.Sum(t => tasks[t].Answers.Length);
        Assert.Equal(string.Create(CultureInfo.InvariantCulture, $"Final result: {100f * p:F4} +/- {100f * MathF.Sqrt(p * (1 - p) / 2):F4}"), printed[4]);
        Assert.Equal(string.Create(CultureInfo.InvariantCulture, $"Random chance: {100f * chance:F4} +/- {100f * MathF.Sqrt(chance * (1 - chance) / 2):F4}"), printed[5]);
    }

    [Fact]
    public void Errors_OneLineByPlace()
    {
        string directory = Fixtures.TempDirectory();
        byte[] good = File.ReadAllBytes(TaskFile);
        string Write(string name, byte[] bytes)
        {
            string path = Path.Combine(directory, name);
            File.WriteAllBytes(path, bytes);
            return path;
        }

        static byte[] U32(params int[] values) => [.. values.SelectMany(BitConverter.GetBytes)];
        static byte[] Str(string text) => [.. U32(Encoding.UTF8.GetByteCount(text)), .. Encoding.UTF8.GetBytes(text)];
        static byte[] OneTask(byte[] body) => [.. U32(1, 8), .. body];
        byte[] emptySet = U32(0);
        foreach ((string name, byte[] bytes, string message) in new (string, byte[], string)[]
        {
            ("short.bin", [1, 0], "short.bin: 2 bytes, too short for a multiple-choice file"),
            ("none.bin", U32(0), "none.bin: the task count is 0, no tasks"),
            ("table.bin", U32(1000000, 8), "table.bin: 1000000 tasks, but their offset table alone would take 4000000 bytes and the file has 8"),
            ("cut.bin", good[..(good.Length - 3)], "cut.bin, task 6: the file ends at byte"),
            ("offset.bin", [.. U32(1, 9), .. Str("Q"), .. U32(1), .. Str("a"), .. U32(1), .. emptySet], "offset.bin: task 0 starts at byte 8, but the offset table says 9"),
            ("many.bin", OneTask([.. Str("Q"), .. U32(101)]), "many.bin, task 0: 101 mc1 answers at byte 13; llama.cpp's files hold at most 100"),
            ("long.bin", OneTask([.. Str("Q"), .. U32(1), .. U32(5000), .. Encoding.UTF8.GetBytes("abc")]), "long.bin, task 0: mc1 answer 0 is 5000 bytes at byte 21, past the end of the file (24 bytes)"),
            ("empty.bin", OneTask([.. Str("Q"), .. U32(2), .. Str("a"), .. Str(""), .. U32(1, 0), .. emptySet]), "empty.bin, task 0 (byte 8): answer 1 is empty"),
            ("wrong.bin", OneTask([.. Str("Q"), .. U32(2), .. Str("a"), .. Str("b"), .. U32(0, 0), .. emptySet]), "wrong.bin, task 0 (byte 8): no answer is labelled right (1)"),
            ("utf8.bin", OneTask([.. U32(2), 0xc3, 0x28, .. U32(1), .. Str("a"), .. U32(1), .. emptySet]), "utf8.bin, task 0: its question at byte 12 is not UTF-8"),
        })
        {
            CliRunner.Result result = CliRunner.Run("perplexity", "--multiple-choice", "--file", Write(name, bytes));
            Assert.True(result.ExitCode == 2, $"{name}: exit {result.ExitCode}: {result.Stderr}");
            Assert.Contains(message, Assert.Single(result.ErrorLines), StringComparison.Ordinal);
        }

        foreach ((string[] args, string message) in new (string[], string)[]
        {
            (["perplexity", "--multiple-choice", "--file", TaskFile, "--stride", "4"], "--multiple-choice scores its tasks whole; --stride is for perplexity"),
            (["perplexity", "--multiple-choice", "--file", TaskFile, "--winogrande"], "--winogrande and --multiple-choice are two task scores; give one at a time"),
            (["perplexity", "--file", TaskFile, "--multiple-choice-tasks", "2"], "--multiple-choice-tasks goes with --multiple-choice"),
            (["perplexity", "--multiple-choice"], "perplexity --multiple-choice needs --file F"),
        })
        {
            CliRunner.Result result = CliRunner.Run(args);
            Assert.True(result.ExitCode == 2, $"{string.Join(' ', args)}: exit {result.ExitCode}: {result.Stderr}");
            Assert.Contains(message, Assert.Single(result.ErrorLines), StringComparison.Ordinal);
        }
    }
}
