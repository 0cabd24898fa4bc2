using QwenSharp.Generation;

namespace QwenSharp;

/// <summary>How to embed text. Values left null take the model's own (<see cref="Qwen2.Qwen2Model.EmbeddingConfig"/>).</summary>
public sealed record TextEmbeddingOptions
{
    /// <summary>How each text's hidden states become one vector; null: the model's sentence-transformers Pooling (else the last token).</summary>
    public EmbeddingPooling? Pooling { get; init; }

    /// <summary>Scale each vector to unit length; null: the model's (a Normalize module; else yes).</summary>
    public bool? Normalize { get; init; }

    /// <summary>Every token attends to every token of its text (llama.cpp's <c>--attention non-causal</c>, for gte-Qwen2-7B-instruct); null: the model's (config.json's <c>is_causal</c>).</summary>
    public bool? Bidirectional { get; init; }

    /// <summary>
    /// One of the model's named prompts (sentence-transformers' <c>config_sentence_transformers.json</c>, such as gte-Qwen2's
    /// <c>"query"</c>), put before each text; null: the model's <c>default_prompt_name</c>, if any.
    /// </summary>
    public string? PromptName { get; init; }

    /// <summary>Text put before each text instead of a named prompt (sentence-transformers' <c>prompt</c>).</summary>
    public string? Prompt { get; init; }

    /// <summary>
    /// Cut a text too long for the model to its first tokens (the model's sentence-transformers <c>max_seq_length</c>, at
    /// most its context), the special tokens kept, as sentence-transformers does; false: such a text is refused.
    /// </summary>
    public bool Truncate { get; init; }

    /// <summary>Keep the first this many values (Matryoshka models), before normalizing; null: all (hidden_size, or a Dense module's out_features).</summary>
    public int? Dimensions { get; init; }

    /// <summary>
    /// The LoRA adapter to run alone, by its name (<see cref="QwenModel.AdapterNames"/>; through
    /// <see cref="Microsoft.Extensions.AI.IEmbeddingGenerator{TInput, TEmbedding}"/>, <c>EmbeddingGenerationOptions.ModelId</c>),
    /// as <see cref="TextGenerationOptions.LoraAdapter"/>. Null: <see cref="LoraScales"/>.
    /// </summary>
    public string? LoraAdapter { get; init; }

    /// <summary>How strongly to apply each of the model's LoRA adapters for these texts, as <see cref="TextGenerationOptions.LoraScales"/>. Null: their own.</summary>
    public IReadOnlyList<float>? LoraScales { get; init; }
}
