using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using QwenSharp.Tokenization.Models;

namespace QwenSharp.Tokenization.Loading;

/// <summary>A merge with its tokens as ids: <see cref="Left"/> + <see cref="Right"/> becomes <see cref="Merged"/>.</summary>
internal readonly record struct MergeRule(int Left, int Right, int Merged);

/// <summary>
/// Reads tokenizer.json's <c>model.merges</c> (<c>"a b"</c> or <c>["a", "b"]</c>) straight to ids: each
/// string is transcoded from the file's UTF-8 into a stack buffer and looked up by span, so 150 000 merges
/// cost no string allocations; the lookups run on all cores. The first bad merge is reported by index.
/// </summary>
internal static class MergeReader
{
    private const int Unresolved = -1;

    public static MergeRule[] Read(JsonElement merges, Vocabulary vocabulary, string where)
    {
        if (merges.ValueKind != JsonValueKind.Array)
        {
            throw new InvalidDataException($"{where}: field 'merges' must be a list");
        }

        JsonElement[] items = [.. merges.EnumerateArray()];
        var rules = new MergeRule[items.Length];
        int chunk = Math.Max(4096, items.Length / (4 * Environment.ProcessorCount) + 1);
        Parallel.For(0, (items.Length + chunk - 1) / chunk, c =>
        {
            for (int i = c * chunk; i < Math.Min(items.Length, (c + 1) * chunk); i++)
            {
                rules[i] = TryResolve(items[i], vocabulary, out MergeRule rule) ? rule : new MergeRule(Unresolved, Unresolved, Unresolved);
            }
        });

        for (int i = 0; i < rules.Length; i++)
        {
            if (rules[i].Merged == Unresolved)
            {
                throw new InvalidDataException(Describe(items[i], vocabulary, $"{where}.merges[{i}]"));
            }
        }

        return rules;
    }

    private static bool TryResolve(JsonElement merge, Vocabulary vocabulary, out MergeRule rule)
    {
        rule = default;
        Span<char> left = stackalloc char[256];
        Span<char> right = stackalloc char[256];
        if (!TrySplit(merge, ref left, ref right))
        {
            return false;
        }

        Span<char> joined = stackalloc char[512];
        left.CopyTo(joined);
        right.CopyTo(joined[left.Length..]);
        if (!vocabulary.TryGetId(left, out int leftId) || !vocabulary.TryGetId(right, out int rightId)
            || !vocabulary.TryGetId(joined[..(left.Length + right.Length)], out int merged))
        {
            return false;
        }

        rule = new MergeRule(leftId, rightId, merged);
        return true;
    }

    /// <summary>The two tokens of a merge, written into (and sliced from) the given buffers.</summary>
    private static bool TrySplit(JsonElement merge, ref Span<char> left, ref Span<char> right)
    {
        if (merge.ValueKind == JsonValueKind.String)
        {
            Span<char> text = stackalloc char[512];
            if (!TryChars(merge, text, out int length))
            {
                return false;
            }

            ReadOnlySpan<char> whole = text[..length];
            int space = whole.IndexOf(' ');
            if (space <= 0 || space == whole.Length - 1 || whole[(space + 1)..].Contains(' ') || space > left.Length || whole.Length - space - 1 > right.Length)
            {
                return false;
            }

            whole[..space].CopyTo(left);
            whole[(space + 1)..].CopyTo(right);
            left = left[..space];
            right = right[..(whole.Length - space - 1)];
            return true;
        }

        if (merge.ValueKind == JsonValueKind.Array && merge.GetArrayLength() == 2
            && TryChars(merge[0], left, out int leftLength) && TryChars(merge[1], right, out int rightLength))
        {
            left = left[..leftLength];
            right = right[..rightLength];
            return true;
        }

        return false;
    }

    /// <summary>A JSON string's characters: transcoded from the raw UTF-8 when it has no escapes, else via GetString.</summary>
    private static bool TryChars(JsonElement value, Span<char> destination, out int length)
    {
        length = 0;
        if (value.ValueKind != JsonValueKind.String)
        {
            return false;
        }

        ReadOnlySpan<byte> raw = JsonMarshal.GetRawUtf8Value(value);
        if (raw.Length >= 2 && raw[0] == (byte)'"')
        {
            raw = raw[1..^1];
        }

        if (raw.IndexOf((byte)'\\') < 0)
        {
            return Encoding.UTF8.TryGetChars(raw, destination, out length);
        }

        string text = value.GetString()!;
        if (text.Length > destination.Length)
        {
            return false;
        }

        text.CopyTo(destination);
        length = text.Length;
        return true;
    }

    /// <summary>Why a merge cannot be used, for the error message.</summary>
    private static string Describe(JsonElement merge, Vocabulary vocabulary, string where)
    {
        (string? left, string? right) = merge.ValueKind switch
        {
            JsonValueKind.String when merge.GetString()!.Split(' ') is [var a, var b] && a.Length > 0 && b.Length > 0 => (a, b),
            JsonValueKind.Array when merge.GetArrayLength() == 2 && merge[0].ValueKind == JsonValueKind.String
                && merge[1].ValueKind == JsonValueKind.String => (merge[0].GetString(), merge[1].GetString()),
            _ => ((string?)null, (string?)null),
        };
        if (left is null || right is null)
        {
            return $"{where}: expected \"a b\" or [\"a\", \"b\"], found {JsonFields.Describe(merge)}";
        }

        foreach (string part in (string[])[left, right])
        {
            if (!vocabulary.TryGetId(part, out _))
            {
                return $"{where} names \"{part}\", which is not in model.vocab";
            }
        }

        return vocabulary.TryGetId(left + right, out _)
            ? $"{where}: \"{left} {right}\" is longer than a merge can be (256 characters a token)"
            : $"{where} \"{left} {right}\": the merged token \"{left}{right}\" is not in model.vocab";
    }
}
