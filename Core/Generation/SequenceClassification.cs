using QwenSharp.Qwen2;

namespace QwenSharp.Generation;

/// <summary>
/// What a sequence classifier (<see cref="Qwen2Config.IsSequenceClassifier"/>: a reward model, a classifier) makes of
/// texts, as transformers' <c>*ForSequenceClassification</c> computes it: each text read as a prompt, and the final-normed
/// hidden state of its last token that is not padding through the score head (<see cref="ClassifierHead"/>).
/// </summary>
public static class SequenceClassification
{
    /// <summary>The logits of each of <paramref name="inputs"/> (token ids), one per label, in the inputs' order.</summary>
    /// <param name="embedder">The steps' buffers, over the classifier model.</param>
    /// <param name="adapterScales">The scale of each of the model's LoRA adapters for these inputs; null: the adapters' own.</param>
    public static float[][] Logits(Embedder embedder, IReadOnlyList<IReadOnlyList<int>> inputs, CancellationToken cancellationToken = default,
        float[]? adapterScales = null)
    {
        using EmbeddingRun run = Start(embedder, inputs, adapterScales);
        while (!run.Step())
        {
            cancellationToken.ThrowIfCancellationRequested();
        }

        return Logits(embedder.Model, run);
    }

    /// <summary>
    /// Starts reading <paramref name="inputs"/> (see <see cref="Logits(Embedder, IReadOnlyList{IReadOnlyList{int}}, CancellationToken, float[])"/>),
    /// a forward step per <see cref="EmbeddingRun.Step"/>, so a caller that owns the model (the server's scheduler) can
    /// interleave it with other work; <see cref="Logits(Qwen2Model, EmbeddingRun)"/> then gives the logits.
    /// </summary>
    public static EmbeddingRun Start(Embedder embedder, IReadOnlyList<IReadOnlyList<int>> inputs, float[]? adapterScales = null)
    {
        ArgumentNullException.ThrowIfNull(embedder);
        ArgumentNullException.ThrowIfNull(inputs);
        ClassifierHead head = embedder.Model.RequireClassifier(nameof(SequenceClassification));

        // Attention is causal, so the padding after the pooled token changes nothing it sees: it is not read at all.
        int[][] pooled = [.. inputs.Select(ids => ids is null ? null! : ids.Take(head.PooledPosition(ids) + 1).ToArray())];
        return embedder.Start(pooled, EmbeddingPooling.Last, normalize: false, dimensions: null, bidirectional: false, adapterScales);
    }

    /// <summary>The logits of a finished <see cref="Start"/>ed run's inputs, in their order.</summary>
    public static float[][] Logits(Qwen2Model model, EmbeddingRun run)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(run);
        ClassifierHead head = model.RequireClassifier(nameof(SequenceClassification));
        if (!run.IsDone || run.Pooling != EmbeddingPooling.Last || run.Normalized)
        {
            throw new InvalidOperationException("the run is not a finished classification run (SequenceClassification.Start)");
        }

        return [.. run.Results.Select(h => head.Logits(h))];
    }
}
