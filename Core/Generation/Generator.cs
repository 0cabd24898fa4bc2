using System.Diagnostics;
using QwenSharp.Backend;
using QwenSharp.Errors;
using QwenSharp.Qwen2;

namespace QwenSharp.Generation;

/// <summary>
/// The generation loop: one batched prefill of all prompts (each prompt in its own KV-cache slot, so prompts
/// of different lengths need no padding), then one decode step per new token for every sequence still
/// running; each sequence stops on its own.
/// </summary>
public static class Generator
{
    /// <summary>Greedy generation: each new token is the argmax of the model's logits.</summary>
    /// <param name="onToken">Called with (sequence index, token id) as each token is chosen.</param>
    public static GenerationResult Greedy(Qwen2Model model, IReadOnlyList<IReadOnlyList<int>> prompts, GenerationOptions options,
        Action<int, int>? onToken = null)
    {
        if (prompts.Count == 0)
        {
            QwenThrow.Argument("no prompt given", nameof(prompts));
        }

        int context = options.Context ?? model.Config.MaxPositionEmbeddings;
        int longest = 0, promptTokens = 0;
        for (int s = 0; s < prompts.Count; s++)
        {
            int length = prompts[s].Count;
            if (length == 0)
            {
                QwenThrow.Argument($"prompt {s + 1} is empty", nameof(prompts));
            }

            if (length > context)
            {
                QwenThrow.Argument($"prompt {(prompts.Count > 1 ? $"{s + 1} " : "")}has {length} tokens, more than the context of {context}", nameof(prompts));
            }

            model.ValidateTokens(prompts[s], prompts.Count > 1 ? $"prompt {s + 1}" : "prompt");
            longest = Math.Max(longest, length);
            promptTokens += length;
        }

        if (options.MaxNewTokens < 0)
        {
            QwenThrow.ArgumentOutOfRange(nameof(options), options.MaxNewTokens, "max new tokens must not be negative");
        }

        // The last new token is never fed back, so a sequence needs prompt + max_new - 1 positions, within the context.
        int capacity = Math.Clamp(longest + options.MaxNewTokens - 1, longest, context);
        IReadOnlyList<int> eos = options.IgnoreEos ? [] : options.EosTokenIds ?? DefaultEosTokenIds(model);

        int n = prompts.Count;
        int maxRows = Math.Max(n, Math.Min(options.PrefillChunk, promptTokens));
        using KvCache cache = model.CreateKvCache(n, capacity);
        using ForwardState state = model.CreateState(maxRows, n);
        var batch = new TokenBatch(maxRows);
        var generated = new List<int>[n];
        var stopped = new StopReason?[n];
        var logitOwner = new int[n];
        for (int s = 0; s < n; s++)
        {
            generated[s] = new List<int>(Math.Min(options.MaxNewTokens, 4096));
            if (options.MaxNewTokens == 0)
            {
                stopped[s] = StopReason.Length;
            }
        }

        // Prefill: all prompt tokens, chunked; the last token of each prompt yields its first new token.
        var clock = Stopwatch.StartNew();
        if (options.MaxNewTokens > 0)
        {
            for (int s = 0; s < n; s++)
            {
                IReadOnlyList<int> prompt = prompts[s];
                for (int p = 0; p < prompt.Count; p++)
                {
                    bool last = p == prompt.Count - 1;
                    if (last)
                    {
                        logitOwner[batch.LogitCount] = s;
                    }

                    batch.Add(prompt[p], p, s, wantLogits: last);
                    if (batch.Count == batch.Capacity)
                    {
                        Step(model, batch, cache, state, logitOwner, generated, stopped, eos, options, prompts, onToken);
                    }
                }
            }

            if (batch.Count > 0)
            {
                Step(model, batch, cache, state, logitOwner, generated, stopped, eos, options, prompts, onToken);
            }
        }

        TimeSpan prefillTime = clock.Elapsed;

        // Decode: feed each running sequence its newest token until all have stopped.
        clock.Restart();
        int decodeTokens = 0;
        while (true)
        {
            for (int s = 0; s < n; s++)
            {
                if (stopped[s] is null)
                {
                    logitOwner[batch.LogitCount] = s;
                    batch.Add(generated[s][^1], prompts[s].Count + generated[s].Count - 1, s, wantLogits: true);
                }
            }

            if (batch.Count == 0)
            {
                break;
            }

            decodeTokens += batch.Count;
            Step(model, batch, cache, state, logitOwner, generated, stopped, eos, options, prompts, onToken);
        }

        TimeSpan decodeTime = clock.Elapsed;
        var sequences = new GeneratedSequence[n];
        for (int s = 0; s < n; s++)
        {
            sequences[s] = new GeneratedSequence(generated[s], stopped[s] ?? StopReason.Length);
        }

        // With no new tokens asked for, no prompt was read either.
        return new GenerationResult(sequences, options.MaxNewTokens > 0 ? promptTokens : 0, prefillTime, decodeTokens, decodeTime);
    }

    /// <summary>generation_config.json's eos_token_id (all of them), else config.json's.</summary>
    public static IReadOnlyList<int> DefaultEosTokenIds(Qwen2Model model) =>
        model.GenerationConfig.EosTokenIds.Count > 0 ? model.GenerationConfig.EosTokenIds : model.Config.EosTokenIds;

    private static void Step(Qwen2Model model, TokenBatch batch, KvCache cache, ForwardState state, int[] logitOwner,
        List<int>[] generated, StopReason?[] stopped, IReadOnlyList<int> eos, GenerationOptions options,
        IReadOnlyList<IReadOnlyList<int>> prompts, Action<int, int>? onToken)
    {
        model.Forward(batch, cache, state);
        for (int r = 0; r < batch.LogitCount; r++)
        {
            int s = logitOwner[r];
            int token = LogProbs.ArgMax(state.LogitsOf(r));
            generated[s].Add(token);
            onToken?.Invoke(s, token);
            if (Contains(eos, token))
            {
                stopped[s] = StopReason.Eos;
            }
            else if (generated[s].Count >= options.MaxNewTokens || prompts[s].Count + generated[s].Count - 1 >= cache.Capacity)
            {
                stopped[s] = StopReason.Length;
            }
        }

        batch.Clear();
    }

    private static bool Contains(IReadOnlyList<int> ids, int id)
    {
        for (int i = 0; i < ids.Count; i++)
        {
            if (ids[i] == id)
            {
                return true;
            }
        }

        return false;
    }
}
