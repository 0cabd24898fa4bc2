namespace QwenSharp;

/// <summary>
/// What a sequence classifier (a reward model, a classifier) made of one text: a logit per label, and the scores
/// transformers' text-classification pipeline gives (a softmax over the labels; a sigmoid for a single label or
/// multi-label classification; the logits themselves for regression).
/// </summary>
/// <param name="Labels">The model's labels (config.json's id2label), in the order of the logits.</param>
/// <param name="Logits">The score head's output: for a reward model, its one logit is the reward.</param>
/// <param name="Scores">The logits as the pipeline turns them into scores.</param>
/// <param name="TokenCount">Tokens the text took.</param>
public sealed record TextClassification(IReadOnlyList<string> Labels, IReadOnlyList<float> Logits, IReadOnlyList<float> Scores, int TokenCount)
{
    /// <summary>The label of the highest score.</summary>
    public string Label => Labels[Qwen2.ClassifierHead.Best(Scores)];
}
