namespace QwenSharp.Tokenization;

/// <summary>
/// A tokenizer as a GGUF file describes it (the <c>tokenizer.ggml.*</c> keys and <c>tokenizer.chat_template</c>),
/// read by whoever reads the file; <see cref="Tokenizer.FromGguf"/> builds the tokenizer from it.
/// </summary>
/// <param name="Source">The file, for messages.</param>
/// <param name="Model">tokenizer.ggml.model: "gpt2" (byte-level BPE) or "llama" (sentencepiece: scores and byte tokens).</param>
/// <param name="Pre">tokenizer.ggml.pre: the pre-tokenizer ("qwen2", "llama-bpe", "default", ...).</param>
/// <param name="Tokens">tokenizer.ggml.tokens, by id.</param>
/// <param name="TokenTypes">tokenizer.ggml.token_type: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.</param>
/// <param name="Merges">tokenizer.ggml.merges, "left right", highest priority first.</param>
/// <param name="Scores">tokenizer.ggml.scores, by id: sentencepiece merges the pair whose result scores highest.</param>
/// <param name="AddSpacePrefix">tokenizer.ggml.add_space_prefix: sentencepiece puts "▁" before the text (default yes).</param>
public sealed record GgufVocabulary(
    string Source,
    string Model,
    string? Pre,
    IReadOnlyList<string> Tokens,
    IReadOnlyList<long>? TokenTypes,
    IReadOnlyList<string>? Merges,
    int? BosTokenId,
    int? EosTokenId,
    int? PadTokenId,
    bool? AddBosToken,
    bool? AddEosToken,
    string? ChatTemplate,
    IReadOnlyList<float>? Scores = null,
    bool? AddSpacePrefix = null,
    int? UnknownTokenId = null)
{
    public const int Normal = 1;
    public const int Unknown = 2;
    public const int Control = 3;
    public const int UserDefined = 4;
    public const int Unused = 5;
    public const int Byte = 6;
}
