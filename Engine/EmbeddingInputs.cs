using QwenSharp.Generation;
using QwenSharp.Qwen2;
using QwenSharp.Tokenization;

namespace QwenSharp;

/// <summary>Texts to embed as token ids, the way the library and <c>qwensharp embed</c> both read them.</summary>
internal static class EmbeddingInputs
{
    /// <summary>
    /// Each text after its prompt (named, given, or the model's default; see <see cref="EmbeddingConfig.PromptFor"/>),
    /// encoded with the tokenizer's special tokens; with <paramref name="truncate"/>, cut to the model's
    /// <see cref="EmbeddingConfig.TruncationLength"/>, special tokens kept.
    /// </summary>
    public static int[][] Encode(Tokenizer tokenizer, Qwen2Model model, IEnumerable<string> texts, string? promptName, string? prompt,
        EmbeddingPooling? pooling, bool truncate)
    {
        EmbeddingConfig config = model.EmbeddingConfig;
        string prefix = config.PromptFor(promptName, prompt, pooling ?? config.Pooling);
        int limit = config.TruncationLength(model.Config.MaxPositionEmbeddings);
        return [.. texts.Select(t => prefix + (t ?? throw new ArgumentException("a text to embed is null", nameof(texts))))
            .Select(t => truncate ? tokenizer.EncodeTruncated(t, limit, out _) : tokenizer.Encode(t, addSpecialTokens: true))];
    }
}
