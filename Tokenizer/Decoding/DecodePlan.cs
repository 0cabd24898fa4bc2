namespace QwenSharp.Tokenization.Decoding;

/// <summary>
/// What tokenizer.json's decoder does to token strings, reduced to the steps the supported decoders
/// (ByteLevel; Metaspace; Replace, ByteFallback, Fuse, Strip) are made of. Both full and streaming
/// decoding run through <see cref="StreamingDecoder"/> with this plan, so they cannot disagree.
/// </summary>
internal sealed record DecodePlan
{
    /// <summary>Token characters are GPT-2 byte-alphabet characters standing for UTF-8 bytes (ByteLevel).</summary>
    public bool ByteLevel { get; init; }

    /// <summary>A string every token has replaced (Replace, or Metaspace's ▁), with <see cref="ReplaceWith"/>.</summary>
    public string? ReplaceFrom { get; init; }

    public string ReplaceWith { get; init; } = " ";

    /// <summary>Metaspace: in the first token the replacement character is dropped rather than made a space.</summary>
    public bool DropReplacementInFirstToken { get; init; }

    /// <summary>ByteFallback: runs of <c>&lt;0xXX&gt;</c> tokens are UTF-8 bytes (each byte one U+FFFD when the run is not valid UTF-8).</summary>
    public bool ByteFallback { get; init; }

    /// <summary>Strip after Fuse: up to this many leading <see cref="StripChar"/> are removed from the text.</summary>
    public int StripLeading { get; init; }

    public char StripChar { get; init; } = ' ';
}
