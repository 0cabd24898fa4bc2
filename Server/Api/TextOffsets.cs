using QwenSharp.Server.Scheduling;
using QwenSharp.Tokenization;

namespace QwenSharp.Server.Api;

/// <summary>
/// The legacy completions log-probs' <c>text_offset</c>: where each generated token's text starts in its choice's text.
/// Each choice decodes its tokens as its text was decoded (after its prompt, special tokens skipped), so a token that
/// holds part of a character starts where the character will, and in a stream the offsets go on from chunk to chunk.
/// Summing the tokens' own lengths, as before, counted a sentencepiece word's space as missing and a split character as
/// U+FFFD once per token.
/// </summary>
internal sealed class TextOffsets(Tokenizer tokenizer, GenerationJob job)
{
    private readonly Choice?[] _choices = new Choice?[job.Choices];

    /// <summary>Where <paramref name="token"/>'s text starts in choice <paramref name="choice"/>'s text; takes the token.</summary>
    public int Next(int choice, int token)
    {
        Choice state = _choices[choice] ??= Open(choice);
        int offset = state.Length;
        if (tokenizer.IdToToken(token) is not null)
        {
            state.Length += state.Decoder.Append(token).Length;
        }

        return offset;
    }

    private Choice Open(int choice)
    {
        StreamingDecoder decoder = tokenizer.CreateStreamingDecoder(skipSpecialTokens: true);
        if (job.PrimeTextWithPrompt)
        {
            foreach (int id in job.Prompts[choice / job.SamplesPerPrompt])
            {
                decoder.Append(id);
            }
        }

        return new Choice(decoder);
    }

    private sealed class Choice(StreamingDecoder decoder)
    {
        public StreamingDecoder Decoder { get; } = decoder;

        public int Length { get; set; }
    }
}
