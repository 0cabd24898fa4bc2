namespace QwenSharp.Generation;

/// <summary>Why a sequence ended.</summary>
public enum StopReason
{
    /// <summary>It produced an end-of-sequence id (the id is the last of its tokens).</summary>
    Eos,

    /// <summary>It reached the token limit or the end of the context.</summary>
    Length,

    /// <summary>A stop condition (a stop string) ended it.</summary>
    Stop,
}

/// <summary>Decides, after each new token, whether a sequence is done (stop strings; the caller holds the text).</summary>
public interface IStopCondition
{
    /// <param name="sequence">Index of the sequence in the result.</param>
    /// <param name="generated">Its new tokens so far, the newest last.</param>
    bool ShouldStop(int sequence, IReadOnlyList<int> generated);
}

/// <summary>What to generate and when to stop.</summary>
public sealed record GenerationOptions
{
    /// <summary>Upper bound on new tokens per sequence.</summary>
    public int MaxNewTokens { get; init; } = 256;

    /// <summary>Ids that end a sequence; null takes them from generation_config.json, else config.json.</summary>
    public IReadOnlyList<int>? EosTokenIds { get; init; }

    /// <summary>Run to the token limit even past an EOS id (benchmarks).</summary>
    public bool IgnoreEos { get; init; }

    /// <summary>Context per sequence (prompt plus new tokens); null: max_position_embeddings.</summary>
    public int? Context { get; init; }

    /// <summary>Most tokens per forward step during prefill; longer prompts are fed in chunks.</summary>
    public int PrefillChunk { get; init; } = 512;

    /// <summary>How each token is chosen; the default is the argmax of the logits.</summary>
    public Sampling.SamplingOptions Sampling { get; init; } = QwenSharp.Sampling.SamplingOptions.Greedy;

    /// <summary>Sequences per prompt: independent samples sharing one prefill (their KV cache is copied).</summary>
    public int NumReturnSequences { get; init; } = 1;

    /// <summary>With a value K: each new token's log-prob under the model (log_softmax of the raw logits) and the K most likely tokens.</summary>
    public int? Logprobs { get; init; }

    /// <summary>Makes each sequence its own rule over the tokens it may take (constrained output, such as a JSON object); null: none.</summary>
    public Func<Sampling.ITokenConstraint>? Constraint { get; init; }

    /// <summary>Checked after every token (stop strings); null: none.</summary>
    public IStopCondition? StopCondition { get; init; }

    /// <summary>
    /// Guess tokens by looking the text's last tokens up earlier in it, and check the guesses in the same step as the
    /// newest token (<see cref="Generation.PromptLookup"/>); the tokens are those without it. Null: one token a step.
    /// </summary>
    public PromptLookup? PromptLookup { get; init; }

    /// <summary>
    /// Guess with this smaller model instead of looking the text up (<see cref="Generation.DraftModel"/>), at most
    /// <see cref="PromptLookup"/>'s <see cref="PromptLookup.DraftTokens"/> a step, which must be given; the tokens are those without it.
    /// </summary>
    public DraftModel? DraftModel { get; init; }

    /// <summary>Checked before every forward step: a cancelled generation stops within one token.</summary>
    public CancellationToken CancellationToken { get; init; }

    /// <summary>
    /// The scale of each of the model's LoRA adapters (<see cref="Qwen2.Qwen2Model.Adapters"/>' order) for this generation;
    /// null: their own. A conversation cache reuses only what was computed at the same scales.
    /// </summary>
    public float[]? AdapterScales { get; init; }
}

/// <summary>Called as each token is chosen: the sequence's index, the token, and its log-probs when they were asked for.</summary>
public delegate void TokenCallback(int sequence, int token, TokenLogprobs? logprobs);

/// <summary>A generated token's log-prob under the model, and the most likely alternatives at its position.</summary>
public sealed record TokenLogprobs(int Id, double Logprob, IReadOnlyList<TokenLogprob> Top);

/// <summary>The new tokens of one sequence, ending with the EOS id when an EOS stopped it.</summary>
/// <param name="Ids">The new tokens.</param>
/// <param name="StopReason">Why it ended.</param>
/// <param name="Logprobs">One entry per new token when log-probs were asked for, else null.</param>
/// <param name="Seed">The seed of its random stream (null for greedy).</param>
public sealed record GeneratedSequence(IReadOnlyList<int> Ids, StopReason StopReason, IReadOnlyList<TokenLogprobs>? Logprobs = null, ulong? Seed = null)
{
    /// <summary>Beam search's score of the hypothesis: summed log-prob / length^length_penalty; null otherwise.</summary>
    public double? Score { get; init; }
}

/// <summary>All sequences of a call, in prompt order, with the time spent reading prompts and producing tokens.</summary>
public sealed record GenerationResult(
    IReadOnlyList<GeneratedSequence> Sequences,
    int PromptTokens,
    TimeSpan PrefillTime,
    int DecodeTokens,
    TimeSpan DecodeTime)
{
    /// <summary>Prompt tokens read per second (the forward passes that produce each sequence's first token); 0 when none was read.</summary>
    public double PrefillTokensPerSecond => PromptTokens == 0 ? 0 : PromptTokens / Math.Max(PrefillTime.TotalSeconds, 1e-9);

    /// <summary>The seed the sequences' random streams come from (sample j of each prompt uses stream j); null when greedy.</summary>
    public ulong? Seed { get; init; }

    /// <summary>With <see cref="GenerationOptions.PromptLookup"/>: the tokens guessed, and how many of them the model chose.</summary>
    public (int Drafted, int Accepted) LookupTokens { get; init; }

    /// <summary>Tokens chosen per second during decode (each decode step's new tokens); 0 when no decode step ran.</summary>
    public double DecodeTokensPerSecond => DecodeTokens == 0 ? 0 : DecodeTokens / Math.Max(DecodeTime.TotalSeconds, 1e-9);
}
