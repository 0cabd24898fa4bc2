using System.Diagnostics;
using System.Runtime.ExceptionServices;
using QwenSharp.Backend;
using QwenSharp.Errors;
using QwenSharp.Qwen2;
using QwenSharp.Sampling;

namespace QwenSharp.Generation;

/// <summary>
/// The generation loop: one batched prefill of all prompts (each prompt in its own KV-cache slot, so prompts
/// of different lengths need no padding), then one decode step per new token for every sequence still
/// running; each sequence stops on its own. Several samples of one prompt share its prefill: the prompt's
/// slot is copied to theirs. Each sequence draws from its own seeded stream, so its tokens do not depend on
/// what else is in the batch, and the sequences of a step choose their tokens at once on the backend's host threads
/// (<see cref="IBackend.ForEachOnHost"/>) before they are handed out in order.
/// </summary>
public static class Generator
{
    /// <summary>Greedy generation: each new token is the argmax of the model's logits.</summary>
    /// <param name="onToken">Called with (sequence index, token id) as each token is chosen.</param>
    public static GenerationResult Greedy(Qwen2Model model, IReadOnlyList<IReadOnlyList<int>> prompts, GenerationOptions options,
        Action<int, int>? onToken = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        return Generate(model, prompts, options with { Sampling = SamplingOptions.Greedy }, onToken is null ? null : (s, token, _) => onToken(s, token));
    }

