using QwenSharp.Qwen2;
using QwenSharp.Server.Scheduling;
using QwenSharp.Tokenization;

namespace QwenSharp.Server;

/// <summary>What every endpoint shares: the model and its tokenizer, the scheduler, the options, and the HTTP-level counters.</summary>
internal sealed class ServerState(Qwen2Model model, Tokenizer tokenizer, IReadOnlyList<int> eosTokenIds, BatchScheduler scheduler, ServerOptions options, string modelName,
    IReadOnlyList<string>? adapterNames = null)
{
    private long _requests;
    private long _rejected;
    private long _badRequests;
    private long _inFlight;

    public Qwen2Model Model { get; } = model;

    public Tokenizer Tokenizer { get; } = tokenizer;

    /// <summary>Ids that end a choice (generation_config.json's, else config.json's and the tokenizer's).</summary>
    public IReadOnlyList<int> EosTokenIds { get; } = eosTokenIds;

    public BatchScheduler Scheduler { get; } = scheduler;

    public ServerOptions Options { get; } = options;

    public string ModelName { get; } = modelName;

    /// <summary>The model's LoRA adapters and the scales each request runs them at.</summary>
    public Api.ServedAdapters Adapters { get; } = new(model, adapterNames, modelName);

    public DateTimeOffset Started { get; } = DateTimeOffset.UtcNow;

    /// <summary>The Responses API's stored responses; null when <see cref="ServerOptions.StoredResponses"/> is 0.</summary>
    public Api.ResponseStore? Responses { get; } = options.StoredResponses > 0 ? new(options.StoredResponses) : null;

    /// <summary>What <c>response_format</c> holds answers to (JSON object, JSON schema); masks shared by every request.</summary>
    public ConstrainedOutput Constrained { get; } = new(tokenizer, model.Config.VocabSize, eosTokenIds);

    /// <summary>llama-server's <c>/metrics</c> series, and the bucket its throughput gauges cover.</summary>
    public Api.LlamaCppMetrics LlamaCppMetrics { get; } = new();

    public int Context => Scheduler.Options.Context;

    public long Requests => Interlocked.Read(ref _requests);

    public long Rejected => Interlocked.Read(ref _rejected);

    public long BadRequests => Interlocked.Read(ref _badRequests);

    public long InFlight => Interlocked.Read(ref _inFlight);

    public void RequestStarted()
    {
        Interlocked.Increment(ref _requests);
        Interlocked.Increment(ref _inFlight);
    }

    public void RequestEnded() => Interlocked.Decrement(ref _inFlight);

    public void CountError(int status)
    {
        if (status == 429)
        {
            Interlocked.Increment(ref _rejected);
        }
        else if (status is >= 400 and < 500)
        {
            Interlocked.Increment(ref _badRequests);
        }
    }
}
