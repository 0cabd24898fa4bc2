using System.Globalization;
using System.Text.RegularExpressions;
using QwenSharp.Formats.Gguf;

namespace QwenSharp.Hub;

/// <summary>Which of a repository's files QwenSharp needs: a folder model's, or one GGUF file chosen by its tag.</summary>
internal static partial class HubFiles
{
    /// <summary>llama.cpp's <c>-hf</c> takes this quantization when a GGUF repository has several and none is named.</summary>
    public const string DefaultTag = "Q4_K_M";

    /// <summary>
    /// A file a Hugging Face folder model is read from: the top-level JSON files (config, generation config, tokenizer,
    /// safetensors index, preprocessor, chat template, sentence-transformers), the *.safetensors, merges.txt and
    /// *.jinja templates, and the JSON of sentence-transformers' module folders (1_Pooling/config.json; the folders
    /// modules.json names are fetched whole, <see cref="IsNamedModuleFile"/>). Not PyTorch .bin, ONNX, GGUF or other
    /// frameworks' copies of the weights.
    /// </summary>
    public static bool IsFolderModelFile(string path)
    {
        string[] parts = path.Split('/');
        string name = parts[^1];
        if (parts.Length == 1)
        {
            return name.EndsWith(".json", StringComparison.Ordinal) || name.EndsWith(".safetensors", StringComparison.Ordinal)
                || name.EndsWith(".jinja", StringComparison.Ordinal) || name == "merges.txt";
        }

        return parts.Length == 2 && ModuleFolder().IsMatch(parts[0]) && name.EndsWith(".json", StringComparison.Ordinal);
    }

    /// <summary>
    /// A file of a sentence-transformers module folder that modules.json names (<paramref name="folders"/>): its JSON and
    /// its <c>model.safetensors</c> (a Dense module's weights). Folders it does not name (stella's other
    /// <c>2_Dense_*</c> sizes) are not fetched.
    /// </summary>
    public static bool IsNamedModuleFile(string path, IReadOnlySet<string> folders)
    {
        int slash = path.LastIndexOf('/');
        if (slash <= 0 || !folders.Contains(path[..slash]))
        {
            return false;
        }

        string name = path[(slash + 1)..];
        return name.EndsWith(".json", StringComparison.Ordinal) || name == "model.safetensors";
    }

    /// <summary>A GGUF file of a model (a whole one or a part), not a vision projector.</summary>
    public static bool IsGguf(string path) => path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase)
        && !Path.GetFileName(path).Contains("mmproj", StringComparison.OrdinalIgnoreCase);

    /// <summary>A split model's second or later part (the model is listed and loaded by its first).</summary>
    public static bool IsLaterPart(string path) => GgufSplit.TryParse(path, out _, out int index, out _) && index != 0;

    /// <summary>
    /// The GGUF file <paramref name="tag"/> names (its name ends in -TAG.gguf, any case), or with no tag the only one,
    /// else llama.cpp's default <see cref="DefaultTag"/>: the file, or every part of a model split across files
    /// (<c>NAME-TAG-00001-of-00003.gguf</c>, ...; the first first). What cannot be chosen, and a split model with parts
    /// missing, is refused, listing the tags there are.
    /// </summary>
    public static string[] ChooseGguf(IEnumerable<string> files, string? tag, string reference)
    {
        string[] ggufs = [.. files.Where(IsGguf).Order(StringComparer.Ordinal)];
        if (ggufs.Length == 0)
        {
            throw new HubException($"{reference}: the repository has no GGUF files{(tag is null ? "" : $" (the :{tag} names one)")}");
        }

        string[] chosen = tag is null && ggufs.Select(ModelOf).Distinct(StringComparer.Ordinal).Count() == 1 ? ggufs : Matching(ggufs, tag ?? DefaultTag);
        string[] models = [.. chosen.Select(ModelOf).Distinct(StringComparer.Ordinal)];
        if (models.Length != 1)
        {
            string tags = string.Join(", ", ggufs.Select(TagOf).Distinct(StringComparer.OrdinalIgnoreCase));
            string why = models.Length == 0
                ? tag is null ? $"holds {ggufs.Length} GGUF files and none is {DefaultTag}" : $"has no GGUF file tagged {tag}"
                : $"has {models.Length} GGUF models tagged {tag}";
            throw new HubException($"{reference}: the repository {why}; name one as {reference.Split(':')[0]}:TAG with a tag of {tags}");
        }

        string[] parts = PartsOf(chosen[0]);
        string[] missing = [.. parts.Where(p => !chosen.Contains(p, StringComparer.Ordinal))];
        return missing.Length == 0
            ? parts
            : throw new HubException($"{reference}: {parts[0]} is the first of {parts.Length} parts of a split model, and the repository lacks {string.Join(", ", missing)}");
    }

    /// <summary>Every file of the model <paramref name="file"/> holds: itself, or all parts of a split model (named as llama.cpp derives them from any one).</summary>
    public static string[] PartsOf(string file) =>
        GgufSplit.TryParse(file, out string? prefix, out _, out int count) ? [.. Enumerable.Range(0, count).Select(i => GgufSplit.PathOf(prefix, i, count))] : [file];

    /// <summary>The model a GGUF file holds or holds a part of: its path less a split part's -0000i-of-0000n (and count).</summary>
    private static string ModelOf(string file) =>
        GgufSplit.TryParse(file, out string? prefix, out _, out int count) ? string.Create(CultureInfo.InvariantCulture, $"{prefix} of {count}") : file;

    private static string[] Matching(string[] ggufs, string tag) =>
        [.. ggufs.Where(f => Stem(f).EndsWith(tag, StringComparison.OrdinalIgnoreCase)
            && Stem(f).Length > tag.Length && Stem(f)[^(tag.Length + 1)] is '-' or '.' or '_')];

    private static string Stem(string file) => GgufSplit.WithoutPart(Path.GetFileNameWithoutExtension(file));

    public static string TagOf(string file)
    {
        string stem = Stem(file);
        int cut = stem.LastIndexOfAny(['-', '.']);
        return cut < 0 ? stem : stem[(cut + 1)..];
    }

    [GeneratedRegex(@"^\d+_[A-Za-z]+$")]
    private static partial Regex ModuleFolder();
}
