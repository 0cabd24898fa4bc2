namespace QwenSharp.Tokenization.PreTokenizers;

/// <summary>
/// The splitting half of the <c>Metaspace</c> pre-tokenizer: a new piece starts at every replacement
/// character (▁), which stays at the front of its piece ("merged with next").
/// </summary>
internal sealed class MetaspaceSplitter(char replacement) : ISplitter
{
    public void Split(ReadOnlySpan<char> text, int start, int length, PieceList output)
    {
        int pieceStart = start;
        for (int i = start + 1; i < start + length; i++)
        {
            if (text[i] == replacement)
            {
                output.Add(pieceStart, i - pieceStart);
                pieceStart = i;
            }
        }

        output.Add(pieceStart, start + length - pieceStart);
    }
}
