using System.Threading.Channels;
using Microsoft.AspNetCore.Http;
using QwenSharp.Errors;
using QwenSharp.Generation;
using QwenSharp.Sampling;
using QwenSharp.Server.Scheduling;

namespace QwenSharp.Server.Api;

/// <summary>
/// What both completion endpoints share: a checked job from the request's prompts and settings, queued
/// (429 when the queue is full), and its events read back with failures turned into API errors.
/// </summary>
internal static class Jobs
{
    /// <summary>A 400 for a generation request to a sequence classifier, which has no LM head (checked before the request is read further).</summary>
    public static void RequireGenerator(ServerState server)
    {
        if (server.Model.Config.IsSequenceClassifier)
        {
            throw new ApiException(400, $"the model is a {server.Model.Config.Architecture}, whose score head gives a text a logit per label, not next tokens: it classifies (POST /classify{(server.Model.IsReranker ? ", /rerank" : "")}) and does not generate",
                null, "model_does_not_generate");
        }
    }

    public static GenerationJob Create(ServerState server, IReadOnlyList<int[]> prompts, string promptField, int samples, SamplingOverrides overrides,
        int? maxTokens, IReadOnlyList<string> stops, int? logprobs, bool primeText, CancellationToken cancellation, bool ignoreEos = false,
        IReadOnlyList<Qwen2VL.ImagePatches>? pictures = null, Func<ITokenConstraint>? constraint = null, int[]? prediction = null,
        float[]? adapterScales = null, IReadOnlyList<int>? endTokens = null, CodeCompletionStops? codeStops = null, bool logprobsAfterSampling = false)
    {
        for (int p = 0; p < prompts.Count; p++)
        {
            string where = prompts.Count > 1 ? $"prompt {p + 1}" : "the prompt";
            if (prompts[p].Length == 0)
            {
                throw ApiException.BadField(promptField, $"{where} is empty");
            }

            CheckContext(server, prompts[p].Length, where, promptField);

            try
            {
                server.Model.ValidateTokens(prompts[p], where);
            }
            catch (ArgumentException e)
            {
                throw ApiException.BadField(promptField, e.Message);
            }
        }

        int sequences = prompts.Count * samples;
        if (sequences > server.Scheduler.Options.Slots)
        {
            throw ApiException.BadField("n", $"the request needs {sequences} sequences at once ({prompts.Count} prompt(s) x n={samples}); "
                + $"this server runs at most {server.Scheduler.Options.Slots} (--max-concurrent)");
        }

        SamplingOptions sampling;
        try
        {
            sampling = overrides.Resolve(server.Model.GenerationConfig).WithDryBreakers(overrides, server.Tokenizer)
                .WithInfill(overrides, server.Tokenizer, [.. server.EosTokenIds, .. (endTokens ?? []).Except(server.EosTokenIds)]);
            sampling.Validate();
        }
        catch (ArgumentOutOfRangeException e)
        {
            throw ApiException.BadField(e.ParamName ?? "sampling", e.BareMessage());
        }

        return new GenerationJob
        {
            Prompts = prompts,
            SamplesPerPrompt = samples,
            Sampling = sampling,
            Seed = sampling.Seed ?? (sampling.IsGreedy ? 0 : SeededRandom.NewSeed()),
            MaxTokens = maxTokens ?? server.Context,
            StopStrings = stops,
            EosTokenIds = ignoreEos ? [] : [.. server.EosTokenIds, .. (endTokens ?? []).Except(server.EosTokenIds)],
            CodeStops = codeStops,
            Logprobs = logprobs,
            LogprobsAfterSampling = logprobsAfterSampling,
            PrimeTextWithPrompt = primeText,
            Cancellation = cancellation,
            Pictures = pictures ?? [],
            Constraint = constraint,
            Prediction = prediction,
            AdapterScales = adapterScales,
        };
    }

