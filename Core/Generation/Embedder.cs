using QwenSharp.Errors;
using QwenSharp.Qwen2;

namespace QwenSharp.Generation;

/// <summary>
/// Text embeddings: each input's tokens through the model (as a prompt is read, keys and values into a cache of its
/// own), then its last hidden states pooled (<see cref="EmbeddingPooling"/>) and, optionally, scaled to unit length.
/// Several short inputs share a step, each in its own slot; a long one is read in chunks. One run at a time: the
/// buffers of a step are the embedder's, allocated once.
/// </summary>
public sealed class Embedder : IDisposable
{
    /// <summary>Tokens per forward step: every one may be an output row (mean pooling), so its hidden states are kept.</summary>
    public const int DefaultChunkTokens = 256;

    private ForwardState _state;
    private TokenBatch _batch;
    private float[] _hidden;
    private EmbeddingRun? _current;

    public Embedder(Qwen2Model model, int chunkTokens = DefaultChunkTokens)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(chunkTokens);
        Model = model;
        ChunkTokens = chunkTokens;
        _state = model.CreateHiddenState(chunkTokens);
        _batch = new TokenBatch(chunkTokens);
        _hidden = new float[checked(chunkTokens * model.Config.HiddenSize)];
    }

    public Qwen2Model Model { get; }

    public int ChunkTokens { get; }

    /// <summary>
    /// Tokens a step holds now: <see cref="ChunkTokens"/>, or more once a bidirectional run needed a longer text whole in
    /// one step (as llama.cpp needs its batch to hold a non-causal text whole).
    /// </summary>
    public int Rows => _batch.Capacity;

    /// <summary>Length of each embedding: the model's hidden_size, or its last Dense module's out_features.</summary>
    public int Dimensions => Model.EmbeddingDimensions;

    /// <summary>The embeddings of <paramref name="inputs"/> (token ids, each at most the model's context), in their order.</summary>
    /// <param name="pooling">How each input's hidden states become one vector; null: the model's (<see cref="Qwen2Model.EmbeddingConfig"/>).</param>
    /// <param name="normalize">Scale each vector to unit length; null: the model's.</param>
    /// <param name="dimensions">Keep only the first this many values (before normalizing), for models trained to allow it
    /// (Matryoshka); null: all hidden_size.</param>
    /// <param name="bidirectional">Every token attends to every token of its text (see <see cref="EmbeddingConfig.Bidirectional"/>);
    /// null: the model's.</param>
    /// <param name="adapterScales">The scale of each of the model's LoRA adapters for these inputs; null: the adapters' own.</param>
    public float[][] Embed(IReadOnlyList<IReadOnlyList<int>> inputs, EmbeddingPooling? pooling = null, bool? normalize = null, int? dimensions = null,
        CancellationToken cancellationToken = default, bool? bidirectional = null, float[]? adapterScales = null)
    {
        using EmbeddingRun run = Start(inputs, pooling, normalize, dimensions, bidirectional, adapterScales);
        while (!run.Step())
        {
            cancellationToken.ThrowIfCancellationRequested();
        }

        return run.Results;
    }

    /// <summary>
    /// Starts embedding <paramref name="inputs"/> (see <see cref="Embed"/>); each <see cref="EmbeddingRun.Step"/> then runs
    /// one forward step, so a caller that owns the model (the server's scheduler) can interleave it with other work.
    /// </summary>
    /// <param name="adapterScales">The scale of each of the model's LoRA adapters for these inputs (a server's request); null: the adapters' own.</param>
    public EmbeddingRun Start(IReadOnlyList<IReadOnlyList<int>> inputs, EmbeddingPooling? pooling = null, bool? normalize = null, int? dimensions = null,
        bool? bidirectional = null, float[]? adapterScales = null)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        if (_current is { IsDisposed: false })
        {
            throw new InvalidOperationException("the embedder is still running another batch of inputs");
        }

        EmbeddingConfig config = Model.EmbeddingConfig;
        if (config.Unsupported is string why)
        {
            QwenThrow.NotSupported(why);
        }

        if (pooling is EmbeddingPooling given && !Enum.IsDefined(given))
        {
            QwenThrow.ArgumentOutOfRange(nameof(pooling), pooling, $"pooling {pooling} is not one of last, mean, cls");
        }

        if (dimensions is int d && (d < 1 || d > Dimensions))
        {
            QwenThrow.ArgumentOutOfRange(nameof(dimensions), d, $"dimensions {d} is outside 1..{Dimensions} (the model's embedding size)");
        }

        if (inputs.Count == 0)
        {
            QwenThrow.Argument("there are no inputs to embed", nameof(inputs));
        }

        if (adapterScales is not null && (adapterScales.Length != Model.Adapters.Count || !adapterScales.All(float.IsFinite)))
        {
            QwenThrow.Argument($"{adapterScales.Length} adapter scale(s) for the model's {Model.Adapters.Count} LoRA adapter(s), one finite scale each", nameof(adapterScales));
        }

        int context = Model.Config.MaxPositionEmbeddings;
        for (int i = 0; i < inputs.Count; i++)
        {
            IReadOnlyList<int> tokens = inputs[i];
            if (tokens is not { Count: > 0 })
            {
                QwenThrow.Argument($"input {i} has no tokens", nameof(inputs));
            }

            if (tokens.Count > context)
            {
                QwenThrow.Argument(
                    $"input {i} has {tokens.Count} tokens, more than the model's context of {context} (max_position_embeddings)",
                    nameof(inputs));
            }

            Model.ValidateTokens(tokens, $"input {i}");
        }

        bool whole = bidirectional ?? config.Bidirectional;
        if (whole)
        {
            EnsureRows(inputs.Max(t => t.Count));
        }

        _current = new EmbeddingRun(this, inputs, pooling ?? config.Pooling, normalize ?? config.Normalize, dimensions ?? Dimensions, whole, adapterScales);
        return _current;
    }

    internal ForwardState State => _state;

    internal TokenBatch Batch => _batch;

    internal float[] Hidden => _hidden;

    /// <summary>Grows the step's buffers to hold <paramref name="rows"/> tokens (a bidirectional text read whole).</summary>
    private void EnsureRows(int rows)
    {
        if (rows <= _batch.Capacity)
        {
            return;
        }

        ForwardState state = Model.CreateHiddenState(rows);
        _state.Dispose();
        _state = state;
        _batch = new TokenBatch(rows);
        _hidden = new float[checked(rows * Model.Config.HiddenSize)];
    }

    public void Dispose() => _state.Dispose();
}
