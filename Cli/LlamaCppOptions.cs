namespace QwenSharp.Cli;

/// <summary>
/// llama.cpp's spellings of options QwenSharp takes under another name (its long and short forms: <c>--n-gpu-layers</c>,
/// <c>-ngl</c>), so that a command line carried over from llama-cli or llama-server is told which option to write
/// instead of only that an option is unknown.
/// </summary>
internal static class LlamaCppOptions
{
    private static readonly Dictionary<string, string> s_ours = new(StringComparer.Ordinal)
    {
        ["n-gpu-layers"] = "gpu-layers", ["ngl"] = "gpu-layers", ["gpu-layers-draft"] = "gpu-layers",
        ["ctx-size"] = "context", ["c"] = "context",
        ["n-predict"] = "max-new-tokens", ["n"] = "max-new-tokens",
        ["temp"] = "temperature",
        ["repeat-penalty"] = "repetition-penalty",
        ["cache-type-k"] = "kv-cache-type", ["ctk"] = "kv-cache-type", ["cache-type-v"] = "kv-cache-type", ["ctv"] = "kv-cache-type",
        ["model-draft"] = "draft-model", ["md"] = "draft-model",
        ["draft-max"] = "draft-tokens", ["draft"] = "draft-tokens",
        ["parallel"] = "max-concurrent", ["np"] = "max-concurrent",
        ["threads-batch"] = "threads", ["t"] = "threads",
        ["m"] = "model", ["p"] = "prompt", ["s"] = "seed",
        ["json-schema-file"] = "json-schema", ["jf"] = "json-schema", ["j"] = "json-schema",
    };

    /// <summary>
    /// " (llama.cpp's --NAME is --OURS here)" where <paramref name="name"/> (without its dashes) is llama.cpp's name of an
    /// option <paramref name="accepted"/> holds, else "".
    /// </summary>
    public static string Hint(string name, IReadOnlyList<OptionSpec> accepted)
    {
        if (!s_ours.TryGetValue(name, out string? ours) || !accepted.Any(spec => spec.Name == ours))
        {
            return "";
        }

        string theirs = name.Length <= 3 ? $"-{name}" : $"--{name}";
        string keysAndValues = ours == "kv-cache-type" ? ", one type for keys and values" : "";
        return $"; llama.cpp's {theirs} is --{ours} here{keysAndValues}";
    }
}
