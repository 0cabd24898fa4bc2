using System.Diagnostics;
using QwenSharp.Backend;
using QwenSharp.Errors;
using QwenSharp.Qwen2;
using QwenSharp.Sampling;

namespace QwenSharp.Generation;

/// <summary>When beam search may stop before the token limit (transformers' <c>early_stopping</c>).</summary>
public enum EarlyStopping
{
    /// <summary>A heuristic: stop when the best running beam, scored at the current length, cannot beat the worst finished one.</summary>
    Heuristic,

    /// <summary>Stop as soon as there are as many finished hypotheses as beams.</summary>
    AsSoonAsFull,

    /// <summary>Stop only when no running beam can become better (the canonical algorithm).</summary>
    Never,
}

/// <summary>Beam search settings.</summary>
public sealed record BeamOptions
{
    /// <summary>Beams per prompt (at least 2).</summary>
    public int NumBeams { get; init; } = 4;

    /// <summary>Finished hypotheses are scored sum_logprobs / length^LengthPenalty; above 0 favours longer ones.</summary>
    public double LengthPenalty { get; init; } = 1.0;

    public EarlyStopping EarlyStopping { get; init; } = EarlyStopping.Heuristic;
}

/// <summary>
/// Beam search as transformers does it: per step, the 2B best (beam, token) continuations by summed
/// log-prob; an EOS among the first B finishes a hypothesis scored sum / length^length_penalty (length = new
/// tokens, the EOS included), the rest refill the B beams. At the end the running beams join the finished
/// ones and the best come first. Each beam owns a KV-cache slot; a new beam gets a copy of its parent's
/// slot (two banks of slots, so a step never reads a slot it has already overwritten).
/// </summary>
public static class BeamSearch
{
    public static GenerationResult Generate(Qwen2Model model, IReadOnlyList<IReadOnlyList<int>> prompts, GenerationOptions options, BeamOptions beams)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(beams);
        if (beams.NumBeams < 2)
        {
            QwenThrow.ArgumentOutOfRange(nameof(beams), beams.NumBeams, "num_beams must be at least 2 (1 is greedy search)");
        }

        if (options.NumReturnSequences > beams.NumBeams)
        {
            QwenThrow.ArgumentOutOfRange(nameof(options), options.NumReturnSequences, $"num_return_sequences must be at most num_beams ({beams.NumBeams})");
        }

        if (!options.Sampling.IsGreedy)
        {
            QwenThrow.Argument("beam search here is deterministic: sampling options do not apply (beam sampling is not supported)", nameof(options));
        }

        if (options.Constraint is not null)
        {
            QwenThrow.Argument("beam search does not take a constraint on its tokens (constrained output runs greedy or sampled)", nameof(options));
        }

        Generator.ValidatePrompts(model, prompts, options.Context ?? model.Config.MaxPositionEmbeddings);
        var results = new List<GeneratedSequence>();
        var clock = new Clock();
        int promptTokens = 0, decodeTokens = 0;
        foreach (IReadOnlyList<int> prompt in prompts)
        {
            (List<GeneratedSequence> best, int decoded) = SearchOne(model, prompt, options, beams, clock);
            results.AddRange(best);
            promptTokens += prompt.Count;
            decodeTokens += decoded;
        }

