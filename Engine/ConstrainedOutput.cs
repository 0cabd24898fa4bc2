using QwenSharp.Sampling;
using QwenSharp.Tokenization;

namespace QwenSharp;

/// <summary>What constrained output (<see cref="JsonObjectConstraint"/>) checks tokens against, from a model's tokenizer.</summary>
internal static class ConstrainedOutput
{
    /// <summary>
    /// Which tokens continue a JSON object, over every one of the model's <paramref name="vocabularySize"/> tokens' bytes:
    /// special tokens, and the padding rows past the tokenizer's vocabulary, have none, so no constrained text holds them.
    /// </summary>
    public static JsonObjectMasks JsonMasks(Tokenizer tokenizer, int vocabularySize) => new(new TokenBytes(
        [.. Enumerable.Range(0, vocabularySize).Select(id => tokenizer.IdToToken(id) is null || tokenizer.IsSpecial(id) ? null : tokenizer.TokenBytes(id))]));
}
