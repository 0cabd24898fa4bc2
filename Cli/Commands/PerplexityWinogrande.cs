using System.Globalization;
using QwenSharp.Backend;
using QwenSharp.Generation;
using QwenSharp.Qwen2;

namespace QwenSharp.Cli.Commands;

/// <summary>
/// <c>perplexity --winogrande</c>: llama-perplexity's Winogrande score (<see cref="Winogrande"/>) over llama.cpp's CSV, a
/// line a task as it prints them (the running accuracy, both choices' scores, the model's choice and the right one), then
/// the total with its standard error. Fewer tasks than the file holds are drawn as it draws them (<see cref="TaskDraws.Scaled"/>).
/// </summary>
internal static class PerplexityWinogrande
{
    public static int Run(Arguments args, TextWriter stdout, TextWriter stderr)
    {
        using var run = TaskScoreRun<WinograndeTask>.Open(args, stderr, "winogrande", "llama.cpp's winogrande-debiased-eval.csv: index,sentence,choice1,choice2,answer", file => Winogrande.Parse(TextInput.ReadUtf8File(file), file), TaskDraws.Scaled);
        WinograndeTask[] tasks = run.Tasks;
        var c = CultureInfo.InvariantCulture;
        int[][][] sentences = [.. tasks.Select(t => new[] { run.Encode(t.First + t.Choice1 + t.Second), run.Encode(t.First + t.Choice2 + t.Second) })];
        int[][] throughChoice = [.. tasks.Select(t => new[] { run.Encode(t.First + t.Choice1).Length, run.Encode(t.First + t.Choice2).Length })];
        (KvCache cache, ForwardState state) = run.Buffers(sentences, lastRows: true);
        int correct = 0;
        var choices = new int[tasks.Length];
        for (int t = 0; t < tasks.Length; t++)
        {
            (double first, double second) = Winogrande.Scores(run.Model, sentences[t], throughChoice[t], $"{run.File}, line {tasks[t].Line}", cache, state);
            choices[t] = first > second ? 1 : 2;
            correct += choices[t] == tasks[t].Answer ? 1 : 0;
            if (!run.Json)
            {
                stdout.WriteLine(string.Create(c, $"{t + 1}\t{100.0 * correct / (t + 1):F4}\t{first,10:F6}  {second,10:F6}  {choices[t]}  {tasks[t].Answer}"));
            }

            run.Report(t + 1);
        }

        double p = (double)correct / tasks.Length;
        double sigma = tasks.Length > 1 ? 100 * Math.Sqrt(p * (1 - p) / (tasks.Length - 1)) : 0;
        if (run.Json)
        {
            run.WriteJson(stdout, "winogrande", correct, choices, w =>
            {
                w.WriteNumber("accuracy", p);
                w.WriteNumber("uncertainty", sigma / 100);
            });
        }
        else
        {
            stdout.WriteLine(string.Create(c, $"Final Winogrande score({tasks.Length} tasks): {100 * p:F4} +/- {sigma:F4}"));
        }

        return 0;
    }
}
