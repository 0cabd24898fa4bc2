using System.Text.Json;
using QwenSharp.Errors;
using QwenSharp.Generation;

namespace QwenSharp.Qwen2;

/// <summary>
/// How a model's text embeddings are pooled and whether they are scaled to unit length, as the model ships it:
/// sentence-transformers' <c>modules.json</c> and its Pooling module's <c>config.json</c> in a Hugging Face folder
/// (gte-Qwen2, jina-code-embeddings; with <see cref="Dense"/> modules, stella_en_1.5B_v5), <c>{arch}.pooling_type</c> in a GGUF file. Without either: the last token,
/// normalized (what a causal model's embedding is, and what OpenAI's API returns).
/// </summary>
/// <param name="Unsupported">Why this model's embeddings cannot be computed (a module QwenSharp does not run), or null.</param>
/// <param name="Bidirectional">Every token attends to every token of its text, as the model was trained for embeddings
/// (<see cref="Qwen2Config.IsCausal"/> false, set at load; llama.cpp's <c>--attention non-causal</c>). Generation stays causal.</param>
public sealed record EmbeddingConfig(EmbeddingPooling Pooling, bool Normalize, string Source, string? Unsupported = null, bool Bidirectional = false)
{
    public const string ModulesFileName = "modules.json";

    /// <summary>sentence-transformers' <c>max_seq_length</c> (sentence_bert_config.json): the tokens it cuts a text to; null: none said.</summary>
    public int? MaxSeqLength { get; init; }

    /// <summary>The most tokens a text is cut to when truncation is asked for: <see cref="MaxSeqLength"/>, at most <paramref name="context"/>.</summary>
    public int TruncationLength(int context) => Math.Min(MaxSeqLength ?? context, context);

    /// <summary>sentence-transformers' Dense modules, in order, between pooling and normalizing (none for most models).</summary>
    public IReadOnlyList<EmbeddingDense> Dense { get; init; } = [];

    /// <summary>Values in an embedding of a model of <paramref name="hiddenSize"/>: the last Dense module's out_features, or hidden_size.</summary>
    public int Dimensions(int hiddenSize) => Dense.Count > 0 ? Dense[^1].OutFeatures : hiddenSize;

    /// <summary>
    /// Throws unless the Dense modules chain from a model of <paramref name="hiddenSize"/>: each module's in_features the
    /// hidden size or the previous module's out_features.
    /// </summary>
    public void CheckDense(int hiddenSize)
    {
        for (int m = 0; m < Dense.Count; m++)
        {
            int size = m == 0 ? hiddenSize : Dense[m - 1].OutFeatures;
            if (Dense[m].InFeatures != size)
            {
                QwenThrow.InvalidData($"{Dense[m].Source}: in_features is {Dense[m].InFeatures}, and it is given {size} values ({(m == 0 ? "the model's hidden_size" : "the previous Dense module's out_features")})");
            }
        }
    }

    /// <summary>The model's named prompts (sentence-transformers'), put before a text when named or by default.</summary>
    public EmbeddingPrompts Prompts { get; init; } = EmbeddingPrompts.None;

    /// <summary>How the model compares two embeddings (sentence-transformers' <c>similarity_fn_name</c>; cosine where it names none).</summary>
    public EmbeddingSimilarity Similarity { get; init; } = EmbeddingSimilarity.Cosine;

    /// <summary>
    /// What goes before a query, or a document ranked against one: the prompt sentence-transformers' <c>encode_query</c>
    /// (<c>query</c>) or <c>encode_document</c> (the first of <c>document</c>, <c>passage</c>, <c>corpus</c>) picks where
    /// the model has it, else the default prompt.
    /// </summary>
    public string RankingPrompt(bool query) => PromptFor(query ? Prompts.QueryName : Prompts.DocumentName, prompt: null, Pooling);

    /// <summary>
    /// The Pooling module's <c>include_prompt</c>: false leaves a prompt's tokens out of a mean, which is not done here, so
    /// such a model refuses a prompt with mean pooling rather than pooling it in.
    /// </summary>
    public bool IncludePrompt { get; init; } = true;

    /// <summary>
    /// What goes before each text (see <see cref="EmbeddingPrompts.Resolve"/>), checked against how the model pools: a
    /// prompt the mean should leave out is refused.
    /// </summary>
    public string PromptFor(string? name, string? prompt, EmbeddingPooling pooling)
    {
        string text = Prompts.Resolve(name, prompt);
        if (text.Length > 0 && !IncludePrompt && pooling == EmbeddingPooling.Mean)
        {
            QwenThrow.NotSupported($"{Source}: the Pooling module's include_prompt is false (a mean without the prompt's tokens), which QwenSharp does not compute; embed without a prompt or pool otherwise");
        }

        return text;
    }

