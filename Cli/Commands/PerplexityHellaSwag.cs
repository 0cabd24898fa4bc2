using System.Diagnostics;
using System.Globalization;
using QwenSharp.Backend;
using QwenSharp.Generation;
using QwenSharp.Qwen2;
using QwenSharp.Tokenization;

namespace QwenSharp.Cli.Commands;

/// <summary>
/// <c>perplexity --hellaswag</c>: llama-perplexity's HellaSwag score (acc_norm, <see cref="HellaSwag"/>) over llama.cpp's
/// task file, a line a task as it prints them (the running accuracy and its 95% Wilson interval), then the total.
/// </summary>
internal static class PerplexityHellaSwag
{
    public static int Run(Arguments args, TextWriter stdout, TextWriter stderr)
    {
        string file = args.Value("file") ?? throw new UsageException("perplexity --hellaswag needs --file F (llama.cpp's hellaswag_val_full.txt: six lines a task)");
        int? limit = args.Int("hellaswag-tasks", 1);
        IReadOnlyList<HellaSwagTask> tasks = HellaSwag.Parse(TextInput.ReadUtf8File(file), file);
        tasks = tasks.Take(limit ?? tasks.Count).ToArray();
        string directory = ModelLoading.ResolveDirectory(args, stderr);
        Tokenizer tokenizer = TextInput.LoadTokenizer(directory);
        (IBackend backend, Qwen2Model model) = ModelLoading.Load(directory, args, stderr);
        using (backend)
        using (model)
        {
            bool json = args.Flag("json");
            var clock = Stopwatch.StartNew();
            var progress = ProgressBar.For(stderr, "hellaswag", tasks.Count);
            var c = CultureInfo.InvariantCulture;
            int correct = 0;
            var choices = new int[tasks.Count];
            if (!json)
            {
                stdout.WriteLine("task\tacc_norm\t95% confidence interval");
            }

            // Every task's texts first, so one cache and one set of buffers, sized for the largest, serve them all.
            int[][][] tokens = [.. tasks.Select(task => task.Endings.Select(ending => tokenizer.Encode($"{task.Context} {ending}", addSpecialTokens: true)).ToArray())];
            int longest = Math.Min(tokens.Max(t => t.Max(s => s.Length)), model.Config.MaxPositionEmbeddings);
            (int rows, int logitRows) = tokens.Select(HellaSwag.Rows).Aggregate((a, b) => (Math.Max(a.Rows, b.Rows), Math.Max(a.LogitRows, b.LogitRows)));
            using KvCache cache = model.CreateKvCache(slots: 4, capacity: longest);
            using ForwardState state = model.CreateState(rows, logitRows);
            for (int t = 0; t < tasks.Count; t++)
            {
                HellaSwagTask task = tasks[t];
                choices[t] = HellaSwag.Choice(HellaSwag.EndingScores(model, tokens[t], $"{file}, the task at line {task.Line}", cache, state));
                correct += choices[t] == task.Gold ? 1 : 0;
                if (!json)
                {
                    (double low, double high) = HellaSwag.Interval(correct, t + 1);
                    stdout.WriteLine(string.Create(c, $"{t + 1}\t{100.0 * correct / (t + 1):F8}%\t[{100 * low:F4}%, {100 * high:F4}%]"));
                }

                progress.Report(t + 1, "tasks");
            }

            progress.Done();
            (double lower, double upper) = HellaSwag.Interval(correct, tasks.Count);
            double accuracy = (double)correct / tasks.Count;
            if (json)
            {
                JsonOutput.Write(stdout, w =>
                {
                    w.WriteStartObject();
                    w.WriteString("method", "hellaswag");
                    w.WriteNumber("tasks", tasks.Count);
                    w.WriteNumber("correct", correct);
                    w.WriteNumber("acc_norm", accuracy);
                    w.WriteStartArray("confidence_interval");
                    w.WriteNumberValue(lower);
                    w.WriteNumberValue(upper);
                    w.WriteEndArray();
                    w.WriteStartArray("choices");
                    foreach (int choice in choices)
                    {
                        w.WriteNumberValue(choice);
                    }

                    w.WriteEndArray();
                    w.WriteNumber("tasks_per_s", Math.Round(tasks.Count / Math.Max(clock.Elapsed.TotalSeconds, 1e-9), 3));
                    w.WriteEndObject();
                });
            }
            else
            {
                stdout.WriteLine(string.Create(c, $"acc_norm {100 * accuracy:F4}% over {tasks.Count} tasks, 95% interval [{100 * lower:F4}%, {100 * upper:F4}%]"));
            }
        }

        return 0;
    }
}
