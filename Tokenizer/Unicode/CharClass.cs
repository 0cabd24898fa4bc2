using System.Globalization;
using System.Text;

namespace QwenSharp.Tokenization.Unicode;

/// <summary>The character classes the pre-tokenizer regexes use, for whole code points.</summary>
[Flags]
internal enum CharClasses : byte
{
    None = 0,
    /// <summary><c>\p{L}</c>: Lu, Ll, Lt, Lm, Lo.</summary>
    Letter = 1,
    /// <summary><c>\p{N}</c>: Nd, Nl, No.</summary>
    Number = 2,
    /// <summary><c>\s</c>: the Unicode White_Space property.</summary>
    Space = 4,
    /// <summary><c>\r</c> or <c>\n</c>.</summary>
    NewLine = 8,
    /// <summary><c>\w</c> as Rust's regex crate has it: letters, marks, decimal digits, connector punctuation.</summary>
    Word = 16,
}

/// <summary>
/// Classifies code points for the pre-tokenizer. The BMP is a 64 KiB table built once from the runtime's
/// Unicode data; astral code points (CJK Extension B, math letters, emoji) are looked up per call, so a
/// surrogate pair is one letter, as in Hugging Face's code-point based regex engine, not two unknowns.
/// </summary>
internal static class CharClass
{
    private static readonly CharClasses[] s_bmp = BuildBmp();

    public static CharClasses Of(int codePoint) =>
        (uint)codePoint < 0x10000 ? s_bmp[codePoint] : Classify(codePoint);

    public static CharClasses Of(char c) => s_bmp[c];

    /// <summary>The code point at <paramref name="index"/> and its length in UTF-16 units (a lone surrogate is itself).</summary>
    public static int CodePointAt(ReadOnlySpan<char> text, int index, out int width)
    {
        char c = text[index];
        if (char.IsHighSurrogate(c) && index + 1 < text.Length && char.IsLowSurrogate(text[index + 1]))
        {
            width = 2;
            return char.ConvertToUtf32(c, text[index + 1]);
        }

        width = 1;
        return c;
    }

    private static CharClasses[] BuildBmp()
    {
        var table = new CharClasses[0x10000];
        for (int c = 0; c < table.Length; c++)
        {
            table[c] = c is >= 0xD800 and <= 0xDFFF ? CharClasses.None : Classify(c);
        }

        return table;
    }

    private static CharClasses Classify(int codePoint)
    {
        UnicodeCategory category = CharUnicodeInfo.GetUnicodeCategory(codePoint);
        CharClasses classes = category switch
        {
            UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => CharClasses.Letter | CharClasses.Word,
            UnicodeCategory.DecimalDigitNumber => CharClasses.Number | CharClasses.Word,
            UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => CharClasses.Number,
            UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark
                or UnicodeCategory.ConnectorPunctuation => CharClasses.Word,
            _ => CharClasses.None,
        };

        if (codePoint < 0x10000 && char.IsWhiteSpace((char)codePoint))
        {
            classes |= CharClasses.Space;
        }

        if (codePoint is '\r' or '\n')
        {
            classes |= CharClasses.NewLine;
        }

        return classes;
    }

    /// <summary>Length of the run of whitespace at the start of <paramref name="text"/>.</summary>
    public static int LeadingSpaceLength(ReadOnlySpan<char> text)
    {
        int i = 0;
        while (i < text.Length && (Of(text[i]) & CharClasses.Space) != 0)
        {
            i++;
        }

        return i;
    }

    /// <summary>Index where the run of whitespace at the end of <paramref name="text"/> starts.</summary>
    public static int TrailingSpaceStart(ReadOnlySpan<char> text)
    {
        int i = text.Length;
        while (i > 0 && (Of(text[i - 1]) & CharClasses.Space) != 0)
        {
            i--;
        }

        return i;
    }

    /// <summary>Whether the last code point of <paramref name="text"/> is a word character (<c>\w$</c>).</summary>
    public static bool EndsWithWord(ReadOnlySpan<char> text)
    {
        if (text.IsEmpty)
        {
            return false;
        }

        Rune.DecodeLastFromUtf16(text, out Rune rune, out _);
        return (Of(rune.Value) & CharClasses.Word) != 0;
    }

    /// <summary>Whether the first code point of <paramref name="text"/> is a word character (<c>^\w</c>).</summary>
    public static bool StartsWithWord(ReadOnlySpan<char> text) =>
        !text.IsEmpty && (Of(CodePointAt(text, 0, out _)) & CharClasses.Word) != 0;
}
