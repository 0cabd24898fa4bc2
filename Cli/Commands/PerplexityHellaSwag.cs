using System.Globalization;
using QwenSharp.Backend;
using QwenSharp.Generation;
using QwenSharp.Qwen2;

namespace QwenSharp.Cli.Commands;

/// <summary>
/// <c>perplexity --hellaswag</c>: llama-perplexity's HellaSwag score (acc_norm, <see cref="HellaSwag"/>) over llama.cpp's
/// task file, the tasks in its random order (<see cref="TaskDraws.HellaSwag"/>), a line a task as it prints them (the
/// running accuracy and its 95% Wilson interval), then the total.
/// </summary>
internal static class PerplexityHellaSwag
{
    public static int Run(Arguments args, TextWriter stdout, TextWriter stderr)
    {
        using var run = TaskScoreRun<HellaSwagTask>.Open(args, stderr, "hellaswag", "llama.cpp's hellaswag_val_full.txt: six lines a task", file => HellaSwag.Parse(TextInput.ReadUtf8File(file), file), TaskDraws.HellaSwag);
        HellaSwagTask[] tasks = run.Tasks;
        var c = CultureInfo.InvariantCulture;
        if (!run.Json)
        {
            stdout.WriteLine("task\tacc_norm\t95% confidence interval");
        }

        // Every task's texts first, so one cache and one set of buffers, sized for the largest, serve them all.
        int[][][] tokens = [.. tasks.Select(task => task.Endings.Select(ending => run.Encode($"{task.Context} {ending}")).ToArray())];
        (KvCache cache, ForwardState state) = run.Buffers(tokens, lastRows: false);
        int correct = 0;
        var choices = new int[tasks.Length];
        for (int t = 0; t < tasks.Length; t++)
        {
            choices[t] = HellaSwag.Choice(HellaSwag.EndingScores(run.Model, tokens[t], $"{run.File}, the task at line {tasks[t].Line}", cache, state));
            correct += choices[t] == tasks[t].Gold ? 1 : 0;
            if (!run.Json)
            {
                (double low, double high) = HellaSwag.Interval(correct, t + 1);
                stdout.WriteLine(string.Create(c, $"{t + 1}\t{100.0 * correct / (t + 1):F8}%\t[{100 * low:F4}%, {100 * high:F4}%]"));
            }

            run.Report(t + 1);
        }

        (double lower, double upper) = HellaSwag.Interval(correct, tasks.Length);
        double accuracy = (double)correct / tasks.Length;
        if (run.Json)
        {
            run.WriteJson(stdout, "hellaswag", correct, choices, w =>
            {
                w.WriteNumber("acc_norm", accuracy);
                w.WriteStartArray("confidence_interval");
                w.WriteNumberValue(lower);
                w.WriteNumberValue(upper);
                w.WriteEndArray();
            });
        }
        else
        {
            stdout.WriteLine(string.Create(c, $"acc_norm {100 * accuracy:F4}% over {tasks.Length} tasks, 95% interval [{100 * lower:F4}%, {100 * upper:F4}%]"));
        }

        return 0;
    }
}
