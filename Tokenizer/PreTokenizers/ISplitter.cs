namespace QwenSharp.Tokenization.PreTokenizers;

/// <summary>One splitting step of a pre-tokenizer: cuts a piece of the text into smaller pieces.</summary>
internal interface ISplitter
{
    /// <summary>Appends to <paramref name="output"/> the pieces of <c>text[start..start+length]</c>, in order, covering what is kept.</summary>
    void Split(ReadOnlySpan<char> text, int start, int length, PieceList output);
}
