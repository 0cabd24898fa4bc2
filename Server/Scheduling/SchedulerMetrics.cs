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

    internal void JobFinished() => Interlocked.Increment(ref _jobsFinished);

    internal void JobCancelled() => Interlocked.Increment(ref _jobsCancelled);

    internal void JobFailed() => Interlocked.Increment(ref _jobsFailed);
}
