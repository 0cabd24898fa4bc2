using System.Diagnostics;

namespace QwenSharp.Server.Scheduling;

/// <summary>Counters the scheduler keeps for <c>/metrics</c>; read from any thread.</summary>
internal sealed class SchedulerMetrics
{
    private const int Window = 512;
    private readonly long[] _stepTimes = new long[Window];
    private readonly int[] _stepTokens = new int[Window];
    private readonly Lock _lock = new();
    private int _next;
    private long _promptTokens;
    private long _cachedPromptTokens;
    private long _generatedTokens;
    private long _steps;
    private long _jobsFinished;
    private long _jobsCancelled;
    private long _jobsFailed;
    private long _guessedTokens;
    private long _acceptedGuesses;
    private long _firstTokenCount;
    private long _embeddingJobs;
    private long _embeddingInputs;
    private long _embeddingTokens;
    private long _classifyJobs;
    private long _classifyInputs;
    private long _classifyTokens;
    private double _firstTokenSeconds;
    private long _busySlotSteps;
    private double _promptSeconds;
    private double _generationSeconds;

    public long PromptTokens => Interlocked.Read(ref _promptTokens);

    public long CachedPromptTokens => Interlocked.Read(ref _cachedPromptTokens);

    public long GeneratedTokens => Interlocked.Read(ref _generatedTokens);

    public long Steps => Interlocked.Read(ref _steps);

    /// <summary>Tokens guessed by prompt lookup, and of them those the model chose.</summary>
    public (long Guessed, long Accepted) LookupTokens => (Interlocked.Read(ref _guessedTokens), Interlocked.Read(ref _acceptedGuesses));

    /// <summary>Embedding requests answered, the texts in them, and their tokens.</summary>
    public (long Jobs, long Inputs, long Tokens) Embeddings =>
        (Interlocked.Read(ref _embeddingJobs), Interlocked.Read(ref _embeddingInputs), Interlocked.Read(ref _embeddingTokens));

    /// <summary>Classification requests answered (<c>/classify</c>), the inputs in them, and their tokens.</summary>
    public (long Jobs, long Inputs, long Tokens) Classifications =>
        (Interlocked.Read(ref _classifyJobs), Interlocked.Read(ref _classifyInputs), Interlocked.Read(ref _classifyTokens));

    public long JobsFinished => Interlocked.Read(ref _jobsFinished);

    public long JobsCancelled => Interlocked.Read(ref _jobsCancelled);

    public long JobsFailed => Interlocked.Read(ref _jobsFailed);

    /// <summary>Sum and count of the times from entering the queue to the first token.</summary>
    public (double Seconds, long Count) TimeToFirstToken
    {
        get
        {
            lock (_lock)
            {
                return (_firstTokenSeconds, _firstTokenCount);
            }
        }
    }

    /// <summary>New tokens per second over the last 10 seconds of steps.</summary>
    public double RecentTokensPerSecond
    {
        get
        {
            long now = Stopwatch.GetTimestamp();
            long since = now - (10 * Stopwatch.Frequency);
            long tokens = 0, oldest = now;
            lock (_lock)
            {
                for (int i = 0; i < Window; i++)
                {
                    if (_stepTimes[i] > since)
                    {
                        tokens += _stepTokens[i];
                        oldest = Math.Min(oldest, _stepTimes[i]);
                    }
                }
            }

            double seconds = Math.Max((now - oldest) / (double)Stopwatch.Frequency, 1.0);
            return tokens / seconds;
        }
    }

    internal void PromptRead(int read, int cached)
    {
        Interlocked.Add(ref _promptTokens, read + cached);
        Interlocked.Add(ref _cachedPromptTokens, cached);
    }

    /// <summary>Slots busy in a step, summed over the steps (llama-server's n_busy_slots_per_decode is this over <see cref="Steps"/>).</summary>
    public long BusySlotSteps => Interlocked.Read(ref _busySlotSteps);

    /// <summary>
    /// Seconds sequences spent from taking a slot to their first token, and from it to their end, each summed over the
    /// sequences as llama-server sums its slots' t_prompt_processing and t_token_generation (sequences that share steps
    /// count their time each).
    /// </summary>
    public (double Prompt, double Generation) SequenceSeconds
    {
        get
        {
            lock (_lock)
            {
                return (_promptSeconds, _generationSeconds);
            }
        }
    }

    internal void PromptDone(TimeSpan elapsed)
    {
        lock (_lock)
        {
            _promptSeconds += elapsed.TotalSeconds;
        }
    }

    internal void GenerationDone(TimeSpan elapsed)
    {
        lock (_lock)
        {
            _generationSeconds += elapsed.TotalSeconds;
        }
    }

