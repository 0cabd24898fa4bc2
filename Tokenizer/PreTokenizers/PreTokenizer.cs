namespace QwenSharp.Tokenization.PreTokenizers;

/// <summary>When the Metaspace pre-tokenizer puts a replacement character in front of a segment.</summary>
internal enum PrependScheme
{
    Always,
    First,
    Never,
}

/// <summary>
/// The pre-tokenizer of a tokenizer.json, reduced to what it does: an optional rewrite of each segment
/// (Metaspace's spaces to ▁, ByteLevel's prefix space), then splitting steps that cut it into the pieces
/// BPE sees, and whether BPE starts from UTF-8 bytes (ByteLevel) or from characters.
/// </summary>
internal sealed class PreTokenizer
{
    public static readonly PreTokenizer None = new();

    /// <summary>BPE starts from the UTF-8 bytes of each piece, in GPT-2's byte alphabet.</summary>
    public bool ByteLevel { get; init; }

    /// <summary>ByteLevel's <c>add_prefix_space</c>: a segment that does not start with a space gets one.</summary>
    public bool AddPrefixSpace { get; init; }

    /// <summary>Metaspace's replacement character for spaces, or null without Metaspace.</summary>
    public char? MetaspaceReplacement { get; init; }

    public PrependScheme MetaspacePrepend { get; init; } = PrependScheme.Never;

    public IReadOnlyList<ISplitter> Splitters { get; init; } = [];

    /// <summary>
    /// Rewrites <paramref name="segment"/> if this pre-tokenizer rewrites, and leaves its pieces in
    /// <paramref name="pieces"/>; returns the text the pieces index.
    /// </summary>
    public ReadOnlySpan<char> Run(ReadOnlySpan<char> segment, bool startsText, ref char[] rewriteBuffer, PieceList pieces, PieceList spare)
    {
        ReadOnlySpan<char> text = Rewrite(segment, startsText, ref rewriteBuffer);
        pieces.Clear();
        pieces.Add(0, text.Length);
        foreach (ISplitter splitter in Splitters)
        {
            spare.CopyFrom(pieces);
            pieces.Clear();
            for (int i = 0; i < spare.Count; i++)
            {
                splitter.Split(text, spare.StartOf(i), spare.LengthOf(i), pieces);
            }
        }

        return text;
    }

    private ReadOnlySpan<char> Rewrite(ReadOnlySpan<char> segment, bool startsText, ref char[] buffer)
    {
        if (MetaspaceReplacement is char replacement)
        {
            bool prepend = MetaspacePrepend == PrependScheme.Always || (MetaspacePrepend == PrependScheme.First && startsText);
            prepend &= !segment.IsEmpty && segment[0] != ' ' && segment[0] != replacement;
            Span<char> output = Buffers.Grow(ref buffer, segment.Length + 1);
            int length = 0;
            if (prepend)
            {
                output[length++] = replacement;
            }

            foreach (char c in segment)
            {
                output[length++] = c == ' ' ? replacement : c;
            }

            return output[..length];
        }

        if (AddPrefixSpace && !segment.IsEmpty && segment[0] != ' ')
        {
            Span<char> output = Buffers.Grow(ref buffer, segment.Length + 1);
            output[0] = ' ';
            segment.CopyTo(output[1..]);
            return output[..(segment.Length + 1)];
        }

        return segment;
    }
}
