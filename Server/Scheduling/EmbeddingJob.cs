namespace QwenSharp.Server.Scheduling;

/// <summary>
/// What one <c>/v1/embeddings</c> (or <c>/classify</c>, or prompt log-probs') request asks of the scheduler: its inputs'
/// token ids, read on the thread that owns the model, a forward step (or a scored input) at a time between the
/// generation steps. The result (or the failure) completes <see cref="Result"/> (<see cref="Scores"/> for scoring).
/// </summary>
internal sealed class EmbeddingJob
{
    public required IReadOnlyList<int[]> Inputs { get; init; }

    /// <summary>
    /// A <c>/classify</c> request to a sequence classifier: each input's score-head logits come back in place of its
    /// embedding (<see cref="Generation.SequenceClassification"/>).
    /// </summary>
    public bool Classify { get; init; }

    /// <summary>
    /// A request for the prompts' own log-probs (<c>/v1/completions</c> with <c>echo</c> and <c>logprobs</c>): each input
    /// scored token by token (<see cref="Generation.Scorer"/>) with this many alternatives, into <see cref="Scores"/>.
    /// </summary>
    public int? ScoreTop { get; init; }

    /// <summary>The scores of a <see cref="ScoreTop"/> job, in the inputs' order.</summary>
    public TaskCompletionSource<Generation.ScoreResult[]> Scores { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Keep the first this many values (the request's <c>dimensions</c>); null: all hidden_size.</summary>
    public int? Dimensions { get; init; }

    /// <summary>The scale of each of the model's LoRA adapters for this request (see <see cref="GenerationJob.AdapterScales"/>).</summary>
    public float[]? AdapterScales { get; init; }

    /// <summary>The request's deadline and its client's going away.</summary>
    public required CancellationToken Cancellation { get; init; }

    public TaskCompletionSource<float[][]> Result { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
}