    public static EmbeddingConfig Default { get; } = new(EmbeddingPooling.Last, Normalize: true, "default");

    /// <summary>llama.cpp's <c>llama_pooling_type</c> values as GGUF stores them.</summary>
    private static readonly Dictionary<long, EmbeddingPooling> s_ggufPooling = new() { [1] = EmbeddingPooling.Mean, [2] = EmbeddingPooling.Cls, [3] = EmbeddingPooling.Last };

    /// <summary>Whether the pooling is the default one, which the model said nothing about.</summary>
    public bool IsDefaultPooling => Source == Default.Source;

    /// <summary>The <c>{arch}.pooling_type</c> a GGUF file of this model holds: null where the model says nothing (or nothing QwenSharp computes).</summary>
    public uint? GgufPoolingType => IsDefaultPooling || Unsupported is not null
        ? null
        : (uint)s_ggufPooling.First(p => p.Value == Pooling).Key;

    /// <summary>From a GGUF file's <c>{arch}.pooling_type</c> (absent or 0, none: the default pooling).</summary>
    public static EmbeddingConfig FromGguf(long? poolingType, string key) =>
        poolingType is not long type || type == 0 ? Default
            : s_ggufPooling.TryGetValue(type, out EmbeddingPooling pooling) ? new EmbeddingConfig(pooling, Normalize: true, key)
            : Default with { Source = key, Unsupported = $"{key} is {type}, a pooling QwenSharp does not compute (1 mean, 2 cls and 3 last are)" };

    /// <summary>From a Hugging Face folder's sentence-transformers files; <see cref="Default"/> when it has none.</summary>
    public static EmbeddingConfig LoadOrDefault(string directory)
    {
        EmbeddingConfig config = FromModules(directory);
        EmbeddingPrompts prompts = EmbeddingPrompts.LoadOrNone(directory);
        config = ReferenceEquals(prompts, EmbeddingPrompts.None) ? config : config with { Prompts = prompts, Similarity = EmbeddingSimilarities.LoadOrCosine(directory) };
        return MaxSeqLengthOf(directory) is int max ? config with { MaxSeqLength = max } : config;
    }

    private static EmbeddingConfig FromModules(string directory)
    {
        string modulesPath = Path.Combine(directory, ModulesFileName);
        if (!File.Exists(modulesPath))
        {
            return Default;
        }

        EmbeddingPooling pooling = EmbeddingPooling.Last;
        bool pooled = false, normalize = false, includePrompt = true;
        string? unsupported = null;
        var dense = new List<EmbeddingDense>();
        foreach ((string type, string path) in ReadModules(modulesPath))
        {
            string name = type[(type.LastIndexOf('.') + 1)..];
            switch (name)
            {
                case "Transformer":
                    break;
                case "Normalize":
                    normalize = true;
                    break;
                case "Pooling":
                    (pooling, string? why, includePrompt) = ReadPooling(Path.Combine(directory, path, "config.json"));
                    pooled = true;
                    unsupported ??= why;
                    break;
                case "Dense" when !pooled || normalize:
                    // Before pooling it would map every token's hidden state; after Normalize, a unit vector: neither is run here.
                    unsupported ??= $"{modulesPath}: module '{path}' ({type}) comes {(pooled ? "after Normalize" : "before Pooling")}, which QwenSharp does not run (a Dense module between Pooling and Normalize is)";
                    break;
                case "Dense":
                    (EmbeddingDense? module, string? cannot) = EmbeddingDense.Load(Path.Combine(directory, path));
                    if (module is not null)
                    {
                        dense.Add(module);
                    }

                    unsupported ??= cannot;
                    break;
                default:
                    unsupported ??= $"{modulesPath}: module '{path}' ({type}) is not one QwenSharp runs (Transformer, Pooling, Dense and Normalize are), so its embeddings would be wrong";
                    break;
            }
        }

        return new EmbeddingConfig(pooling, normalize, modulesPath, unsupported) { IncludePrompt = includePrompt, Dense = dense };
    }

