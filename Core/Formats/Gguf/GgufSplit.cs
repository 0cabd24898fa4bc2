using System.Diagnostics.CodeAnalysis;
using System.Globalization;

namespace QwenSharp.Formats.Gguf;

/// <summary>
/// A GGUF model split across files, as llama.cpp's <c>llama-gguf-split</c> writes and its loader reads them: part i of n
/// is <c>PREFIX-0000i-of-0000n.gguf</c>; each part is a GGUF file of its own holding some of the tensors; the first also
/// holds all the model's metadata; every part names its place (<see cref="NumberKey"/>, 0-based, and
/// <see cref="CountKey"/>, both u16) and the first the tensors of all parts together (<see cref="TensorsKey"/>, i32).
/// </summary>
public static class GgufSplit
{
    public const string NumberKey = "split.no";
    public const string CountKey = "split.count";
    public const string TensorsKey = "split.tensors.count";

    /// <summary>The most parts a set can have (<see cref="CountKey"/> is a u16).</summary>
    public const int MaxParts = ushort.MaxValue;

    /// <summary>
    /// The path of part <paramref name="index"/> (0-based) of <paramref name="count"/> whose paths begin with
    /// <paramref name="prefix"/> (llama.cpp's <c>llama_split_path</c>: <c>PREFIX-00001-of-00003.gguf</c>).
    /// </summary>
    public static string PathOf(string prefix, int index, int count) =>
        string.Create(CultureInfo.InvariantCulture, $"{prefix}{Suffix(index, count)}");

    /// <summary>
    /// What <paramref name="path"/> begins with if it is part <paramref name="index"/> of <paramref name="count"/>'s name
    /// (llama.cpp's <c>llama_split_prefix</c>), else null.
    /// </summary>
    public static string? PrefixOf(string path, int index, int count)
    {
        ArgumentNullException.ThrowIfNull(path);
        string suffix = Suffix(index, count);
        return path.Length > suffix.Length && path.EndsWith(suffix, StringComparison.Ordinal) ? path[..^suffix.Length] : null;
    }

    /// <summary>
    /// Reads a part's path, <c>PREFIX-0000i-of-0000n.gguf</c>: what it begins with, its 0-based index and the count; false
    /// for any other name.
    /// </summary>
    public static bool TryParse(string path, [NotNullWhen(true)] out string? prefix, out int index, out int count)
    {
        ArgumentNullException.ThrowIfNull(path);
        const int Length = 20; // "-00001-of-00003.gguf"
        ReadOnlySpan<char> tail = path.Length > Length ? path.AsSpan(path.Length - Length) : default;
        prefix = null;
        index = count = 0;
        if (tail.IsEmpty || tail[0] != '-' || !tail.Slice(6, 4).SequenceEqual("-of-") || !tail[15..].SequenceEqual(".gguf")
            || !int.TryParse(tail.Slice(1, 5), NumberStyles.None, CultureInfo.InvariantCulture, out int number)
            || !int.TryParse(tail.Slice(10, 5), NumberStyles.None, CultureInfo.InvariantCulture, out count))
        {
            return false;
        }

        prefix = path[..^Length];
        index = number - 1;
        return true;
    }

    /// <summary>A file name without its extension, less a part's <c>-0000i-of-0000n</c>: what the model is called.</summary>
    public static string WithoutPart(string name) => TryParse(name + ".gguf", out string? prefix, out _, out _) ? prefix : name;

    /// <summary>A key that says where a part stands in a split model (carried from no file into another).</summary>
    public static bool IsSplitKey(string key) => key is NumberKey or CountKey or TensorsKey;

    /// <summary>Where parts named after <paramref name="path"/> begin: the path less its <c>.gguf</c> (as llama-quantize names kept splits).</summary>
    public static string PrefixFor(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        return path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) ? path[..^5] : path;
    }

    private static string Suffix(int index, int count) => string.Create(CultureInfo.InvariantCulture, $"-{index + 1:D5}-of-{count:D5}.gguf");
}
