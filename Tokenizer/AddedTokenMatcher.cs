using System.Buffers;
using QwenSharp.Tokenization.Unicode;

namespace QwenSharp.Tokenization;

/// <summary>One run of text between added tokens, or one added token.</summary>
/// <param name="Start">Start in the text.</param>
/// <param name="Length">Length in the text (an added token's may include whitespace it strips).</param>
/// <param name="TokenId">The added token's id, or -1 for text.</param>
internal readonly record struct Segment(int Start, int Length, int TokenId);

/// <summary>
/// Finds added tokens in text as Hugging Face does: leftmost-longest matches, scanned left to right,
/// honouring <c>single_word</c>, <c>lstrip</c> and <c>rstrip</c>. The scan for candidates is a
/// vectorized multi-string search (<see cref="SearchValues{T}"/>), so text without any added token costs
/// one pass.
/// </summary>
internal sealed class AddedTokenMatcher
{
    private readonly SearchValues<string>? _search;
    private readonly Dictionary<char, AddedToken[]> _byFirstChar = [];

    public AddedTokenMatcher(IEnumerable<AddedToken> tokens)
    {
        AddedToken[] usable = [.. tokens.Where(t => t.Content.Length > 0)];
        if (usable.Length == 0)
        {
            return;
        }

        _search = SearchValues.Create(usable.Select(t => t.Content).Distinct().ToArray(), StringComparison.Ordinal);
        foreach (IGrouping<char, AddedToken> group in usable.GroupBy(t => t.Content[0]))
        {
            _byFirstChar[group.Key] = [.. group.OrderByDescending(t => t.Content.Length)];
        }
    }

    public bool IsEmpty => _search is null;

    /// <summary>Appends the segments of <paramref name="text"/> (text runs and added tokens, in order) to <paramref name="output"/>.</summary>
    public void Split(ReadOnlySpan<char> text, bool matchSpecial, List<Segment> output)
    {
        int textStart = 0;
        int position = 0;
        while (_search is not null && position < text.Length)
        {
            int found = text[position..].IndexOfAny(_search);
            if (found < 0)
            {
                break;
            }

            int at = position + found;
            AddedToken token = LongestAt(text, at);
            int start = at;
            int stop = at + token.Content.Length;
            position = stop;
            if ((token.Special && !matchSpecial)
                || (token.SingleWord && (CharClass.EndsWithWord(text[..start]) || CharClass.StartsWithWord(text[stop..]))))
            {
                continue;
            }

            if (token.LStrip)
            {
                start = Math.Max(CharClass.TrailingSpaceStart(text[..start]), textStart);
            }

            if (token.RStrip)
            {
                stop += CharClass.LeadingSpaceLength(text[stop..]);
            }

            if (start > textStart)
            {
                output.Add(new Segment(textStart, start - textStart, -1));
            }

            output.Add(new Segment(start, stop - start, token.Id));
            textStart = stop;
        }

        if (textStart < text.Length)
        {
            output.Add(new Segment(textStart, text.Length - textStart, -1));
        }
    }

    private AddedToken LongestAt(ReadOnlySpan<char> text, int at)
    {
        foreach (AddedToken token in _byFirstChar[text[at]])
        {
            if (text[at..].StartsWith(token.Content, StringComparison.Ordinal))
            {
                return token;
            }
        }

        throw new InvalidOperationException("the multi-string search reported a match that no added token makes");
    }
}