        return new GenerationResult(results, promptTokens, clock.Prefill, decodeTokens, clock.Decode);
    }

    private sealed record Hypothesis(List<int> Tokens, double Score);

    /// <summary>Time spent reading prompts and time spent on beam steps, over all prompts.</summary>
    private sealed class Clock
    {
        public TimeSpan Prefill { get; set; }

        public TimeSpan Decode { get; set; }
    }

    private static (List<GeneratedSequence> Best, int Decoded) SearchOne(Qwen2Model model, IReadOnlyList<int> prompt, GenerationOptions options,
        BeamOptions beamOptions, Clock clock)
    {
        int b = beamOptions.NumBeams;
        int context = options.Context ?? model.Config.MaxPositionEmbeddings;
        IReadOnlyList<int> eos = options.IgnoreEos ? [] : options.EosTokenIds ?? Generator.DefaultEosTokenIds(model);
        int maxNew = Math.Min(options.MaxNewTokens, context - prompt.Count + 1);
        int vocab = model.Config.VocabSize;
        int capacity = Math.Max(prompt.Count, prompt.Count + maxNew - 1);
        using KvCache cache = model.CreateKvCache(2 * b, capacity);
        int maxRows = Math.Max(b, Math.Min(options.PrefillChunk, prompt.Count));
        using ForwardState state = model.CreateState(maxRows, b);
        var batch = new TokenBatch(maxRows);
        var sampler = new TokenSampler(options.Sampling, vocab, 0);
        var logprobs = new float[vocab];

        var finished = new List<Hypothesis>();
        List<(List<int> Tokens, double Score, int Slot)> running = [([], 0.0, 0)];
        int bank = 0;
        int decoded = 0;
        if (maxNew <= 0)
        {
            return ([new GeneratedSequence([], StopReason.Length)], 0);
        }

        // Prefill the prompt into slot 0; its last row gives the first step's log-probs.
        var watch = Stopwatch.StartNew();
        for (int i = 0; i < prompt.Count; i++)
        {
            batch.Add(prompt[i], i, 0, wantLogits: i == prompt.Count - 1);
            if (batch.Count == batch.Capacity || i == prompt.Count - 1)
            {
                model.Forward(batch, cache, state);
                batch.Clear();
            }
        }

        clock.Prefill += watch.Elapsed;
        watch.Restart();
        for (int step = 0; step < maxNew; step++)
        {
            // Candidates: for each running beam its 2B best tokens (all the global 2B best can come from one beam).
            var candidates = new List<(double Score, int Beam, int Token)>(running.Count * 2 * b);
            for (int r = 0; r < running.Count; r++)
            {
                // As in transformers, the processors (penalties) act on the log-softmax of the logits.
                ReadOnlySpan<float> logits = state.LogitsOf(r);
                float logSumExp = (float)LogProbs.LogSumExp(logits);
                System.Numerics.Tensors.TensorPrimitives.Subtract(logits, logSumExp, logprobs);
                sampler.Process(logprobs, prompt, running[r].Tokens);
                foreach (TokenLogprob top in LogProbs.Top(logprobs, 2 * b, logSumExp: 0))
                {
                    candidates.Add((running[r].Score + top.Logprob, r, top.Id));
                }
            }

            // Best first; on equal scores the earlier beam, then the lower id (torch.topk's order over beam * vocab).
            candidates.Sort((x, y) => x.Score != y.Score ? y.Score.CompareTo(x.Score) : x.Beam != y.Beam ? x.Beam.CompareTo(y.Beam) : x.Token.CompareTo(y.Token));
            if (candidates.Count > 2 * b)
            {
                candidates.RemoveRange(2 * b, candidates.Count - 2 * b);
            }

            var next = new List<(List<int> Tokens, double Score, int Slot)>(b);
            int nextBank = 1 - bank;
            for (int rank = 0; rank < candidates.Count && next.Count < b; rank++)
            {
                (double score, int beam, int token) = candidates[rank];
                List<int> tokens = [.. running[beam].Tokens, token];
                if (Generator.Contains(eos, token))
                {
                    if (rank < b)
                    {
                        AddHypothesis(finished, new Hypothesis(tokens, Normalize(score, tokens.Count, beamOptions.LengthPenalty)), b);
                    }

                    continue;
                }

                int slot = nextBank * b + next.Count;
                cache.CopySlot(running[beam].Slot, slot, prompt.Count + running[beam].Tokens.Count);
                next.Add((tokens, score, slot));
            }

            running = next;
            bank = nextBank;
            int generated = step + 1;
            if (IsDone(finished, b, candidates[0].Score, generated, maxNew, beamOptions))
            {
                // transformers' finalize skips the running beams of a search that is done.
                running.Clear();
                break;
            }

            if (running.Count == 0 || generated == maxNew)
            {
                break;
            }

            // Feed each beam its newest token.
            for (int r = 0; r < running.Count; r++)
            {
                batch.Add(running[r].Tokens[^1], prompt.Count + running[r].Tokens.Count - 1, running[r].Slot, wantLogits: true);
            }

            decoded += batch.Count;
            model.Forward(batch, cache, state);
            batch.Clear();
        }

        clock.Decode += watch.Elapsed;

        // Beams still running at the token limit join the finished ones (transformers' finalize).
        foreach ((List<int> tokens, double score, _) in running)
        {
            AddHypothesis(finished, new Hypothesis(tokens, Normalize(score, tokens.Count, beamOptions.LengthPenalty)), b);
        }

        var best = finished.OrderByDescending(h => h.Score).Take(options.NumReturnSequences)
            .Select(h => new GeneratedSequence(h.Tokens, h.Tokens.Count > 0 && Generator.Contains(eos, h.Tokens[^1]) ? StopReason.Eos : StopReason.Length)
            {
                Score = h.Score,
            }).ToList();
        return (best, decoded);
    }

    private static double Normalize(double sumLogprob, int length, double lengthPenalty) =>
        sumLogprob / Math.Pow(Math.Max(length, 1), lengthPenalty);

    /// <summary>Keeps the B best finished hypotheses.</summary>
    private static void AddHypothesis(List<Hypothesis> finished, Hypothesis hypothesis, int beams)
    {
        finished.Add(hypothesis);
        if (finished.Count > beams)
        {
            finished.Remove(finished.MinBy(h => h.Score)!);
        }
    }

    private static bool IsDone(List<Hypothesis> finished, int beams, double bestRunningSum, int generated, int maxNew, BeamOptions options)
    {
        if (finished.Count < beams)
        {
            return false;
        }

        double worst = finished.Min(h => h.Score);
        return options.EarlyStopping switch
        {
            EarlyStopping.AsSoonAsFull => true,
            EarlyStopping.Heuristic => worst >= bestRunningSum / Math.Pow(generated, options.LengthPenalty),
            _ => worst >= bestRunningSum / Math.Pow(options.LengthPenalty > 0 ? maxNew : generated, options.LengthPenalty),
        };
    }
}
