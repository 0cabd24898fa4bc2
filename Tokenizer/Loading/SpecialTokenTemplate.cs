namespace QwenSharp.Tokenization.Loading;

/// <summary>
/// The special tokens a tokenizer's post-processor adds around one text (<see cref="Prefix"/> text <see cref="Suffix"/>)
/// and around a pair of texts (<see cref="PairPrefix"/> first <see cref="PairMiddle"/> second <see cref="PairSuffix"/>):
/// what transformers' <c>tokenizer(text)</c> and <c>tokenizer(text, text_pair)</c> add, a cross-encoder's query and document.
/// </summary>
internal sealed record SpecialTokenTemplate(int[] Prefix, int[] Suffix, int[] PairPrefix, int[] PairMiddle, int[] PairSuffix)
{
    /// <summary>Nothing added (a ByteLevel post-processor, Qwen2's, or none): a pair is the two texts' tokens one after the other.</summary>
    public static SpecialTokenTemplate None { get; } = FromSingle([], []);

    /// <summary>
    /// A template given for one text only, the pair being each text through it in turn: Hugging Face tokenizers' default
    /// pair of a TemplateProcessing without one, and transformers' Llama-style rebuild from add_bos_token/add_eos_token
    /// (<c>bos $A eos bos $B eos</c>).
    /// </summary>
    public static SpecialTokenTemplate FromSingle(int[] prefix, int[] suffix) => new(prefix, suffix, prefix, [.. suffix, .. prefix], suffix);
}
