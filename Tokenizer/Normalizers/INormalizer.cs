namespace QwenSharp.Tokenization.Normalizers;

/// <summary>A tokenizer.json normalizer: rewrites a piece of text before pre-tokenization.</summary>
internal interface INormalizer
{
    /// <summary>The normalized text, or null when <paramref name="text"/> is unchanged (the common case, no allocation).</summary>
    string? Normalize(ReadOnlySpan<char> text);
}

/// <summary><c>NFC</c>: Unicode canonical composition, from our own tables.</summary>
internal sealed class NfcNormalizer : INormalizer
{
    public string? Normalize(ReadOnlySpan<char> text) => Unicode.Nfc.NormalizeOrNull(text);
}

/// <summary><c>Prepend</c>: puts a string in front of non-empty text (sentencepiece's "▁" for Llama 2).</summary>
internal sealed class PrependNormalizer(string prefix) : INormalizer
{
    public string? Normalize(ReadOnlySpan<char> text) => text.IsEmpty ? null : string.Concat(prefix, text);
}

/// <summary><c>Replace</c> with a literal pattern: every occurrence of it becomes <paramref name="content"/>.</summary>
internal sealed class ReplaceNormalizer(string pattern, string content) : INormalizer
{
    public string? Normalize(ReadOnlySpan<char> text) =>
        text.IndexOf(pattern, StringComparison.Ordinal) < 0 ? null : text.ToString().Replace(pattern, content, StringComparison.Ordinal);
}

/// <summary><c>Sequence</c>: the normalizers one after another.</summary>
internal sealed class SequenceNormalizer(IReadOnlyList<INormalizer> normalizers) : INormalizer
{
    public string? Normalize(ReadOnlySpan<char> text)
    {
        string? current = null;
        foreach (INormalizer normalizer in normalizers)
        {
            string? next = normalizer.Normalize(current ?? text);
            current = next ?? current;
        }

        return current;
    }
}
