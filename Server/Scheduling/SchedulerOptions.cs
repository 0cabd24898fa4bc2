namespace QwenSharp.Server.Scheduling;

/// <summary>How much the scheduler holds at once.</summary>
internal sealed record SchedulerOptions
{
    /// <summary>KV slots: sequences decoding at once (a request with n choices takes n).</summary>
    public int Slots { get; init; } = 8;

    /// <summary>Positions per slot: prompt plus new tokens of one sequence.</summary>
    public int Context { get; init; } = 4096;

    /// <summary>Requests waiting for slots beyond which new ones are refused (HTTP 429).</summary>
    public int MaxQueue { get; init; } = 64;

    /// <summary>Prompt tokens read per step beside the decode rows: long prompts go in chunks so running streams keep flowing.</summary>
    public int PrefillChunk { get; init; } = 256;

    /// <summary>Guessing next tokens from the text before (see <see cref="Generation.PromptLookup"/>) in steps that read no prompt; null: off.</summary>
    public Generation.PromptLookup? PromptLookup { get; init; }

    /// <summary>With <see cref="PromptLookup"/>: a draft model guesses instead (one cache slot per server slot); null: lookup.</summary>
    public Generation.DraftModel? DraftModel { get; init; }
}
