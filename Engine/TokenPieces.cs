using System.Runtime.CompilerServices;
using QwenSharp.Tokenization;

namespace QwenSharp;

/// <summary>
/// Every token's text as bytes, by id (<see cref="Tokenizer.TokenBytes"/>, special tokens as their text), made once per
/// tokenizer: what the samplers that read the vocabulary (DRY's breakers, the infill sampler) scan.
/// </summary>
internal static class TokenPieces
{
    private static readonly ConditionalWeakTable<Tokenizer, byte[][]> s_pieces = [];

    public static byte[][] Of(Tokenizer tokenizer) =>
        s_pieces.GetValue(tokenizer, t => [.. Enumerable.Range(0, t.VocabularySize).Select(t.TokenBytes)]);
}