    /// <summary>
    /// Generates <see cref="GenerationOptions.NumReturnSequences"/> sequences per prompt, in prompt order
    /// (sequence <c>p * n + j</c> is sample j of prompt p).
    /// </summary>
    /// <param name="onToken">Called with (sequence index, token id, log-probs) as each token is chosen.</param>
    /// <param name="conversation">For one prompt and one sequence: a cache kept from the previous turn, whose common prefix with the prompt is not read again.</param>
    /// <param name="vision">Per prompt, its pictures laid out for a Qwen2-VL model (null for a text prompt); the prompt ids must be the vision prompt's.</param>
    public static GenerationResult Generate(Qwen2Model model, IReadOnlyList<IReadOnlyList<int>> prompts, GenerationOptions options,
        TokenCallback? onToken = null, ConversationCache? conversation = null, IReadOnlyList<Qwen2VL.VisionPrompt?>? vision = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(options);
        int context = options.Context ?? model.Config.MaxPositionEmbeddings;
        (int longest, int promptTokens) = ValidatePrompts(model, prompts, context);
        if (options.MaxNewTokens < 0)
        {
            QwenThrow.ArgumentOutOfRange(nameof(options), options.MaxNewTokens, "max new tokens must not be negative");
        }

        if (options.NumReturnSequences < 1)
        {
            QwenThrow.ArgumentOutOfRange(nameof(options), options.NumReturnSequences, "num_return_sequences must be at least 1");
        }

        options.Sampling.Validate();
        options.PromptLookup?.Validate();
        if (options.DraftModel is not null && options.PromptLookup is null)
        {
            QwenThrow.Argument("a draft model needs PromptLookup for the most guesses a step", nameof(options));
        }

        if (options.DraftModel is not null && vision?.Any(v => v is not null) == true)
        {
            QwenThrow.NotSupported("a draft model guesses text only; prompts with pictures run without it");
        }

        var run = new Run(model, prompts, options);

        // The last new token is never fed back, so a sequence needs prompt + max_new - 1 positions, within the context.
        int capacity = Math.Clamp(longest + options.MaxNewTokens - 1, longest, context);
        // A decode step with guesses has up to PromptLookup.MaxStepRows rows, each wanting its logits.
        int logitRows = Math.Max(run.Count, options.PromptLookup is null ? 0 : PromptLookup.MaxStepRows);
        int maxRows = Math.Max(logitRows, Math.Min(options.PrefillChunk, promptTokens));
        if (conversation is not null && (prompts.Count != 1 || run.Count != 1))
        {
            QwenThrow.Argument("a conversation cache holds one sequence: give one prompt and one return sequence", nameof(conversation));
        }

        if (vision is not null)
        {
            if (vision.Count != prompts.Count)
            {
                QwenThrow.Argument($"{vision.Count} vision prompts for {prompts.Count} prompts", nameof(vision));
            }

            for (int p = 0; p < prompts.Count; p++)
            {
                if (vision[p] is Qwen2VL.VisionPrompt v && !v.Tokens.SequenceEqual(prompts[p]))
                {
                    QwenThrow.Argument($"prompt {p} differs from the token ids of its vision prompt", nameof(vision));
                }
            }

            if (conversation is not null && vision.Any(v => v is not null))
            {
                QwenThrow.Argument("a conversation cache is matched on token ids, which cannot tell two pictures apart: run prompts with pictures without one", nameof(conversation));
            }
        }

        int reused = conversation?.Prepare(model, prompts[0], capacity, options.AdapterScales) ?? 0;
        KvCache cache = conversation?.Cache ?? model.CreateKvCache(run.Count, capacity);
        using KvCache? owned = conversation is null ? cache : null;
        using ForwardState state = model.CreateState(maxRows, logitRows);
        var batch = new TokenBatch(maxRows);
        var rowOwner = new int[run.Count];    // prefill's logit rows: one per prompt at most

        // Prefill: all prompt tokens, chunked, each prompt in the slot of its first sample; the last token of
        // each prompt yields the first new token of all its samples.
        var clock = Stopwatch.StartNew();
        if (options.MaxNewTokens > 0)
        {
            for (int p = 0; p < prompts.Count; p++)
            {
                IReadOnlyList<int> prompt = prompts[p];
                for (int i = p == 0 ? reused : 0; i < prompt.Count; i++)
                {
                    bool last = i == prompt.Count - 1;
                    if (last)
                    {
                        rowOwner[batch.LogitCount] = p * run.PerPrompt;
                    }

                    if (vision?[p] is Qwen2VL.VisionPrompt pictures)
                    {
                        pictures.AddToBatch(batch, i, p * run.PerPrompt, wantLogits: last);
                    }
                    else
                    {
                        batch.Add(prompt[i], i, p * run.PerPrompt, wantLogits: last);
                    }

                    if (batch.Count == batch.Capacity)
                    {
                        Prefill(batch, cache, state, rowOwner, run, onToken);
                    }
                }
            }

            if (batch.Count > 0)
            {
                Prefill(batch, cache, state, rowOwner, run, onToken);
            }
        }

        TimeSpan prefillTime = clock.Elapsed;

        // Decode: feed each running sequence its newest token (and with prompt lookup, its guesses of the next ones)
        // until all have stopped.
        clock.Restart();
        int decodeTokens = 0;
        // The draft reads up to the positions the model's cache holds, and its last guesses past them.
        options.DraftModel?.Begin(run.Count, cache.Capacity + PromptLookup.MaxDraftTokens);
        var decode = new DecodeRows(run.Count, options.PromptLookup, options.DraftModel, model.Config.VocabSize);
        while (true)
        {
            int running = 0;
            for (int s = 0; s < run.Count; s++)
            {
                running += run.Stopped[s] is null ? 1 : 0;
            }

            if (running == 0)
            {
                break;
            }

            int spareRows = PromptLookup.MaxStepRows - running;
            for (int s = 0; s < run.Count; s++)
            {
                if (run.Stopped[s] is not null)
                {
                    continue;
                }

                int position = run.PromptOf(s).Count + run.Generated[s].Count - 1;
                // Guesses past the token limit or the cache's end would never be chosen (the last new token is not fed).
                int room = Math.Min(options.MaxNewTokens - run.Generated[s].Count - 1, cache.Capacity - 1 - position);
                ReadOnlySpan<int> draft = decode.Guess(s, run.PromptOf(s), run.Generated[s], Math.Min(spareRows, room));
                spareRows -= draft.Length;
                decode.First[s] = batch.LogitCount;
                AddDecodeRow(batch, vision?[s / run.PerPrompt], run.Generated[s][^1], position, s);
                for (int i = 0; i < draft.Length; i++)
                {
                    AddDecodeRow(batch, vision?[s / run.PerPrompt], draft[i], position + 1 + i, s);
                }
            }

            run.CancellationToken.ThrowIfCancellationRequested();
            WeighAdapters(batch, options.AdapterScales);
            model.Forward(batch, cache, state);

            // The sequences without guesses choose their tokens all at once; those with guesses choose in Verify, one
            // row after another (each row's token decides whether the next row counts).
            for (int s = 0; s < run.Count; s++)
            {
                if (run.Stopped[s] is null && decode.DraftOf(s).IsEmpty)
                {
                    run.WillChoose(s, decode.First[s]);
                }
            }

            run.ChooseTogether(state);
            for (int s = 0; s < run.Count; s++)
            {
                if (run.Stopped[s] is null)
                {
                    decodeTokens += Verify(s, decode, state, cache, run, onToken);
                }
            }

            batch.Clear();
        }

        TimeSpan decodeTime = clock.Elapsed;
        // Without new tokens the prompt was not read: the cache holds only what it reused.
        conversation?.Commit(options.MaxNewTokens > 0 ? prompts[0] : [.. prompts[0].Take(reused)], run.Generated[0]);
        var sequences = new GeneratedSequence[run.Count];
        for (int s = 0; s < run.Count; s++)
        {
            sequences[s] = new GeneratedSequence(run.Generated[s], run.Stopped[s] ?? StopReason.Length, run.Logprobs?[s],
                options.Sampling.IsGreedy ? null : run.Samplers[s].Seed);
        }

        // With no new tokens asked for, no prompt was read either.
        return new GenerationResult(sequences, options.MaxNewTokens > 0 ? promptTokens - reused : 0, prefillTime, decodeTokens, decodeTime)
        {
            Seed = options.Sampling.IsGreedy ? null : run.Seed,
            LookupTokens = (decode.Drafted, decode.Accepted),
        };
    }

