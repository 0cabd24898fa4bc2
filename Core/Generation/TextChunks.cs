using QwenSharp.Backend;
using QwenSharp.Errors;
using QwenSharp.Formats;
using QwenSharp.Qwen2;

namespace QwenSharp.Generation;

/// <summary>
/// llama-perplexity's way through a text: cut into chunks of a context's tokens, each read alone from an empty cache (its
/// first token replaced by BOS where the model's tokenizer adds one), and only its second half scored
/// (<see cref="LogitsBaseFile.FirstScored"/> to the one before the last), so every scored token has at least half a
/// chunk before it. Its figures then compare with llama.cpp's own on the same text and context.
/// </summary>
public static class TextChunks
{
    /// <summary>The logits of a step's <paramref name="row"/>-th scored position.</summary>
    public delegate ReadOnlySpan<float> LogitRow(int row);

    /// <summary>
    /// A step's scored positions: the chunk, the index among the chunk's scored positions of the step's first, the token
    /// that follows each, and each one's logits (valid until the callback returns; rows may be read from several threads at
    /// once, as llama-perplexity spreads its rows over its threads).
    /// </summary>
    public delegate void ScoredStep(int chunk, int index, int[] next, LogitRow logitsOf);

    /// <summary>
    /// Reads the first <paramref name="chunks"/> chunks of <paramref name="context"/> of <paramref name="tokens"/> and hands
    /// each step's scored positions to <paramref name="scored"/>, in order; <paramref name="chunkDone"/> after each chunk.
    /// </summary>
    /// <param name="bos">The id each chunk starts with instead of its own first token; null to keep them.</param>
    /// <param name="tap">Sees every step's activations (<see cref="ImportanceCollector"/>).</param>
    /// <param name="headOnEveryRow">Every position through the final norm and LM head, scored or not (as llama-imatrix
    /// asks for every position's logits, so that <paramref name="tap"/> sees the head's input on all of them).</param>
    public static void Score(Qwen2Model model, ReadOnlySpan<int> tokens, int context, int chunks, int? bos, ScoredStep scored,
        Action<int>? chunkDone = null, int stepTokens = Scorer.DefaultChunkTokens, ActivationTap? tap = null, bool headOnEveryRow = false)
    {
        if (context < 3)
        {
            QwenThrow.ArgumentOutOfRange(nameof(context), context, "a chunk needs at least 3 tokens (one scored)");
        }

        if (context > model.Config.MaxPositionEmbeddings)
        {
            QwenThrow.ArgumentOutOfRange(nameof(context), context, $"a chunk of {context} tokens is longer than the model's context of {model.Config.MaxPositionEmbeddings} (max_position_embeddings)");
        }

        if (chunks < 1 || (long)chunks * context > tokens.Length)
        {
            QwenThrow.ArgumentOutOfRange(nameof(chunks), chunks, $"{tokens.Length} tokens hold {tokens.Length / context} whole chunks of {context}");
        }

        int[] all = tokens[..(chunks * context)].ToArray();
        if (bos is int id)
        {
            model.ValidateTokens([id], "BOS");
        }

        model.ValidateTokens(all, "text");
        int first = LogitsBaseFile.FirstScored(context), last = context - 2;
        int step = Math.Min(stepTokens, context);
        using KvCache cache = model.CreateKvCache(slots: 1, capacity: context);
        using ForwardState state = model.CreateState(step, step);
        var batch = new TokenBatch(step);
        for (int chunk = 0; chunk < chunks; chunk++)
        {
            ReadOnlySpan<int> ids = all.AsSpan(chunk * context, context);
            cache.Reset(0);
            for (int start = 0; start < context; start += step)
            {
                int end = Math.Min(start + step, context);
                batch.Clear();
                for (int p = start; p < end; p++)
                {
                    batch.Add(p == 0 && bos is int b ? b : ids[p], p, slot: 0, wantLogits: headOnEveryRow || (p >= first && p <= last));
                }

                model.Forward(batch, cache, state, tap);
                int from = Math.Max(start, first), to = Math.Min(end, last + 1);
                if (from < to)
                {
                    int skipped = headOnEveryRow ? from - start : 0;
                    scored(chunk, from - first, ids[(from + 1)..(to + 1)].ToArray(), skipped == 0 ? state.LogitsOf : row => state.LogitsOf(row + skipped));
                }
            }

            chunkDone?.Invoke(chunk);
        }
    }
}