    /// <summary>sentence_bert_config.json's <c>max_seq_length</c>, or null without the file or the field.</summary>
    private static int? MaxSeqLengthOf(string directory)
    {
        string path = Path.Combine(directory, "sentence_bert_config.json");
        if (!File.Exists(path))
        {
            return null;
        }

        using JsonDocument document = Parse(path);
        if (document.RootElement.ValueKind != JsonValueKind.Object || !document.RootElement.TryGetProperty("max_seq_length", out JsonElement max)
            || max.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return max.ValueKind == JsonValueKind.Number && max.TryGetInt32(out int value) && value > 0 ? value
            : throw new InvalidDataException($"{path}: max_seq_length is {max}, expected a whole number above 0");
    }

    /// <summary>The folders of the modules <paramref name="modulesPath"/> names (1_Pooling, 2_Dense_1024, ...), each once.</summary>
    public static IReadOnlyList<string> ModuleFolders(string modulesPath) =>
        [.. ReadModules(modulesPath).Select(m => m.Path.TrimEnd('/')).Where(p => p.Length > 0).Distinct(StringComparer.Ordinal)];

    private static List<(string Type, string Path)> ReadModules(string modulesPath)
    {
        var modules = new List<(string, string)>();
        using JsonDocument document = Parse(modulesPath);
        if (document.RootElement.ValueKind != JsonValueKind.Array)
        {
            QwenThrow.InvalidData($"{modulesPath}: expected an array of modules, found {document.RootElement.ValueKind}");
        }

        int index = 0;
        foreach (JsonElement module in document.RootElement.EnumerateArray())
        {
            JsonElement type = default;
            if (module.ValueKind != JsonValueKind.Object
                || !module.TryGetProperty("type", out type) || type.ValueKind != JsonValueKind.String)
            {
                QwenThrow.InvalidData($"{modulesPath}: module {index} has no \"type\" string");
            }

            string path = module.TryGetProperty("path", out JsonElement p) && p.ValueKind == JsonValueKind.String ? p.GetString()! : "";
            if (path.Contains("..", StringComparison.Ordinal) || Path.IsPathRooted(path))
            {
                QwenThrow.InvalidData($"{modulesPath}: module {index}'s path '{path}' leaves the model folder");
            }

            modules.Add((type.GetString()!, path));
            index++;
        }

        return modules;
    }

    /// <summary>The Pooling module's mode (exactly one of its <c>pooling_mode_*</c> flags is true) and its <c>include_prompt</c>.</summary>
    private static (EmbeddingPooling Pooling, string? Unsupported, bool IncludePrompt) ReadPooling(string configPath)
    {
        if (!File.Exists(configPath))
        {
            QwenThrow.FileNotFound($"{configPath}: file not found (modules.json names a Pooling module there)", configPath);
        }

        using JsonDocument document = Parse(configPath);
        if (document.RootElement.ValueKind != JsonValueKind.Object)
        {
            QwenThrow.InvalidData($"{configPath}: expected an object, found {document.RootElement.ValueKind}");
        }

        var modes = new List<string>();
        foreach (JsonProperty field in document.RootElement.EnumerateObject())
        {
            if (field.Name.StartsWith("pooling_mode_", StringComparison.Ordinal) && field.Value.ValueKind == JsonValueKind.True)
            {
                modes.Add(field.Name);
            }
        }

        bool includePrompt = !(document.RootElement.TryGetProperty("include_prompt", out JsonElement include) && include.ValueKind == JsonValueKind.False);
        (EmbeddingPooling pooling, string? unsupported) = modes switch
        {
            ["pooling_mode_lasttoken"] => (EmbeddingPooling.Last, null),
            ["pooling_mode_mean_tokens"] => (EmbeddingPooling.Mean, null),
            ["pooling_mode_cls_token"] => (EmbeddingPooling.Cls, null),
            [] => (EmbeddingPooling.Last, $"{configPath}: no pooling_mode_* is true"),
            _ => (EmbeddingPooling.Last,
                $"{configPath}: pooling {string.Join(" + ", modes)} is not one QwenSharp computes (pooling_mode_lasttoken, pooling_mode_mean_tokens or pooling_mode_cls_token alone)"),
        };
        return (pooling, unsupported, includePrompt);
    }

    /// <summary>A JSON file of the model folder, or one line naming it and where its JSON breaks.</summary>
    internal static JsonDocument Parse(string path)
    {
        try
        {
            return JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            QwenThrow.InvalidData($"{path}: not valid JSON (line {(e.LineNumber ?? 0) + 1}): {e.Message}");
            return null!;
        }
    }
}
