using System.Diagnostics;
using System.Globalization;
using QwenSharp.Backend;
using QwenSharp.Generation;
using QwenSharp.Qwen2;
using QwenSharp.Tokenization;

namespace QwenSharp.Cli.Commands;

/// <summary>
/// <c>perplexity --winogrande</c>: llama-perplexity's Winogrande score (<see cref="Winogrande"/>) over llama.cpp's CSV, a
/// line a task as it prints them (the running accuracy, both choices' scores, the model's choice and the right one), then
/// the total with its standard error.
/// </summary>
internal static class PerplexityWinogrande
{
    public static int Run(Arguments args, TextWriter stdout, TextWriter stderr)
    {
        string file = args.Value("file") ?? throw new UsageException("perplexity --winogrande needs --file F (llama.cpp's winogrande-debiased-eval.csv: index,sentence,choice1,choice2,answer)");
        int? limit = args.Int("winogrande-tasks", 1);
        IReadOnlyList<WinograndeTask> tasks = Winogrande.Parse(TextInput.ReadUtf8File(file), file);
        tasks = tasks.Take(limit ?? tasks.Count).ToArray();
        string directory = ModelLoading.ResolveDirectory(args, stderr);
        Tokenizer tokenizer = TextInput.LoadTokenizer(directory);
        (IBackend backend, Qwen2Model model) = ModelLoading.Load(directory, args, stderr);
        using (backend)
        using (model)
        {
            bool json = args.Flag("json");
            var clock = Stopwatch.StartNew();
            var progress = ProgressBar.For(stderr, "winogrande", tasks.Count);
            var c = CultureInfo.InvariantCulture;
            int[] Encode(string text) => tokenizer.Encode(text, addSpecialTokens: true);
            int[][][] sentences = [.. tasks.Select(t => new[] { Encode(t.First + t.Choice1 + t.Second), Encode(t.First + t.Choice2 + t.Second) })];
            int[][] throughChoice = [.. tasks.Select(t => new[] { Encode(t.First + t.Choice1).Length, Encode(t.First + t.Choice2).Length })];
            int longest = Math.Min(sentences.Max(s => Math.Max(s[0].Length, s[1].Length)), model.Config.MaxPositionEmbeddings);
            int rows = sentences.Max(s => HellaSwag.Rows(s).Rows);
            using KvCache cache = model.CreateKvCache(slots: 2, capacity: longest);
            using ForwardState state = model.CreateState(rows, rows);
            int correct = 0;
            var choices = new int[tasks.Count];
            for (int t = 0; t < tasks.Count; t++)
            {
                (double first, double second) = Winogrande.Scores(model, sentences[t], throughChoice[t], $"{file}, line {tasks[t].Line}", cache, state);
                choices[t] = first > second ? 1 : 2;
                correct += choices[t] == tasks[t].Answer ? 1 : 0;
                if (!json)
                {
                    stdout.WriteLine(string.Create(c, $"{t + 1}\t{100.0 * correct / (t + 1):F4}\t{first,10:F6}  {second,10:F6}  {choices[t]}  {tasks[t].Answer}"));
                }

                progress.Report(t + 1, "tasks");
            }

            progress.Done();
            double p = (double)correct / tasks.Count;
            double sigma = tasks.Count > 1 ? 100 * Math.Sqrt(p * (1 - p) / (tasks.Count - 1)) : 0;
            if (json)
            {
                JsonOutput.Write(stdout, w =>
                {
                    w.WriteStartObject();
                    w.WriteString("method", "winogrande");
                    w.WriteNumber("tasks", tasks.Count);
                    w.WriteNumber("correct", correct);
                    w.WriteNumber("accuracy", p);
                    w.WriteNumber("uncertainty", sigma / 100);
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
                stdout.WriteLine(string.Create(c, $"Final Winogrande score({tasks.Count} tasks): {100 * p:F4} +/- {sigma:F4}"));
            }
        }

        return 0;
    }
}
