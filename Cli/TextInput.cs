using System.Text;
using System.Text.Json;
using QwenSharp.Tokenization;

namespace QwenSharp.Cli;

/// <summary>Text the user gives the CLI: the model's tokenizer, files read as exact UTF-8, and JSON files.</summary>
internal static class TextInput
{
    private static readonly UTF8Encoding s_strictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>The tokenizer of a model folder; a folder without tokenizer.json is a clear error.</summary>
    public static Tokenizer LoadTokenizer(string modelDirectory) =>
        File.Exists(modelDirectory) ? GgufTokenizer.Load(modelDirectory) : Tokenizer.FromDirectory(modelDirectory);

    /// <summary>The tokenizer when the folder has a tokenizer.json (or the GGUF file one), else null (ids in, ids out).</summary>
    public static Tokenizer? TryLoadTokenizer(string modelDirectory) =>
        File.Exists(modelDirectory) ? (HasGgufTokenizer(modelDirectory) ? GgufTokenizer.Load(modelDirectory) : null)
        : File.Exists(Path.Combine(modelDirectory, "tokenizer.json")) ? Tokenizer.FromDirectory(modelDirectory) : null;

    /// <summary>
    /// The file's exact bytes as UTF-8 text (a byte-order mark stays a character); invalid UTF-8 is an error naming
    /// the offset. "-" reads standard input, as Unix tools do.
    /// </summary>
    public static string ReadUtf8File(string path)
    {
        byte[] bytes = ReadAllBytes(path);
        try
        {
            return s_strictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException e)
        {
            throw new InvalidDataException($"{path}: not valid UTF-8 at byte {e.Index}");
        }
    }

    /// <summary>
    /// The texts of <c>--text</c> and <c>--file</c> (each non-empty line a text) in the order given, after
    /// the positional TEXT; a file without one, or an empty text, is refused (nothing to <paramref name="verb"/>).
    /// <paramref name="alsoOptions"/> name other options kept in their place (classify's --messages).
    /// </summary>
    public static List<(string Option, string Value)> TextsInOrder(Arguments args, string verb, params string[] alsoOptions) =>
        TextsInOrder(args, verb, "text", alsoOptions);

    /// <summary>As <see cref="TextsInOrder(Arguments, string, string[])"/>, the texts given one at a time by --<paramref name="textOption"/> (rerank's --document).</summary>
    public static List<(string Option, string Value)> TextsInOrder(Arguments args, string verb, string textOption, string[] alsoOptions)
    {
        ArgumentNullException.ThrowIfNull(alsoOptions);
        var texts = new List<(string, string)>(args.Positionals.Select(p => ("text", p)));
        foreach ((string option, string value) in args.InOrder)
        {
            if (option == textOption || alsoOptions.Contains(option))
            {
                texts.Add((option, value));
            }
            else if (option == "file")
            {
                string[] lines = [.. ReadUtf8File(value).Split('\n').Select(l => l.TrimEnd('\r')).Where(l => l.Length > 0)];
                texts.AddRange(lines.Length > 0 ? lines.Select(l => ("text", l)) : throw new UsageException($"--file {value}: the file has no non-empty line to {verb}"));
            }
        }

        if (texts.FindIndex(t => t.Item2.Length == 0) is int empty and >= 0)
        {
            throw new UsageException($"text {empty} is empty: there is nothing to {verb}");
        }

        return texts;
    }

    private static bool HasGgufTokenizer(string path)
    {
        using Formats.Gguf.GgufFile file = Formats.Gguf.GgufFile.Open(path);
        return file.Metadata.ContainsKey("tokenizer.ggml.model");
    }

    /// <summary>
    /// A stop string as typed: <c>\n</c>, <c>\t</c> and <c>\\</c> become newline, tab and backslash, since a shell
    /// passes "\n\n" as backslash-n twice; any other backslash stays.
    /// </summary>
    public static string Unescape(string text)
    {
        if (!text.Contains('\\', StringComparison.Ordinal))
        {
            return text;
        }

        var result = new StringBuilder(text.Length);
        for (int i = 0; i < text.Length; i++)
        {
            char next = i + 1 < text.Length ? text[i + 1] : '\0';
            if (text[i] == '\\' && next is 'n' or 't' or '\\')
            {
                result.Append(next switch { 'n' => '\n', 't' => '\t', _ => '\\' });
                i++;
            }
            else
            {
                result.Append(text[i]);
            }
        }

        return result.ToString();
    }

    /// <summary>A file's bytes, or standard input's for "-"; a folder is an error saying so.</summary>
    public static byte[] ReadAllBytes(string path)
    {
        if (path == "-")
        {
            using Stream input = Console.OpenStandardInput();
            using var buffer = new MemoryStream();
            input.CopyTo(buffer);
            return buffer.ToArray();
        }

        if (Directory.Exists(path))
        {
            throw new UsageException($"{path} is a folder; a file is needed here (or - for standard input)");
        }

        return File.ReadAllBytes(path);
    }

    /// <summary>A JSON document from a file, with the file named in any error.</summary>
    public static JsonDocument ReadJson(string path)
    {
        try
        {
            return JsonDocument.Parse(ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON ({e.Message})", e);
        }
    }

    /// <summary>A JSON list from a file (messages or tools), with the file named in any error.</summary>
    public static JsonDocument ReadJsonList(string path, string what)
    {
        JsonDocument document = ReadJson(path);
        JsonValueKind kind = document.RootElement.ValueKind;
        if (kind != JsonValueKind.Array)
        {
            document.Dispose();
            throw new InvalidDataException($"{path}: expected a JSON list of {what}, found {(kind == JsonValueKind.Object ? "an object" : kind.ToString().ToLowerInvariant())}");
        }

        return document;
    }
}
