using System.Text.RegularExpressions;

namespace QwenSharp.Tokenization.PreTokenizers;

/// <summary>What a <c>Split</c> pre-tokenizer does with the matches of its pattern.</summary>
internal enum SplitBehavior
{
    /// <summary>Matches and the text between them are all pieces.</summary>
    Isolated,
    /// <summary>Matches are dropped; the text between them is kept.</summary>
    Removed,
}

/// <summary>
/// A <c>Split</c> pre-tokenizer for patterns without a hand-written matcher, on .NET's regex engine.
/// .NET matches UTF-16 units, so a class like <c>\p{L}</c> does not see an astral-plane letter as one
/// character; the Qwen2 and cl100k patterns use <see cref="Gpt4StyleSplitter"/> instead, which does.
/// </summary>
internal sealed class RegexSplitter(Regex regex, SplitBehavior behavior, bool invert) : ISplitter
{
    public void Split(ReadOnlySpan<char> text, int start, int length, PieceList output)
    {
        ReadOnlySpan<char> piece = text.Slice(start, length);
        int previous = 0;
        foreach (ValueMatch match in regex.EnumerateMatches(piece))
        {
            if (match.Length == 0)
            {
                continue;
            }

            // With invert, the matches are the "gaps" and the text between them is what the behaviour applies to.
            AddGap(start + previous, match.Index - previous, output);
            AddMatch(start + match.Index, match.Length, output);
            previous = match.Index + match.Length;
        }

        AddGap(start + previous, length - previous, output);
    }

    private void AddGap(int start, int length, PieceList output)
    {
        if (!invert || behavior == SplitBehavior.Isolated)
        {
            output.Add(start, length);
        }
    }

    private void AddMatch(int start, int length, PieceList output)
    {
        if (invert || behavior == SplitBehavior.Isolated)
        {
            output.Add(start, length);
        }
    }
}
