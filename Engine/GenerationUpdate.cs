using QwenSharp.Generation;

namespace QwenSharp;

/// <summary>
/// One step of a streamed generation: a new token and the text it completes (possibly empty while a
/// character or a possible stop sequence is incomplete). The last update has <see cref="IsFinal"/> set,
/// no token, the text held back until then, why generation stopped, and the token counts.
/// </summary>
public sealed record GenerationUpdate
{
    /// <summary>The new token; -1 in the final update.</summary>
    public int TokenId { get; init; } = -1;

    /// <summary>Text that is now complete.</summary>
    public string Text { get; init; } = "";

    /// <summary>The token's log-prob and alternatives, when asked for.</summary>
    public TokenLogprobs? Logprobs { get; init; }

    public bool IsFinal { get; init; }

    /// <summary>Why generation stopped (final update only).</summary>
    public StopReason? StopReason { get; init; }

    /// <summary>Tokens of the prompt (final update only).</summary>
    public int PromptTokens { get; init; }

    /// <summary>Tokens of the prompt that were read this time (the rest came from the conversation's cache).</summary>
    public int PromptTokensRead { get; init; }

    /// <summary>New tokens generated (final update only).</summary>
    public int GeneratedTokens { get; init; }

    /// <summary>The seed of the random draws (final update only; null when greedy).</summary>
    public ulong? Seed { get; init; }

    /// <summary>With prompt lookup: the tokens guessed, and how many of them the model chose (final update only).</summary>
    public (int Drafted, int Accepted) LookupTokens { get; init; }
}

/// <summary>One finished sequence of a batch.</summary>
/// <param name="Ids">The new tokens.</param>
/// <param name="Text">Their text, cut before a stop sequence.</param>
/// <param name="StopReason">Why it stopped.</param>
/// <param name="Logprobs">Per-token log-probs, when asked for.</param>
public sealed record GeneratedText(IReadOnlyList<int> Ids, string Text, StopReason StopReason, IReadOnlyList<TokenLogprobs>? Logprobs);
