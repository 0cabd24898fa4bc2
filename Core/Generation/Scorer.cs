using QwenSharp.Qwen2;

namespace QwenSharp.Generation;

/// <summary>The model's distribution after tokens 0..i: the actual next token's log-prob (absent at the end) and the top alternatives.</summary>
public sealed record PositionScore(int? NextId, double? NextLogprob, IReadOnlyList<TokenLogprob> Top, double LogSumExp);

/// <summary>Per-position scores of a token sequence, and its mean negative log-likelihood over tokens 1..n-1.</summary>
public sealed record ScoreResult(IReadOnlyList<PositionScore> Positions, double? MeanNll)
{
    public double? Perplexity => MeanNll is double nll ? Math.Exp(nll) : null;
}

/// <summary>Teacher-forced scoring: feeds a sequence through the model in chunks and reads every position's logits.</summary>
public static class Scorer
{
    /// <summary>Rows per forward step: all their logits are kept at once, [rows, vocab] in f32.</summary>
    public const int DefaultChunkTokens = 64;

    /// <param name="vision">The prompt's pictures laid out for a Qwen2-VL model, whose token ids are <paramref name="tokens"/>; null for text.</param>
    /// <param name="adapterScales">The scale of each of the model's LoRA adapters (see <see cref="TokenBatch.AdapterScalesOf"/>); null: their own.</param>
    public static ScoreResult Score(Qwen2Model model, IReadOnlyList<int> tokens, int top, int chunkTokens = DefaultChunkTokens,
        Qwen2VL.VisionPrompt? vision = null, float[]? adapterScales = null)
    {
        using var run = new ScoreRun(model, tokens, top, chunkTokens, vision, adapterScales);
        while (!run.Step())
        {
        }

        return run.Result;
    }
}
