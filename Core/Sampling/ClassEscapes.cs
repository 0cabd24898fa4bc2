using System.Globalization;

namespace QwenSharp.Sampling;

/// <summary>
/// What <c>\d \w \s</c> and their negations may match when a pattern is read by either of the engines its answers meet:
/// ECMAScript's (OpenAI's JSON Schema, a browser) and .NET's (JsonSchema.Net, DataAnnotations' [RegularExpression]).
/// They differ: .NET's <c>\d</c> and <c>\w</c> take every script's digits and letters, ECMAScript's only ASCII's; their
/// <c>\s</c> differ by U+0085 and U+FEFF. So each escape has a narrow set, what both engines match, and a wide one,
/// what either does: a pattern matches with the narrow sets, and a negation (<c>\D</c>, <c>[^...]</c>) is the complement
/// of the wide ones, so that every answer kept matches under both.
/// </summary>
internal static class ClassEscapes
{
    /// <summary>An escape's or a class's members as both engines read them (<see cref="Narrow"/>) and as either may (<see cref="Wide"/>).</summary>
    public readonly record struct Members(CharacterSet Narrow, CharacterSet Wide)
    {
        public static Members Exactly(CharacterSet set) => new(set, set);

        public Members Union(Members other) => new(Narrow.Union(other.Narrow), Wide.Union(other.Wide));

        /// <summary>The units neither engine counts in: the complement of the wide set (and, as what either may count, of the narrow one).</summary>
        public Members Complement() => new(Wide.Complement(), Narrow.Complement());
    }

    private static readonly CharacterSet s_asciiDigits = CharacterSet.Of(('0', '9'));
    private static readonly CharacterSet s_asciiWord = CharacterSet.Of(('0', '9'), ('A', 'Z'), ('a', 'z'), ('_', '_'));

    // ECMAScript's WhiteSpace and LineTerminator less U+FEFF; .NET's [\f\n\r\t\v\x85\p{Z}] less U+0085: the same set.
    private static readonly CharacterSet s_sharedSpace = CharacterSet.Of(('\t', '\r'), (' ', ' '), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A),
        (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000));

    public static Members Digits { get; } = new(s_asciiDigits, Where(c => CharUnicodeInfo.GetUnicodeCategory(c) == UnicodeCategory.DecimalDigitNumber));

    /// <summary>.NET's word class is letters, marks, decimal digits and connector punctuation, and the zero-width joiners.</summary>
    public static Members Word { get; } = new(s_asciiWord, Where(c => c is '\u200C' or '\u200D' || CharUnicodeInfo.GetUnicodeCategory(c) is UnicodeCategory.UppercaseLetter
        or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter
        or UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark
        or UnicodeCategory.DecimalDigitNumber or UnicodeCategory.ConnectorPunctuation));

    public static Members Space { get; } = new(s_sharedSpace, s_sharedSpace.Union(CharacterSet.Of((0x85, 0x85), (0xFEFF, 0xFEFF))));

    /// <summary>The UTF-16 code units that <paramref name="member"/> takes, as a set.</summary>
    private static CharacterSet Where(Func<char, bool> member)
    {
        var ranges = new List<(int, int)>();
        int start = -1;
        for (int c = 0; c <= CharacterSet.MaxUnit + 1; c++)
        {
            bool inside = c <= CharacterSet.MaxUnit && member((char)c);
            if (inside && start < 0)
            {
                start = c;
            }
            else if (!inside && start >= 0)
            {
                ranges.Add((start, c - 1));
                start = -1;
            }
        }

        return CharacterSet.Of([.. ranges]);
    }
}
