using System.Runtime.CompilerServices;
using QwenSharp.Sampling;
using QwenSharp.Tokenization;

namespace QwenSharp;

/// <summary>
/// The vocabulary llama.cpp's infill sampler reads (<see cref="InfillFilter"/>), from the tokenizer: each token's text
/// as llama.cpp renders it without special tokens (none for a special token), the tokens that end generation, and the
/// end-of-turn token llama.cpp answers with when no text token is left (the first of its names the vocabulary has, where
/// it ends the answer here; else the first end token). Made once per tokenizer and set of end tokens.
/// </summary>
public static class InfillSampling
{
    /// <summary>The pieces as llama.cpp renders them without special tokens: none for a special token.</summary>
    private static readonly ConditionalWeakTable<Tokenizer, byte[][]> s_pieces = [];

    /// <summary>The texts llama.cpp takes for a vocabulary's end-of-turn token, in its order (Qwen's is &lt;|im_end|&gt;).</summary>
    private static readonly string[] s_endOfTurnNames = ["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>", "_<EOT>", "<｜end▁of▁sentence｜>"];

    /// <summary>
    /// <paramref name="options"/> with the infill sampler where <paramref name="overrides"/> ask for it and a draw is made;
    /// <paramref name="endOfGeneration"/> are the ids that end the answer (the first the end-of-text token).
    /// </summary>
    public static SamplingOptions WithInfill(this SamplingOptions options, SamplingOverrides overrides, Tokenizer? tokenizer, IReadOnlyList<int> endOfGeneration)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(overrides);
        ArgumentNullException.ThrowIfNull(endOfGeneration);
        if (!overrides.Infill || options.IsGreedy || tokenizer is null || endOfGeneration.Count == 0)
        {
            return options;
        }

        byte[][] pieces = s_pieces.GetValue(tokenizer, t =>
            [.. TokenPieces.Of(t).Select((piece, id) => t.IsSpecial(id) ? [] : piece)]);
        bool[] ends = new bool[pieces.Length];
        foreach (int id in endOfGeneration.Where(id => (uint)id < (uint)ends.Length))
        {
            ends[id] = true;
        }

        // llama.cpp's choice where it ends the answer here too; else the first token that does.
        int endOfText = s_endOfTurnNames.Select(tokenizer.TokenToId).FirstOrDefault(id => id is int known && endOfGeneration.Contains(known)) ?? endOfGeneration[0];
        return options with { Infill = new InfillVocabulary(pieces, ends, endOfText) };
    }
}