    /// <summary>A prompt or input of <paramref name="tokens"/> tokens fits one slot of the server's context, or a 400 naming <paramref name="param"/>.</summary>
    public static void CheckContext(ServerState server, int tokens, string where, string param)
    {
        if (tokens > server.Context)
        {
            throw new ApiException(400, $"{where} has {tokens} tokens, more than this server's context of {server.Context} tokens", param, "context_length_exceeded");
        }
    }

    public static void Submit(ServerState server, GenerationJob job) =>
        Submit(server, () => server.Scheduler.TryEnqueue(job), "requests are already waiting for a slot");

    public static void Submit(ServerState server, EmbeddingJob job) =>
        Submit(server, () => server.Scheduler.TryEnqueue(job), "embedding requests are already waiting");

    /// <summary>
    /// Queues an embedding (or classification) job and waits for its vectors, its failure turned into an API error
    /// (<see cref="Translate"/>).
    /// </summary>
    public static Task<float[][]> RunAsync(ServerState server, EmbeddingJob job, RequestDeadline deadline) => AwaitAsync(server, job, job.Result.Task, deadline);

    /// <summary>The prompts' own log-probs (a job with <see cref="EmbeddingJob.ScoreTop"/>), each input's scores in order.</summary>
    public static Task<ScoreResult[]> ScoreAsync(ServerState server, EmbeddingJob job, RequestDeadline deadline) => AwaitAsync(server, job, job.Scores.Task, deadline);

    /// <summary>Queues <paramref name="job"/> and waits for <paramref name="result"/>, its failure turned into an API error.</summary>
    private static async Task<T> AwaitAsync<T>(ServerState server, EmbeddingJob job, Task<T> result, RequestDeadline deadline)
    {
        Submit(server, job);
        try
        {
            return await result.ConfigureAwait(false);
        }
        catch (Exception e)
        {
            throw Translate(e, deadline);
        }
    }

    /// <summary>Queues a job: 429 when the queue is full, 503 once the server is shutting down.</summary>
    private static void Submit(ServerState server, Func<bool> enqueue, string waiting)
    {
        bool queued;
        try
        {
            queued = enqueue();
        }
        catch (InvalidOperationException)
        {
            throw new ApiException(503, "the server is shutting down", null, "shutting_down", "server_error");
        }

        if (!queued)
        {
            throw new ApiException(429, $"the server is busy: {server.Scheduler.Options.MaxQueue} {waiting}; retry later",
                null, "rate_limit_exceeded", "rate_limit_error");
        }
    }

    /// <summary>The job's next event, or null after the last; a failed job throws its error as an API error.</summary>
    public static async ValueTask<JobEvent?> NextAsync(GenerationJob job, RequestDeadline deadline)
    {
        try
        {
            while (await job.Events.WaitToReadAsync().ConfigureAwait(false))
            {
                if (job.Events.TryRead(out JobEvent? next))
                {
                    return next;
                }
            }

            return null;
        }
        catch (ChannelClosedException e) when (e.InnerException is not null)
        {
            throw Translate(e.InnerException, deadline);
        }
        catch (Exception e) when (e is not ApiException)
        {
            throw Translate(e, deadline);
        }
    }

    /// <summary>Every event of a job folded into its choices (text, log-probs, why each ended), and the usage of its last event.</summary>
    public static async Task<(ChoiceState[] Choices, JobFinishedEvent Usage)> CollectAsync(GenerationJob job, RequestDeadline deadline)
    {
        ChoiceState[] choices = [.. Enumerable.Range(0, job.Choices).Select(_ => new ChoiceState())];
        JobFinishedEvent? usage = null;
        while (await NextAsync(job, deadline).ConfigureAwait(false) is JobEvent next)
        {
            usage = Fold(choices, next) ?? usage;
        }

        return (choices, usage ?? throw new InvalidOperationException("the job ended without its usage"));
    }

