namespace QwenSharp.Cli;

/// <summary>
/// llama.cpp's spellings of options QwenSharp takes under another name (its long and short forms: <c>--n-gpu-layers</c>,
/// <c>-ngl</c>), and of those it has no use for (<c>-fa</c>, <c>--mlock</c>), so that a command line carried over from
/// llama-cli or llama-server is told which option to write, or to leave one out, instead of only that it is unknown.
/// </summary>
internal static class LlamaCppOptions
{
    private static readonly Dictionary<string, string> s_ours = new(StringComparer.Ordinal)
    {
        ["n-gpu-layers"] = "gpu-layers", ["ngl"] = "gpu-layers", ["gpu-layers-draft"] = "gpu-layers",
        ["ctx-size"] = "context", ["c"] = "context",
        ["n-predict"] = "max-new-tokens", ["n"] = "max-new-tokens",
        ["temp"] = "temperature",
        ["typical"] = "typical-p", ["top-nsigma"] = "top-n-sigma", ["mirostat-lr"] = "mirostat-eta", ["mirostat-ent"] = "mirostat-tau", ["dynatemp-exp"] = "dynatemp-exponent",
        ["repeat-penalty"] = "repetition-penalty",
        ["cache-type-k"] = "kv-cache-type", ["ctk"] = "kv-cache-type", ["cache-type-v"] = "kv-cache-type", ["ctv"] = "kv-cache-type",
        ["model-draft"] = "draft-model", ["md"] = "draft-model",
        ["draft-max"] = "draft-tokens", ["draft"] = "draft-tokens",
        ["parallel"] = "max-concurrent", ["np"] = "max-concurrent",
        ["threads-batch"] = "threads", ["t"] = "threads",
        ["m"] = "model", ["p"] = "prompt", ["s"] = "seed", ["f"] = "file", ["o"] = "out", ["output"] = "out",
        ["json-schema-file"] = "json-schema", ["jf"] = "json-schema", ["j"] = "json-schema",
        ["alias"] = "name", ["a"] = "name",
        ["main-gpu"] = "device", ["mg"] = "device",
    };

    /// <summary>llama.cpp's options that a command running a model here has no use for, and why.</summary>
    private static readonly Dictionary<string, string> s_unneeded = new(StringComparer.Ordinal)
    {
        ["flash-attn"] = Fused, ["fa"] = Fused,
        ["mlock"] = Mapped, ["no-mmap"] = Mapped, ["mmap"] = Mapped,
        ["cont-batching"] = "serve always batches requests continuously", ["cb"] = "serve always batches requests continuously",
        ["jinja"] = "chat templates always run as the model's own Jinja",
        ["metrics"] = "serve always answers /metrics",
        ["batch-size"] = Steps, ["b"] = Steps, ["ubatch-size"] = Steps, ["ub"] = Steps,
        ["warmup"] = "nothing needs warming up", ["no-warmup"] = "nothing needs warming up",
    };

    private const string Fused = "attention is always the fused kind here (an online softmax over the KV cache, on the CPU and the GPU)";
    private const string Mapped = "weights are memory-mapped and read where they lie";
    private const string Steps = "a prompt is read in steps the backend sizes";

    /// <summary>
    /// " (llama.cpp's --NAME is --OURS here)" where <paramref name="name"/> (without its dashes) is llama.cpp's name of an
    /// option <paramref name="accepted"/> holds; "; ... has no counterpart: why; leave it out" for one a command that runs a
    /// model has no use for; else "".
    /// </summary>
    public static string Hint(string name, IReadOnlyList<OptionSpec> accepted)
    {
        string theirs = name.Length <= 3 ? $"-{name}" : $"--{name}";
        if (s_unneeded.TryGetValue(name, out string? why) && accepted.Any(spec => spec.Name == "model"))
        {
            return $"; llama.cpp's {theirs} has no counterpart: {why}; leave it out";
        }

        if (!s_ours.TryGetValue(name, out string? ours) || !accepted.Any(spec => spec.Name == ours))
        {
            return "";
        }

        string detail = ours switch
        {
            "kv-cache-type" => ", one type for keys and values",
            "device" => " (gpu:N picks a GPU of qwensharp devices)",
            _ => "",
        };
        return $"; llama.cpp's {theirs} is --{ours} here{detail}";
    }
}