    /// <summary>generation_config.json's eos_token_id (all of them), else config.json's.</summary>
    public static IReadOnlyList<int> DefaultEosTokenIds(Qwen2Model model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return model.GenerationConfig.EosTokenIds.Count > 0 ? model.GenerationConfig.EosTokenIds : model.Config.EosTokenIds;
    }

    /// <summary>Whether <paramref name="id"/> is one of <paramref name="ids"/> (an EOS check per token: no LINQ, no allocation).</summary>
    internal static bool Contains(IReadOnlyList<int> ids, int id)
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

    /// <summary>Checks every prompt (not empty, within the context, ids in the vocabulary); returns the longest length and the total.</summary>
    internal static (int Longest, int Tokens) ValidatePrompts(Qwen2Model model, IReadOnlyList<IReadOnlyList<int>> prompts, int context)
    {
        if (prompts.Count == 0)
        {
            QwenThrow.Argument("no prompt given", nameof(prompts));
        }

        int longest = 0, tokens = 0;
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
            tokens += length;
        }

        return (longest, tokens);
    }

    /// <summary>
    /// One prefill step, then the first token of every prompt whose last row it read, for all its samples (whose
    /// slots get a copy of the prompt first).
    /// </summary>
    private static void Prefill(TokenBatch batch, KvCache cache, ForwardState state, int[] rowOwner, Run run, TokenCallback? onToken)
    {
        run.CancellationToken.ThrowIfCancellationRequested();
        WeighAdapters(batch, run.AdapterScales);
        run.Model.Forward(batch, cache, state);
        for (int r = 0; r < batch.LogitCount; r++)
        {
            for (int s = rowOwner[r]; s < rowOwner[r] + run.PerPrompt; s++)
            {
                run.WillChoose(s, r);
            }
        }

        run.ChooseTogether(state);
        for (int r = 0; r < batch.LogitCount; r++)
        {
            int first = rowOwner[r];
            for (int s = first; s < first + run.PerPrompt; s++)
            {
                if (s != first)
                {
                    cache.CopySlot(first, s, run.PromptOf(first).Count);
                }

                run.Choose(s, state.LogitsOf(r), cache.Capacity, onToken);
            }
        }

        batch.Clear();
    }

    /// <summary>Every row of the step at the generation's LoRA adapter scales (null: the adapters' own).</summary>
    private static void WeighAdapters(TokenBatch batch, float[]? scales)
    {
        for (int row = 0; scales is not null && row < batch.Count; row++)
        {
            batch.SetAdapterScales(row, scales);
        }
    }

    /// <summary>A decode row: the token at its position, its logits wanted (Qwen2-VL's positions shifted past the pictures).</summary>
    private static void AddDecodeRow(TokenBatch batch, Qwen2VL.VisionPrompt? vision, int token, int position, int slot)
    {
        if (vision is { RopeDelta: not 0 } pictures)
        {
            Qwen2VL.VisionPrompt.AddGenerated(batch, token, position, slot, wantLogits: true, pictures.RopeDelta);
        }
        else
        {
            batch.Add(token, position, slot, wantLogits: true);
        }
    }

    /// <summary>
    /// Chooses sequence s's tokens from its rows of a decode step, in order, as separate steps would: row j + 1 was fed
    /// guess j, so its logits count only while the token chosen from row j is that guess. The slot then keeps only the
    /// positions fed with chosen tokens. Returns the tokens chosen.
    /// </summary>
    private static int Verify(int s, DecodeRows decode, ForwardState state, KvCache cache, Run run, TokenCallback? onToken)
    {
        ReadOnlySpan<int> draft = decode.DraftOf(s);
        int chosen = 0, taken = 0;
        while (true)
        {
            run.Choose(s, state.LogitsOf(decode.First[s] + chosen), cache.Capacity, onToken);
            chosen++;
            if (chosen > draft.Length)
            {
                break;
            }

            bool guessed = run.Generated[s][^1] == draft[chosen - 1];
            taken += guessed ? 1 : 0;
            if (!guessed || run.Stopped[s] is not null)
            {
                break;
            }
        }

        decode.Taken(s, taken);

        if (chosen <= draft.Length)
        {
            // Positions fed a guess that was not chosen hold keys and values of no token of the text.
            cache.Truncate(s, run.PromptOf(s).Count + run.Generated[s].Count - 1);
        }

        return chosen;
    }

    /// <summary>Where each sequence's rows start in a decode step, and its guesses with prompt lookup or a draft model.</summary>
    private sealed class DecodeRows(int sequences, PromptLookup? lookup, DraftModel? draftModel, int vocabulary)
    {
        private readonly int[] _drafts = new int[sequences * PromptLookup.MaxDraftTokens];
        private readonly int[] _draftLengths = new int[sequences];
        private readonly LookupPace[] _paces = lookup is null ? [] : [.. Enumerable.Range(0, sequences).Select(s => new LookupPace(lookup!,
            draftModel is null ? null : (prompt, generated, draft) => draftModel.Draft(s, prompt, generated, draft, vocabulary)))];

        public int[] First { get; } = new int[sequences];

        public int Drafted { get; private set; }

        public int Accepted { get; private set; }

        /// <summary>Sequence s's guesses for this step, at most <paramref name="most"/> and what its pace allows; none without prompt lookup.</summary>
        public ReadOnlySpan<int> Guess(int s, IReadOnlyList<int> prompt, IReadOnlyList<int> generated, int most)
        {
            int count = lookup is null ? 0 : _paces[s].Draft(prompt, generated, most, _drafts.AsSpan(s * PromptLookup.MaxDraftTokens, PromptLookup.MaxDraftTokens));
            _draftLengths[s] = count;
            Drafted += count;
            return DraftOf(s);
        }

        /// <summary>Sequence s's step chose <paramref name="taken"/> of its guesses.</summary>
        public void Taken(int s, int taken)
        {
            Accepted += taken;
            if (lookup is not null)
            {
                _paces[s].Taken(_draftLengths[s], taken);
            }
        }

        public ReadOnlySpan<int> DraftOf(int s) => _drafts.AsSpan(s * PromptLookup.MaxDraftTokens, _draftLengths[s]);
    }

    /// <summary>The per-sequence state of one call: prompts, samplers, tokens so far, why each stopped.</summary>
    private sealed class Run
    {
        private readonly IReadOnlyList<IReadOnlyList<int>> _prompts;
        private readonly GenerationOptions _options;
        private readonly IReadOnlyList<int> _eos;

        /// <summary>The sequences that choose together at the next <see cref="ChooseTogether"/>, and their logit rows.</summary>
        private readonly int[] _together, _rows;
        private int _togetherCount;

        /// <summary>Each sequence's token chosen ahead (<see cref="ChooseTogether"/>) and not yet handed out, or the exception its choice threw; null when none waits.</summary>
        private readonly (int Token, TokenLogprobs? Logprobs, ExceptionDispatchInfo? Failure)?[] _chosen;
        private ForwardState? _state;
        private readonly Action<int> _chooseOne;

        public Run(Qwen2Model model, IReadOnlyList<IReadOnlyList<int>> prompts, GenerationOptions options)
        {
            Model = model;
            _prompts = prompts;
            _options = options;
            _eos = options.IgnoreEos ? [] : options.EosTokenIds ?? DefaultEosTokenIds(model);
            PerPrompt = options.NumReturnSequences;
            Count = prompts.Count * PerPrompt;
            Generated = new List<int>[Count];
            Stopped = new StopReason?[Count];
            Samplers = new TokenSampler[Count];
            Logprobs = options.Logprobs is null ? null : new List<TokenLogprobs>[Count];
            _together = new int[Count];
            _rows = new int[Count];
            _chosen = new (int, TokenLogprobs?, ExceptionDispatchInfo?)?[Count];
            _chooseOne = ChooseAhead;
            ulong seed = Seed = options.Sampling.Seed ?? (options.Sampling.IsGreedy ? 0 : SeededRandom.NewSeed());
            for (int s = 0; s < Count; s++)
            {
                Generated[s] = new List<int>(Math.Min(options.MaxNewTokens, 4096));
                // Sample j of every prompt uses stream j, so a prompt gives the same tokens alone or in a batch.
                Samplers[s] = new TokenSampler(options.Sampling, model.Config.VocabSize, SeededRandom.Derive(seed, s % PerPrompt), options.Constraint?.Invoke());
                if (Logprobs is not null)
                {
                    Logprobs[s] = [];
                }

                if (options.MaxNewTokens == 0)
                {
                    Stopped[s] = StopReason.Length;
                }
            }
        }

        public Qwen2Model Model { get; }

        public CancellationToken CancellationToken => _options.CancellationToken;

        public float[]? AdapterScales => _options.AdapterScales;

        public ulong Seed { get; }

        public int PerPrompt { get; }

        public int Count { get; }

        public List<int>[] Generated { get; }

        public StopReason?[] Stopped { get; }

        public TokenSampler[] Samplers { get; }

        public List<TokenLogprobs>[]? Logprobs { get; }

        public IReadOnlyList<int> PromptOf(int sequence) => _prompts[sequence / PerPrompt];

        /// <summary>Sequence s is to choose its next token from logit row <paramref name="row"/> at the next <see cref="ChooseTogether"/>.</summary>
        public void WillChoose(int s, int row)
        {
            _together[_togetherCount] = s;
            _rows[_togetherCount++] = row;
        }

        /// <summary>
        /// The tokens of the sequences given to <see cref="WillChoose"/>, chosen at once on the backend's host threads, each from
        /// its row of <paramref name="state"/>'s logits and its own sampler: the vocabulary-long scans of a batch side by side.
        /// <see cref="Choose"/> then hands each out in order, as if chosen there. One sequence alone chooses there.
        /// </summary>
        public void ChooseTogether(ForwardState state)
        {
            if (_togetherCount > 1)
            {
                _state = state;
                Model.Backend.ForEachOnHost(_togetherCount, _chooseOne);
                _state = null;
            }

            _togetherCount = 0;
        }

        private void ChooseAhead(int i)
        {
            int s = _together[i];
            try
            {
                (int token, TokenLogprobs? logprobs) = Pick(s, _state!.LogitsOf(_rows[i]));
                _chosen[s] = (token, logprobs, null);
            }
            catch (Exception e)
            {
                _chosen[s] = (0, null, ExceptionDispatchInfo.Capture(e));
            }
        }

        /// <summary>Sequence s's next token from <paramref name="logits"/>, and its log-probs where asked for.</summary>
        private (int Token, TokenLogprobs? Logprobs) Pick(int s, ReadOnlySpan<float> logits)
        {
            int token = Samplers[s].Next(logits, PromptOf(s), Generated[s]);
            return (token, Logprobs is null ? null : LogProbs.OfToken(logits, token, _options.Logprobs!.Value));
        }

        /// <summary>
        /// Hands out sequence s's next token: the one <see cref="ChooseTogether"/> chose from <paramref name="logits"/> (the row it was
        /// given), else one chosen now.
        /// </summary>
        public void Choose(int s, ReadOnlySpan<float> logits, int capacity, TokenCallback? onToken)
        {
            IReadOnlyList<int> prompt = PromptOf(s);
            int token;
            TokenLogprobs? logprobs;
            if (_chosen[s] is var (aheadToken, aheadLogprobs, failure))
            {
                _chosen[s] = null;
                failure?.Throw();
                (token, logprobs) = (aheadToken, aheadLogprobs);
            }
            else
            {
                (token, logprobs) = Pick(s, logits);
            }

            if (logprobs is not null)
            {
                Logprobs![s].Add(logprobs);
            }

            Generated[s].Add(token);
            onToken?.Invoke(s, token, logprobs);
            if (Contains(_eos, token))
            {
                Stopped[s] = StopReason.Eos;
            }
            else if (_options.StopCondition?.ShouldStop(s, Generated[s]) == true)
            {
                Stopped[s] = StopReason.Stop;
            }
            else if (Generated[s].Count >= _options.MaxNewTokens || prompt.Count + Generated[s].Count - 1 >= capacity)
            {
                Stopped[s] = StopReason.Length;
            }
        }
    }
}