    internal void Step(int newTokens, int busySlots)
    {
        Interlocked.Increment(ref _steps);
        Interlocked.Add(ref _busySlotSteps, busySlots);
        Interlocked.Add(ref _generatedTokens, newTokens);
        lock (_lock)
        {
            _stepTimes[_next] = Stopwatch.GetTimestamp();
            _stepTokens[_next] = newTokens;
            _next = (_next + 1) % Window;
        }
    }

    internal void Guessed(int guessed, int accepted)
    {
        Interlocked.Add(ref _guessedTokens, guessed);
        Interlocked.Add(ref _acceptedGuesses, accepted);
    }

    internal void FirstToken(TimeSpan elapsed)
    {
        TimeToFirstTokenHistogram.Observe(elapsed.TotalSeconds);
        lock (_lock)
        {
            _firstTokenSeconds += elapsed.TotalSeconds;
            _firstTokenCount++;
        }
    }

    internal void Embedded(int inputs, long tokens)
    {
        Interlocked.Increment(ref _embeddingJobs);
        Interlocked.Add(ref _embeddingInputs, inputs);
        Interlocked.Add(ref _embeddingTokens, tokens);
    }

    internal void Classified(int inputs, long tokens)
    {
        Interlocked.Increment(ref _classifyJobs);
        Interlocked.Add(ref _classifyInputs, inputs);
        Interlocked.Add(ref _classifyTokens, tokens);
    }

    internal void JobFinished(GenerationJob job)
    {
        Interlocked.Increment(ref _jobsFinished);
        JobEnded(job, job.FinishedReason);
    }

    internal void JobCancelled(GenerationJob job)
    {
        Interlocked.Increment(ref _jobsCancelled);
        JobEnded(job, "abort");
    }

    internal void JobFailed(GenerationJob job)
    {
        Interlocked.Increment(ref _jobsFailed);
        JobEnded(job, "error");
    }

    // vLLM's request histograms (its bounds, vllm/v1/metrics/loggers.py), read by /metrics as vllm: series.

    /// <summary>Seconds from entering the queue to the first token.</summary>
    public Histogram TimeToFirstTokenHistogram { get; } = new(0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0);

    /// <summary>Seconds between a sequence's consecutive tokens.</summary>
    public Histogram InterTokenLatency { get; } = new(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0);

    /// <summary>A request's seconds from entering the queue to its end; in the queue; from its slots to its first token; from it to the end.</summary>
    public Histogram EndToEndLatency { get; } = new(RequestSeconds);

    public Histogram QueueTime { get; } = new(RequestSeconds);

    public Histogram PrefillTime { get; } = new(RequestSeconds);

    public Histogram DecodeTime { get; } = new(RequestSeconds);

    /// <summary>A request's prompt tokens (all its prompts') and the tokens it made.</summary>
    public Histogram RequestPromptTokens { get; } = new(TokenCounts);

    public Histogram RequestGenerationTokens { get; } = new(TokenCounts);

    /// <summary>Requests ended, by vLLM's finished_reason: stop, length, abort, error.</summary>
    public IReadOnlyList<(string Reason, long Count)> RequestsEnded
    {
        get
        {
            lock (_lock)
            {
                return [.. _ended.Select(pair => (pair.Key, pair.Value))];
            }
        }
    }

    private readonly SortedDictionary<string, long> _ended = new(StringComparer.Ordinal) { ["stop"] = 0, ["length"] = 0, ["abort"] = 0, ["error"] = 0 };

    private static readonly double[] RequestSeconds = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0];

    /// <summary>1, 2, 5 a decade, as vLLM's build_1_2_5_buckets (to a million: past any context).</summary>
    private static readonly double[] TokenCounts = [.. Enumerable.Range(0, 7).SelectMany(d => new[] { 1, 2, 5 }.Select(m => m * Math.Pow(10, d)))];

    /// <summary>Records a request's end: its reason and, for those that reached their slots, its times and tokens.</summary>
    private void JobEnded(GenerationJob job, string reason)
    {
        long now = Stopwatch.GetTimestamp();
        lock (_lock)
        {
            _ended[reason]++;
        }

        EndToEndLatency.Observe(Stopwatch.GetElapsedTime(job.EnqueuedTimestamp, now).TotalSeconds);
        QueueTime.Observe(Stopwatch.GetElapsedTime(job.EnqueuedTimestamp, job.StartedTimestamp == 0 ? now : job.StartedTimestamp).TotalSeconds);
        if (job.StartedTimestamp == 0)
        {
            return;
        }

        RequestPromptTokens.Observe(job.Prompts.Sum(p => p.Length));
        RequestGenerationTokens.Observe(job.CompletionTokens);
        if (job.FirstTokenTimestamp != 0)
        {
            PrefillTime.Observe(Stopwatch.GetElapsedTime(job.StartedTimestamp, job.FirstTokenTimestamp).TotalSeconds);
            DecodeTime.Observe(Stopwatch.GetElapsedTime(job.FirstTokenTimestamp, now).TotalSeconds);
        }
    }
}
