using QwenSharp.Sampling;

namespace QwenSharp;

/// <summary>
/// What to generate. Values left null take the model's generation_config.json defaults; giving a sampling
/// value (temperature, top-k, top-p, min-p, seed) turns sampling on; <c>Sampling.Greedy</c> takes the argmax.
/// </summary>
public sealed record TextGenerationOptions
{
    /// <summary>Most new tokens; null: generation_config.json's max_new_tokens, else 256.</summary>
    public int? MaxNewTokens { get; init; }

    /// <summary>Greedy or sampling, and the values that override generation_config.json's.</summary>
    public SamplingOverrides Sampling { get; init; } = new();

    /// <summary>Stop when the text contains one of these (cut before it), even across tokens.</summary>
    public IReadOnlyList<string> StopSequences { get; init; } = [];

    /// <summary>With a value K: each token's log-prob and the K most likely alternatives.</summary>
    public int? Logprobs { get; init; }

    /// <summary>
    /// The answer is a JSON object, as OpenAI's <c>response_format: json_object</c> (and <c>ChatResponseFormat.Json</c>
    /// through <see cref="Microsoft.Extensions.AI.IChatClient"/>): every token is checked to continue one, and the answer
    /// ends when the object closes. Ended by the token limit first, it is the beginning of an object.
    /// </summary>
    public bool JsonObject { get; init; }

    /// <summary>
    /// The answer is what this JSON schema describes, as OpenAI's <c>response_format: json_schema</c> (and
    /// <c>ChatResponseFormat.ForJsonSchema</c>, which <c>GetResponseAsync&lt;T&gt;</c> uses): every token is checked to
    /// continue such an answer, properties come in the schema's order, and the answer ends when it is whole. The schema
    /// must have an object at its root; what <see cref="Sampling.JsonSchema"/> does not take is refused (ArgumentException).
    /// </summary>
    public System.Text.Json.JsonElement? JsonSchema { get; init; }

    /// <summary>
    /// The answer is exactly one of these texts, as plain text (vLLM's <c>guided_choice</c>): a label, a yes or no. Empty,
    /// repeated or more than 64 texts are refused (ArgumentException).
    /// </summary>
    public IReadOnlyList<string>? Choices { get; init; }

    /// <summary>
    /// The answer is plain text this regular expression matches whole (vLLM's <c>guided_regex</c>; the expressions a
    /// schema's <c>pattern</c> takes: no lookarounds or back-references, refused by name with an ArgumentException).
    /// </summary>
    public string? Regex { get; init; }

    /// <summary>
    /// The answer is plain text this GBNF grammar allows from its rule <c>root</c> (llama.cpp's <c>--grammar</c>,
    /// llama-server's <c>grammar</c>, vLLM's <c>guided_grammar</c>), and where it names tokens (<c>&lt;[id]&gt;</c>,
    /// <c>&lt;|im_end|&gt;</c>, <c>!&lt;[id]&gt;</c>: llama.cpp's token references) those whole. Grammars with left recursion,
    /// references to no single token of the model's, and malformed ones, are refused with an ArgumentException saying what
    /// and where (line, column).
    /// </summary>
    public string? Grammar { get; init; }

    /// <summary>The chat client's tool calls held to its tools (<see cref="QwenChatClient"/>); null: none held.</summary>
    internal Func<ITokenConstraint>? HeldCalls { get; init; }

    /// <summary>
    /// Prompt lookup (transformers' <c>prompt_lookup_num_tokens</c>): up to this many tokens a step guessed from where the
    /// text's last tokens stood before, and checked in the same step; the tokens are those without it, more than one a
    /// step where the answer repeats the prompt or itself. 0 switches off <see cref="QwenModelOptions.PromptLookup"/>;
    /// null takes it. Above <see cref="Generation.PromptLookup.MaxDraftTokens"/> is refused (ArgumentOutOfRangeException).
    /// With <see cref="QwenModelOptions.DraftModel"/> the guesses are the draft model's, this many a step (0: none).
    /// </summary>
    public int? PromptLookup { get; init; }

    /// <summary>
    /// The LoRA adapter to run alone, by its name (<see cref="QwenModel.AdapterNames"/>; through
    /// <see cref="Microsoft.Extensions.AI.IChatClient"/>, <c>ChatOptions.ModelId</c>), at its
    /// <see cref="LoraAdapterOptions.Scale"/> (1 for one loaded at 0): a server's <c>model</c>. An unknown name is refused
    /// (ArgumentException). Null: <see cref="LoraScales"/>.
    /// </summary>
    public string? LoraAdapter { get; init; }

    /// <summary>
    /// How strongly to apply each of the model's LoRA adapters (<see cref="QwenModelOptions.LoraAdapters"/>, in order) for
    /// this generation: 1 as trained, 0 off; one per adapter. Null: their <see cref="LoraAdapterOptions.Scale"/>.
    /// </summary>
    public IReadOnlyList<float>? LoraScales { get; init; }

    /// <summary>Keep going past end-of-sequence ids (benchmarks).</summary>
    public bool IgnoreEos { get; init; }

    /// <summary>Tokens a sequence may reach, prompt included; null is the model's max_position_embeddings.</summary>
    public int? Context { get; init; }
}
