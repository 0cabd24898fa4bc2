using System.Text;

namespace QwenSharp.Tokenization.Unicode;

/// <summary>
/// Unicode normalization form C, from our own tables (<see cref="NfcData"/>). The runtime's
/// <c>string.Normalize</c> needs ICU and silently returns its input under InvariantGlobalization, so a
/// tokenizer that must match Hugging Face's NFC normalizer cannot rely on it.
/// </summary>
/// <remarks>
/// Most text is already NFC: a scan for "flagged" code points (non-zero combining class, or NFC quick
/// check No/Maybe) returns it untouched. Only text with such a code point is decomposed, reordered and
/// recomposed, as UAX #15 describes.
/// </remarks>
public static class Nfc
{
    private const int HangulS = 0xAC00, HangulL = 0x1100, HangulV = 0x1161, HangulT = 0x11A7;
    private const int HangulLCount = 19, HangulVCount = 21, HangulTCount = 28;
    private const int HangulNCount = HangulVCount * HangulTCount, HangulSCount = HangulLCount * HangulNCount;

    /// <summary>The Unicode version of the tables.</summary>
    public static string UnicodeVersion => NfcData.UnicodeVersion;

    private static readonly ulong[] s_bmpFlagged = BuildBmpFlagged();
    private static readonly Lazy<Tables> s_tables = new(BuildTables);

    /// <summary>The NFC form of <paramref name="text"/>; the same instance when it is already NFC.</summary>
    public static string Normalize(string text) => NormalizeOrNull(text) ?? text;

    /// <summary>The NFC form of <paramref name="text"/>, or null when <paramref name="text"/> is already NFC.</summary>
    public static string? NormalizeOrNull(ReadOnlySpan<char> text) =>
        IsQuickNormalized(text) ? null : NormalizeSlow(text);

    /// <summary>True when no code point of <paramref name="text"/> can change under NFC (so the text is NFC).</summary>
    public static bool IsQuickNormalized(ReadOnlySpan<char> text)
    {
        // Everything below U+0300 (ASCII, Latin-1, Latin Extended) is stable: skip it with a vector scan.
        int i = text.IndexOfAnyExceptInRange('\0', '\u02FF');
        if (i < 0)
        {
            return true;
        }

        for (; i < text.Length; i++)
        {
            char c = text[i];
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                if (IsFlagged(char.ConvertToUtf32(c, text[i + 1])))
                {
                    return false;
                }

                i++;
            }
            else if ((s_bmpFlagged[c >> 6] & (1UL << c)) != 0)
            {
                return false;
            }
        }

