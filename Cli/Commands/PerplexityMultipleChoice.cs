using System.Globalization;
using QwenSharp.Backend;
using QwenSharp.Generation;
using QwenSharp.Qwen2;

namespace QwenSharp.Cli.Commands;

/// <summary>
/// <c>perplexity --multiple-choice</c>: llama-perplexity's multiple-choice score (<see cref="MultipleChoice"/>) over one of
/// llama.cpp's binary task files (ARC, MMLU, TruthfulQA, HellaSwag), a line a task as it prints them (the running
/// accuracy), then the total and the random chance, each with its standard error. Fewer tasks than the file holds are
/// drawn as it draws them (<see cref="TaskDraws.Scaled"/>).
/// </summary>
internal static class PerplexityMultipleChoice
{
    public static int Run(Arguments args, TextWriter stdout, TextWriter stderr)
    {
        using var run = TaskScoreRun<MultipleChoiceTask>.Open(args, stderr, "multiple-choice", "one of llama.cpp's binary task files, e.g. arc-challenge-validation.bin or mmlu-validation.bin", file => MultipleChoice.Parse(TextInput.ReadAllBytes(file), file), TaskDraws.Scaled);
        MultipleChoiceTask[] tasks = run.Tasks;
        var c = CultureInfo.InvariantCulture;
        if (!run.Json)
        {
            stdout.WriteLine("task\tacc_norm");
        }

        int[][][] tokens = [.. tasks.Select(task => task.Answers.Select(answer => run.Encode($"{task.Question} {answer}")).ToArray())];
        (KvCache cache, ForwardState state) = run.Buffers(tokens, lastRows: false);
        int correct = 0, answers = 0;
        var choices = new int[tasks.Length];
        for (int t = 0; t < tasks.Length; t++)
        {
            choices[t] = HellaSwag.Choice(HellaSwag.EndingScores(run.Model, tokens[t], $"{run.File}, task {tasks[t].Index}", cache, state));
            correct += tasks[t].Labels[choices[t]] == 1 ? 1 : 0;
            answers += tasks[t].Answers.Count;
            if (!run.Json)
            {
                stdout.WriteLine(string.Create(c, $"{t + 1}\t{100.0 * correct / (t + 1):F8}"));
            }

            run.Report(t + 1);
        }

        // llama-perplexity's figures, in its f32: the accuracy, and the chance of one guess a task being right.
        (float accuracy, float accuracyError) = Proportion((float)correct / tasks.Length, tasks.Length);
        (float chance, float chanceError) = Proportion((float)tasks.Length / answers, tasks.Length);
        if (run.Json)
        {
            run.WriteJson(stdout, "multiple-choice", correct, choices, w =>
            {
                w.WriteNumber("accuracy", accuracy);
                w.WriteNumber("uncertainty", accuracyError);
                w.WriteNumber("random_chance", chance);
                w.WriteNumber("random_chance_uncertainty", chanceError);
            });
        }
        else
        {
            stdout.WriteLine(string.Create(c, $"Final result: {100f * accuracy:F4} +/- {100f * accuracyError:F4}"));
            stdout.WriteLine(string.Create(c, $"Random chance: {100f * chance:F4} +/- {100f * chanceError:F4}"));
        }

        return 0;
    }

    /// <summary>A proportion over <paramref name="tasks"/> and its standard error (none for one task).</summary>
    private static (float P, float Error) Proportion(float p, int tasks) => (p, tasks > 1 ? MathF.Sqrt(p * (1 - p) / (tasks - 1)) : 0f);
}