    /// <summary>An event folded into its choice (its text, log-probs, why it ended and at which stop string); the job's usage when it is the last.</summary>
    public static JobFinishedEvent? Fold(ChoiceState[] choices, JobEvent next)
    {
        switch (next)
        {
            case TokenEvent token:
                choices[token.Choice].Text.Append(token.Text);
                if (token.Logprobs is not null)
                {
                    choices[token.Choice].Logprobs.Add(token.Logprobs);
                }

                return null;
            case ChoiceFinishedEvent finished:
                choices[finished.Choice].Text.Append(finished.Text);
                choices[finished.Choice].Reason = finished.Reason;
                choices[finished.Choice].StopWord = finished.StopWord;
                return null;
            default:
                return next as JobFinishedEvent;
        }
    }

    /// <summary>
    /// Streams a job as server-sent events: <paramref name="write"/> turns each event into chunks, then (OpenAI's streams,
    /// <paramref name="done"/>) <c>data: [DONE]</c>. A failure before the first event still gets a status code; after it,
    /// the error travels as an event (<paramref name="failed"/>'s, else OpenAI's chat error), as OpenAI's streams report one.
    /// A client that goes away ends it quietly.
    /// </summary>
    public static async Task StreamAsync(HttpContext http, ServerState server, GenerationJob job, RequestDeadline deadline, Func<JobEvent, Task> write, bool done = true,
        Func<ApiException, Task>? failed = null)
    {
        JobEvent? first;
        try
        {
            first = await NextAsync(job, deadline).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            return;
        }

        ResponseJson.StartEventStream(http);
        try
        {
            for (JobEvent? next = first; next is not null; next = await NextAsync(job, deadline).ConfigureAwait(false))
            {
                await write(next).ConfigureAwait(false);
            }

            if (done)
            {
                await ResponseJson.WriteDoneAsync(http).ConfigureAwait(false);
            }
        }
        catch (ApiException e)
        {
            server.CountError(e.Status);
            await (failed?.Invoke(e) ?? ResponseJson.WriteEventAsync(http, w => ResponseJson.WriteError(w, e))).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // The client went away: nothing more to say.
        }
    }

    /// <summary>A job's failure as the API error it answers (a cancellation the client caused stays one).</summary>
    public static Exception Translate(Exception e, RequestDeadline deadline) => e switch
    {
        OperationCanceledException when deadline.TimedOut => new ApiException(504,
            $"the request took longer than this server's limit of {deadline.Limit.TotalSeconds:0} s", null, "timeout", "server_error"),
        OperationCanceledException when deadline.Aborted.IsCancellationRequested => e,
        // Neither the client nor the clock: the server cancelled it at the end of a drain.
        OperationCanceledException => new ApiException(503, "the server is shutting down", null, "shutting_down", "server_error"),
        ArgumentException => new ApiException(400, e.Message),
        NotSupportedException => new ApiException(501, e.Message, null, "not_implemented", "server_error"),
        _ => new ApiException(500, $"generation failed: {e.Message}", null, "generation_failed", "server_error"),
    };
}

/// <summary>A request's cancellation: the client going away, or the server's time limit passing.</summary>
internal sealed class RequestDeadline : IDisposable
{
    private readonly CancellationTokenSource _timeout;
    private readonly CancellationTokenSource _either;

    public RequestDeadline(CancellationToken aborted, TimeSpan limit)
    {
        Limit = limit;
        _timeout = new CancellationTokenSource(limit);
        _either = CancellationTokenSource.CreateLinkedTokenSource(aborted, _timeout.Token);
        Aborted = aborted;
    }

    public TimeSpan Limit { get; }

    public CancellationToken Aborted { get; }

    public CancellationToken Token => _either.Token;

    public bool TimedOut => _timeout.IsCancellationRequested && !Aborted.IsCancellationRequested;

    public void Dispose()
    {
        _either.Dispose();
        _timeout.Dispose();
    }
}