        return true;
    }

    private static bool IsFlagged(int codePoint)
    {
        if (codePoint < 0x10000)
        {
            return (s_bmpFlagged[codePoint >> 6] & (1UL << codePoint)) != 0;
        }

        return FindRange(NfcData.Flagged, 2, codePoint) >= 0;
    }

    /// <summary>Index of the (start, end, ...) row of <paramref name="table"/> holding <paramref name="codePoint"/>, or -1.</summary>
    private static int FindRange(ReadOnlySpan<int> table, int stride, int codePoint)
    {
        int lo = 0, hi = table.Length / stride - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (codePoint < table[mid * stride])
            {
                hi = mid - 1;
            }
            else if (codePoint > table[mid * stride + 1])
            {
                lo = mid + 1;
            }
            else
            {
                return mid;
            }
        }

        return -1;
    }

    internal static int CombiningClassOf(int codePoint)
    {
        if (codePoint < 0x300)
        {
            return 0;
        }

        int row = FindRange(NfcData.CombiningClass, 3, codePoint);
        return row < 0 ? 0 : NfcData.CombiningClass[row * 3 + 2];
    }

    /// <summary>
    /// Normalizes only the regions around flagged code points: each region starts at the starter before
    /// the first flagged code point (it may compose with what follows) and ends before the next code point
    /// that is not flagged (a starter nothing can combine into). The text between regions is copied.
    /// </summary>
    private static string NormalizeSlow(ReadOnlySpan<char> text)
    {
        Tables tables = s_tables.Value;
        var builder = new StringBuilder(text.Length + 16);
        var codePoints = new List<int>(32);
        Span<char> utf16 = stackalloc char[2];
        int copied = 0;
        int i = 0;
        while (i < text.Length)
        {
            int cp = CharClass.CodePointAt(text, i, out int width);
            if (!IsFlagged(cp))
            {
                i += width;
                continue;
            }

            // The code point before may compose with what follows (a lone surrogate cannot, and stays as it is).
            int start = i;
            if (i > copied && char.IsLowSurrogate(text[i - 1]) && i - 2 >= copied && char.IsHighSurrogate(text[i - 2]))
            {
                start = i - 2;
            }
            else if (i > copied && !char.IsSurrogate(text[i - 1]))
            {
                start = i - 1;
            }

            int end = i + width;
            while (end < text.Length && IsFlagged(CharClass.CodePointAt(text, end, out int w)))
            {
                end += w;
            }

            builder.Append(text[copied..start]);
            codePoints.Clear();
            foreach (Rune rune in text[start..end].EnumerateRunes())
            {
                Decompose(rune.Value, tables, codePoints);
            }

            ReorderCanonically(codePoints);
            Compose(codePoints, tables);
            foreach (int codePoint in codePoints)
            {
                Rune rune = new(codePoint);
                builder.Append(utf16[..rune.EncodeToUtf16(utf16)]);
            }

            copied = i = end;
        }

        builder.Append(text[copied..]);
        return builder.ToString();
    }

    private static void Decompose(int codePoint, Tables tables, List<int> output)
    {
        if (codePoint is >= HangulS and < HangulS + HangulSCount)
        {
            int index = codePoint - HangulS;
            output.Add(HangulL + index / HangulNCount);
            output.Add(HangulV + index % HangulNCount / HangulTCount);
            if (index % HangulTCount != 0)
            {
                output.Add(HangulT + index % HangulTCount);
            }

            return;
        }

        if (tables.Decompositions.TryGetValue(codePoint, out (int First, int Second) parts))
        {
            Decompose(parts.First, tables, output);
            if (parts.Second != 0)
            {
                Decompose(parts.Second, tables, output);
            }

            return;
        }

        output.Add(codePoint);
    }

    /// <summary>Stable sort of each run of non-starters by combining class (the canonical ordering algorithm).</summary>
    private static void ReorderCanonically(List<int> codePoints)
    {
        for (int i = 1; i < codePoints.Count; i++)
        {
            int cc = CombiningClassOf(codePoints[i]);
            if (cc == 0)
            {
                continue;
            }

            int j = i;
            while (j > 0 && CombiningClassOf(codePoints[j - 1]) > cc)
            {
                (codePoints[j - 1], codePoints[j]) = (codePoints[j], codePoints[j - 1]);
                j--;
            }
        }
    }

    private static void Compose(List<int> codePoints, Tables tables)
    {
        if (codePoints.Count == 0)
        {
            return;
        }

        int starterIndex = 0;
        int starter = codePoints[0];
        // The class of the last code point kept after the starter; 256 while there is no starter yet.
        int lastClass = CombiningClassOf(starter) == 0 ? 0 : 256;
        int write = 1;
        for (int read = 1; read < codePoints.Count; read++)
        {
            int codePoint = codePoints[read];
            int cc = CombiningClassOf(codePoint);
            if ((lastClass < cc || lastClass == 0) && TryCompose(starter, codePoint, tables, out int composite))
            {
                codePoints[starterIndex] = composite;
                starter = composite;
                continue;
            }

            if (cc == 0)
            {
                starterIndex = write;
                starter = codePoint;
            }

            lastClass = cc;
            codePoints[write++] = codePoint;
        }

        codePoints.RemoveRange(write, codePoints.Count - write);
    }

    private static bool TryCompose(int first, int second, Tables tables, out int composite)
    {
        if (first is >= HangulL and < HangulL + HangulLCount && second is >= HangulV and < HangulV + HangulVCount)
        {
            composite = HangulS + ((first - HangulL) * HangulVCount + (second - HangulV)) * HangulTCount;
            return true;
        }

        if (first is >= HangulS and < HangulS + HangulSCount && (first - HangulS) % HangulTCount == 0
            && second is > HangulT and < HangulT + HangulTCount)
        {
            composite = first + (second - HangulT);
            return true;
        }

        return tables.Compositions.TryGetValue(((long)first << 32) | (uint)second, out composite);
    }

    private static ulong[] BuildBmpFlagged()
    {
        var bits = new ulong[0x10000 / 64];
        ReadOnlySpan<int> ranges = NfcData.Flagged;
        for (int r = 0; r < ranges.Length; r += 2)
        {
            for (int cp = ranges[r]; cp <= ranges[r + 1] && cp < 0x10000; cp++)
            {
                bits[cp >> 6] |= 1UL << cp;
            }
        }

        return bits;
    }

    private sealed record Tables(Dictionary<int, (int First, int Second)> Decompositions, Dictionary<long, int> Compositions);

    private static Tables BuildTables()
    {
        ReadOnlySpan<int> rows = NfcData.Decompositions;
        var excluded = new HashSet<int>(NfcData.CompositionExcluded.ToArray());
        var decompositions = new Dictionary<int, (int, int)>(rows.Length / 3);
        var compositions = new Dictionary<long, int>();
        for (int r = 0; r < rows.Length; r += 3)
        {
            (int codePoint, int first, int second) = (rows[r], rows[r + 1], rows[r + 2]);
            decompositions[codePoint] = (first, second);
            if (second != 0 && !excluded.Contains(codePoint))
            {
                compositions[((long)first << 32) | (uint)second] = codePoint;
            }
        }

        return new Tables(decompositions, compositions);
    }
}
