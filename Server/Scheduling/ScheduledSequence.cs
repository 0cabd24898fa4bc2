using QwenSharp.Generation;
using QwenSharp.Sampling;

namespace QwenSharp.Server.Scheduling;

/// <summary>
/// One choice of a job while it holds a KV slot: its prompt (fed in chunks), the tokens chosen so far, its
/// sampler and its text. Samples of one prompt share the prefill: the first reads the prompt, the others
/// get a copy of its slot when the prompt's last logits arrive.
/// </summary>
internal sealed class ScheduledSequence(GenerationJob job, int choice, int slot, int[] prompt, TokenSampler sampler, StopStrings text,
    Qwen2VL.VisionPrompt? vision)
{
    public GenerationJob Job { get; } = job;

    public int Choice { get; } = choice;

    public int Slot { get; } = slot;

    public int[] Prompt { get; } = prompt;

    /// <summary>The prompt's pictures laid out (Qwen2-VL), shared by the samples of the prompt; null for text.</summary>
    public Qwen2VL.VisionPrompt? Vision { get; } = vision;

    /// <summary>When the sequence took its slot and began on its prompt (a <see cref="System.Diagnostics.Stopwatch"/> timestamp).</summary>
    public long Started { get; } = System.Diagnostics.Stopwatch.GetTimestamp();

    /// <summary>When its first token was chosen; 0 before.</summary>
    public long FirstTokenAt { get; set; }

    /// <summary>When its latest token was chosen (the inter-token latency counts from here).</summary>
    public long LastTokenAt { get; set; }

    /// <summary>Prompt positions whose keys and values are in the slot (reused from an earlier request, or read).</summary>
    public int Fed { get; set; }

    /// <summary>Whether the prompt is read and the sequence is producing tokens.</summary>
    public bool Decoding { get; set; }

    /// <summary>The samples that wait for this sequence's prompt (empty for them and for single samples).</summary>
    public List<ScheduledSequence> Siblings { get; } = [];

    /// <summary>A sibling waiting for the first sample to read the shared prompt.</summary>
    public bool WaitsForPrompt { get; set; }

    public List<int> Generated { get; } = [];

    public TokenSampler Sampler { get; } = sampler;

    public StopStrings Text { get; } = text;

    public bool Finished { get; set; }

    /// <summary>The step's first logit row of a decoding sequence: its newest token's; the rows of its guesses follow.</summary>
    public int FirstRow { get; set; }

    /// <summary>This step's guesses of the next tokens (prompt lookup): the first <see cref="DraftLength"/> of them.</summary>
    public int[] Draft { get; } = new int[PromptLookup.MaxDraftTokens];

    public int DraftLength { get; set; }

    /// <summary>What lookup searches before the answer: the prediction's tokens, if any, then the prompt.</summary>
    public IReadOnlyList<int> LookupText { get; init; } = prompt;

    /// <summary>Its prompt lookup's pace and guesses (the server's lookup, or a prediction's); null without.</summary>
    public LookupPace? Pace { get; init; }

    /// <summary>
    /// The token chosen ahead for this step with the step's others (<see cref="BatchScheduler"/>: on the backend's host
    /// threads), its log-probs, or what its choice threw; handed out in the step's order. Null when none waits.
    /// </summary>
    public (int Token, TokenLogprobs? Logprobs, System.Runtime.ExceptionServices.ExceptionDispatchInfo? Failure)? ChosenAhead { get; set; }

    /// <summary>The position of the next token fed during decode.</summary>
    public int NextPosition => Prompt.Length + Generated.Count - 1;
}
