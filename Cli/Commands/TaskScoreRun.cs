using System.Diagnostics;
using System.Text.Json;
using QwenSharp.Backend;
using QwenSharp.Generation;
using QwenSharp.Qwen2;
using QwenSharp.Tokenization;

namespace QwenSharp.Cli.Commands;

/// <summary>
/// What perplexity's task scores (<c>--hellaswag</c>, <c>--winogrande</c>, <c>--multiple-choice</c>) share: the task
/// file and the tasks drawn from it, the model and its tokenizer, the progress bar, the clock, and the JSON summary.
/// </summary>
/// <typeparam name="TTask">A task as the method's file holds it.</typeparam>
internal sealed class TaskScoreRun<TTask> : IDisposable
{
    private readonly IBackend _backend;
    private readonly ProgressBar _progress;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private KvCache? _cache;
    private ForwardState? _state;

    private TaskScoreRun(Arguments args, TextWriter stderr, string method, string file, IReadOnlyList<TTask> all, int[] drawn)
    {
        (File, Drawn, Tasks) = (file, drawn, [.. drawn.Select(i => all[i])]);
        string directory = ModelLoading.ResolveDirectory(args, stderr);
        Tokenizer = TextInput.LoadTokenizer(directory);
        (_backend, Model) = ModelLoading.Load(directory, args, stderr);
        Json = args.Flag("json");
        _progress = ProgressBar.For(stderr, method, drawn.Length);
    }

    /// <summary>The task file.</summary>
    public string File { get; }

    /// <summary>The file's indices of the tasks to score, in the order scored.</summary>
    public int[] Drawn { get; }

    /// <summary>The tasks to score, in order.</summary>
    public TTask[] Tasks { get; }

    public Tokenizer Tokenizer { get; }

    public Qwen2Model Model { get; }

    public bool Json { get; }

    /// <summary>
    /// Reads the task file that <c>--file</c> names (<paramref name="expected"/> says what it should hold), draws the tasks
    /// <c>--METHOD-tasks N</c> asks for (all without it) with <paramref name="draw"/>, then loads the model, so that the
    /// file's errors come before the model's load.
    /// </summary>
    public static TaskScoreRun<TTask> Open(Arguments args, TextWriter stderr, string method, string expected, Func<string, IReadOnlyList<TTask>> read, Func<int, int, int[]> draw)
    {
        string file = args.Value("file") ?? throw new UsageException($"perplexity --{method} needs --file F ({expected})");
        IReadOnlyList<TTask> all = read(file);
        int[] drawn = draw(all.Count, Math.Min(args.Int($"{method}-tasks", 1) ?? all.Count, all.Count));
        return new TaskScoreRun<TTask>(args, stderr, method, file, all, drawn);
    }

    /// <summary>The text's token ids, BOS first where the tokenizer adds one (as llama-perplexity tokenizes its tasks).</summary>
    public int[] Encode(string text) => Tokenizer.Encode(text, addSpecialTokens: true);

    /// <summary>
    /// One cache and one set of buffers sized for the largest of every task's texts (<see cref="SharedPrefixBatch.Rows"/>),
    /// so that the tasks allocate nothing each; the run disposes them.
    /// </summary>
    public (KvCache Cache, ForwardState State) Buffers(IReadOnlyList<int[][]> texts, bool lastRows)
    {
        int longest = Math.Min(texts.Max(t => t.Max(s => s.Length)), Model.Config.MaxPositionEmbeddings);
        (int rows, int logitRows) = texts.Select(t => SharedPrefixBatch.Rows(t, lastRows)).Aggregate((a, b) => (Math.Max(a.Rows, b.Rows), Math.Max(a.LogitRows, b.LogitRows)));
        _cache = Model.CreateKvCache(slots: texts.Max(t => t.Length), capacity: longest);
        _state = Model.CreateState(rows, logitRows);
        return (_cache, _state);
    }

    public void Report(int done) => _progress.Report(done, "tasks");

    /// <summary>
    /// The JSON summary: the method, how many tasks and how many right, the method's own figures, the file's indices of the
    /// tasks in the order scored (<c>tasks_drawn</c>), the model's choice for each, and the rate.
    /// </summary>
    public void WriteJson(TextWriter stdout, string method, int correct, IReadOnlyList<int> choices, Action<Utf8JsonWriter> figures) =>
        JsonOutput.Write(stdout, w =>
        {
            w.WriteStartObject();
            w.WriteString("method", method);
            w.WriteNumber("tasks", Drawn.Length);
            w.WriteNumber("correct", correct);
            figures(w);
            w.WriteStartArray("tasks_drawn");
            foreach (int index in Drawn)
            {
                w.WriteNumberValue(index);
            }

            w.WriteEndArray();
            w.WriteStartArray("choices");
            foreach (int choice in choices)
            {
                w.WriteNumberValue(choice);
            }

            w.WriteEndArray();
            w.WriteNumber("tasks_per_s", Math.Round(Drawn.Length / Math.Max(_clock.Elapsed.TotalSeconds, 1e-9), 3));
            w.WriteEndObject();
        });

    public void Dispose()
    {
        _progress.Done();
        _state?.Dispose();
        _cache?.Dispose();
        Model.Dispose();
        _backend.Dispose();
    }
}
