using System.Threading.Channels;
using QwenSharp.Generation;
using QwenSharp.Sampling;

namespace QwenSharp.Server.Scheduling;

/// <summary>
/// What one HTTP request asks of the scheduler: one or more prompts, each sampled
/// <see cref="SamplesPerPrompt"/> times (choice <c>p * n + j</c> is sample j of prompt p, drawn from random
/// stream j of <see cref="Seed"/>, as the command line's batches are), and how to stop. The scheduler writes
/// what happens to <see cref="Events"/>; a failure or a cancellation completes it with the exception.
/// </summary>
internal sealed class GenerationJob
{
    private readonly Channel<JobEvent> _events = Channel.CreateUnbounded<JobEvent>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });

    public required IReadOnlyList<int[]> Prompts { get; init; }

    public int SamplesPerPrompt { get; init; } = 1;

    /// <summary>Resolved sampling (generation_config.json's defaults under the request's values).</summary>
    public required SamplingOptions Sampling { get; init; }

    /// <summary>The seed the choices' random streams come from (0 when greedy).</summary>
    public ulong Seed { get; init; }

    /// <summary>Most new tokens per choice; the context ends a choice earlier if it must.</summary>
    public required int MaxTokens { get; init; }

    public IReadOnlyList<string> StopStrings { get; init; } = [];

    /// <summary>llama-server's code completion stops (n_indent, t_max_predict_ms), or null.</summary>
    public CodeCompletionStops? CodeStops { get; init; }

    /// <summary>Ids that end a choice (empty: none).</summary>
    public required IReadOnlyList<int> EosTokenIds { get; init; }

    /// <summary>With a value K: each new token's log-prob and the K most likely tokens.</summary>
    public int? Logprobs { get; init; }

    /// <summary>
    /// With <see cref="Logprobs"/>: of the distribution each token was drawn from, after the samplers (llama-server's
    /// <c>post_sampling_probs</c>, <see cref="TokenSampler.LastDraw"/>), rather than of the model's own.
    /// </summary>
    public bool LogprobsAfterSampling { get; init; }

    /// <summary>Feed the prompt to each choice's text decoder first (completions: the continuation is spaced as in the whole text).</summary>
    public bool PrimeTextWithPrompt { get; init; }

    /// <summary>The pictures of the (single) prompt for a Qwen2-VL model, processed; its pads are already expanded.</summary>
    public IReadOnlyList<Qwen2VL.ImagePatches> Pictures { get; init; } = [];

    /// <summary>Makes each choice its own rule over the tokens it may take (<c>response_format</c>), or null for none.</summary>
    public Func<ITokenConstraint>? Constraint { get; init; }

    /// <summary>
    /// The tokens of the text the answer is expected to largely repeat (OpenAI's <c>prediction</c>), or null: prompt
    /// lookup searches them beside the prompt, with the server's lookup or, where that is off, up to
    /// <see cref="PromptLookup.MaxDraftTokens"/> guesses a step.
    /// </summary>
    public int[]? Prediction { get; init; }

    /// <summary>
    /// The scale of each of the model's LoRA adapters for every choice of this job (the request's <c>lora</c>, the adapter its
    /// <c>model</c> names, or the server's scales when it came in); null: the adapters' own (or a model without adapters).
    /// </summary>
    public float[]? AdapterScales { get; init; }

    /// <summary>The client went away or the request timed out: the scheduler drops the job before its next step.</summary>
    public CancellationToken Cancellation { get; init; }

    public int Choices => Prompts.Count * SamplesPerPrompt;


    public ChannelReader<JobEvent> Events => _events.Reader;

    internal ChannelWriter<JobEvent> Writer => _events.Writer;

    /// <summary>When the job entered the queue (time to first token counts from here).</summary>
    internal long EnqueuedTimestamp { get; set; }

    /// <summary>Whether the job's first token has been counted in the time-to-first-token metric.</summary>
    internal bool FirstTokenSeen { get; set; }

    /// <summary>When the job left the queue for its slots (0 while queued), and when its first token was chosen (0 before).</summary>
    internal long StartedTimestamp { get; set; }

    internal long FirstTokenTimestamp { get; set; }

    /// <summary>How the last of its choices to end ended ("stop" or "length", as vLLM's finished_reason).</summary>
    internal string FinishedReason { get; set; } = "stop";

    internal int CompletionTokens { get; set; }

    internal int CachedPromptTokens { get; set; }

    internal int ChoicesLeft { get; set; }

    /// <summary>Guessed tokens its choices took, and dropped (the usage's prediction counts).</summary>
    internal int GuessesTaken { get; set; }

    internal int GuessesDropped { get; set; }
}

/// <summary>Something that happened to a job, in the order it happened.</summary>
internal abstract record JobEvent;

/// <summary>A choice's new token and the text it completes (empty while held back: a partial character or a possible stop string).</summary>
internal sealed record TokenEvent(int Choice, int Token, string Text, TokenLogprobs? Logprobs) : JobEvent;

/// <summary>A choice ended: the text held back until now, and why (for a stop string, which).</summary>
internal sealed record ChoiceFinishedEvent(int Choice, string Text, StopReason Reason, string? StopWord = null) : JobEvent;

/// <summary>Every choice ended (the last event): token counts for the usage block; with a prediction, its guesses taken and dropped.</summary>
internal sealed record JobFinishedEvent(int PromptTokens, int CachedPromptTokens, int CompletionTokens, (int Accepted, int Rejected)? Prediction = null) : JobEvent;
