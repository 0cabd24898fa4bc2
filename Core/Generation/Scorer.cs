using QwenSharp.Backend;
using QwenSharp.Errors;
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
        if (vision is not null && !vision.Tokens.SequenceEqual(tokens))
        {
            QwenThrow.Argument("the tokens differ from their vision prompt's", nameof(vision));
        }

        if (tokens.Count == 0)
        {
            QwenThrow.Argument("there are no tokens to score", nameof(tokens));
        }

        if (tokens.Count > model.Config.MaxPositionEmbeddings)
        {
            QwenThrow.Argument(
                $"the sequence has {tokens.Count} tokens, more than the model's context of {model.Config.MaxPositionEmbeddings} (max_position_embeddings)",
                nameof(tokens));
        }

        model.ValidateTokens(tokens, "sequence");
        int chunk = Math.Min(chunkTokens, tokens.Count);
        using KvCache cache = model.CreateKvCache(slots: 1, capacity: tokens.Count);
        using ForwardState state = model.CreateState(chunk, chunk);
        var batch = new TokenBatch(chunk);
        var positions = new PositionScore[tokens.Count];
        double nllSum = 0;
        int targets = 0;
        for (int start = 0; start < tokens.Count; start += chunk)
        {
            int end = Math.Min(start + chunk, tokens.Count);
            batch.Clear();
            for (int p = start; p < end; p++)
            {
                if (vision is null)
                {
                    batch.Add(tokens[p], p, slot: 0, wantLogits: true, adapterScales);
                }
                else
                {
                    vision.AddToBatch(batch, p, slot: 0, wantLogits: true);
                    batch.SetAdapterScales(batch.Count - 1, adapterScales);
                }
            }

            model.Forward(batch, cache, state);
            for (int p = start; p < end; p++)
            {
                ReadOnlySpan<float> logits = state.LogitsOf(p - start);
                double logSumExp = LogProbs.LogSumExp(logits);
                int? next = p + 1 < tokens.Count ? tokens[p + 1] : null;

                // A picture's pads are not text to predict: no log-prob, and not in the mean (as transformers' labels mask them).
                bool scored = next is int n && !(vision is not null && n == model.Config.ImageTokenId);
                double? nextLogprob = scored ? logits[next!.Value] - logSumExp : null;
                nllSum -= nextLogprob ?? 0;
                targets += scored ? 1 : 0;
                positions[p] = new PositionScore(next, nextLogprob, LogProbs.Top(logits, top, logSumExp), logSumExp);
            }
        }

        return new ScoreResult(positions, targets > 0 ? nllSum / targets : null);
    }
}
