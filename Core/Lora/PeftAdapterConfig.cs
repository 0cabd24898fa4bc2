using System.Text.Json;
using System.Text.RegularExpressions;
using QwenSharp.Errors;

namespace QwenSharp.Lora;

/// <summary>
/// A PEFT adapter folder's adapter_config.json, with PEFT's meanings: each module's scaling is lora_alpha / r
/// (lora_alpha / √r with use_rslora), r and lora_alpha overridden per module by rank_pattern and alpha_pattern, whose
/// keys match the end of a module's name. What QwenSharp cannot apply (DoRA, modules saved whole, trained biases,
/// other PEFT methods) is refused by name.
/// </summary>
internal sealed partial class PeftAdapterConfig
{
    public const string FileName = "adapter_config.json";
    public const string WeightsFileName = "adapter_model.safetensors";

    private readonly int _rank;
    private readonly double _alpha;
    private readonly bool _rsLora;
    private readonly IReadOnlyList<(string Pattern, int Rank)> _rankPattern;
    private readonly IReadOnlyList<(string Pattern, double Alpha)> _alphaPattern;

    private PeftAdapterConfig(int rank, double alpha, bool rsLora, IReadOnlyList<(string, int)> rankPattern, IReadOnlyList<(string, double)> alphaPattern, string? baseModel)
    {
        _rank = rank;
        _alpha = alpha;
        _rsLora = rsLora;
        _rankPattern = rankPattern;
        _alphaPattern = alphaPattern;
        BaseModel = baseModel;
    }

    /// <summary>base_model_name_or_path: what it was trained on.</summary>
    public string? BaseModel { get; }

    public static PeftAdapterConfig Load(string folder)
    {
        string path = Path.Combine(folder, FileName);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"{path}: file not found (a PEFT LoRA adapter folder holds adapter_config.json and {WeightsFileName})", path);
        }

        JsonElement root;
        try
        {
            using JsonDocument document = JsonDocument.Parse(File.ReadAllBytes(path));
            root = document.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON ({e.Message})", e);
        }

        if (root.ValueKind != JsonValueKind.Object)
        {
            QwenThrow.InvalidData($"{path}: expected a JSON object");
        }

        string? peftType = Text(root, "peft_type", path);
        if (peftType is not (null or "LORA"))
        {
            QwenThrow.NotSupported($"{path}: peft_type is '{peftType}'; QwenSharp applies LORA adapters");
        }

        if (Flag(root, "use_dora", path))
        {
            QwenThrow.NotSupported($"{path}: use_dora is true; a DoRA adapter rescales each weight's columns, which QwenSharp does not apply (merge it into the model with PEFT's merge_and_unload)");
        }

        if (Flag(root, "fan_in_fan_out", path))
        {
            QwenThrow.NotSupported($"{path}: fan_in_fan_out is true, which is for GPT-2's Conv1D layers, not a Qwen2 or Llama model");
        }

        if (Flag(root, "lora_bias", path))
        {
            QwenThrow.NotSupported($"{path}: lora_bias is true (B carries a bias), which QwenSharp does not apply");
        }

        if (Text(root, "bias", path) is string bias && bias != "none")
        {
            QwenThrow.NotSupported($"{path}: bias is '{bias}' (the base model's biases were trained too), which QwenSharp does not apply; only bias \"none\" is");
        }

        if (root.TryGetProperty("modules_to_save", out JsonElement saved) && saved.ValueKind == JsonValueKind.Array && saved.GetArrayLength() > 0)
        {
            QwenThrow.NotSupported(
                $"{path}: modules_to_save lists {string.Join(", ", saved.EnumerateArray().Select(m => m.ToString()))}, modules saved whole beside the adapter, which QwenSharp does not load (merge the adapter into the model with PEFT's merge_and_unload)");
        }

        int rank = root.TryGetProperty("r", out JsonElement r) ? PositiveInteger(r, "r", path) : 8;          // PEFT's defaults
        double alpha = root.TryGetProperty("lora_alpha", out JsonElement a) ? Number(a, "lora_alpha", path) : 8;
        var rankPattern = Patterns(root, "rank_pattern", path).Select(p => (p.Key, PositiveInteger(p.Value, $"rank_pattern.{p.Key}", path))).ToList();
        var alphaPattern = Patterns(root, "alpha_pattern", path).Select(p => (p.Key, Number(p.Value, $"alpha_pattern.{p.Key}", path))).ToList();
        return new PeftAdapterConfig(rank, alpha, Flag(root, "use_rslora", path), rankPattern, alphaPattern, Text(root, "base_model_name_or_path", path));
    }

    /// <summary>The scaling of <paramref name="module"/> ("model.layers.3.self_attn.q_proj"), whose A has <paramref name="rank"/> rows.</summary>
    public double ScaleOf(string module, int rank, string file)
    {
        int expected = Match(_rankPattern, module) is (_, int patternRank) ? patternRank : _rank;
        if (rank != expected)
        {
            QwenThrow.InvalidData($"{file}: {module}'s lora_A has rank {rank}, but adapter_config.json gives it r = {expected}");
        }

        double alpha = Match(_alphaPattern, module) is (_, double patternAlpha) ? patternAlpha : _alpha;
        return _rsLora ? alpha / Math.Sqrt(rank) : alpha / rank;
    }

    /// <summary>
    /// "base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight" (a Qwen2-VL adapter's layers may sit under
    /// model.language_model) as (3, Q, A); any other tensor is refused, saying what it adapts.
    /// </summary>
    public static (int Layer, LoraTarget Target, bool IsA) ParseTensorName(string tensor, string file)
    {
        Match match = LayerTensor().Match(tensor);
        if (match.Success && LoraTargets.TryParseModule(match.Groups[2].Value, out LoraTarget target))
        {
            return (int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), target, match.Groups[3].Value == "A");
        }

        string why = tensor switch
        {
            _ when tensor.Contains("lora_embedding_", StringComparison.Ordinal) || tensor.Contains("embed_tokens", StringComparison.Ordinal) =>
                "adapts the token embeddings, which QwenSharp does not apply",
            _ when tensor.Contains("lm_head", StringComparison.Ordinal) => "adapts the output head, which QwenSharp does not apply",
            _ when tensor.Contains("lora_magnitude_vector", StringComparison.Ordinal) => "is a DoRA magnitude, which QwenSharp does not apply",
            _ when tensor.Contains("visual", StringComparison.Ordinal) => "adapts the vision tower, which QwenSharp does not apply",
            _ when tensor.EndsWith(".bias", StringComparison.Ordinal) => "is a trained bias, which QwenSharp does not apply",
            _ => "is not a LoRA tensor of a decoder layer's q/k/v/o, gate, up or down projection",
        };
        throw new NotSupportedException($"{file}: tensor '{tensor}' {why}");
    }

    /// <summary>PEFT's get_pattern_key: the first key that matches the end of the module's name at a dot.</summary>
    private static (string Key, T Value)? Match<T>(IReadOnlyList<(string Key, T Value)> patterns, string module)
    {
        foreach ((string key, T value) in patterns)
        {
            try
            {
                if (Regex.IsMatch(module, $"^(.*\\.)?({key})$", RegexOptions.None, TimeSpan.FromSeconds(1)))
                {
                    return (key, value);
                }
            }
            catch (ArgumentException e)
            {
                throw new InvalidDataException($"{FileName}: pattern '{key}' is not a valid regular expression ({e.Message})", e);
            }
        }

        return null;
    }

    private static IEnumerable<KeyValuePair<string, JsonElement>> Patterns(JsonElement root, string field, string path)
    {
        if (!root.TryGetProperty(field, out JsonElement patterns) || patterns.ValueKind == JsonValueKind.Null)
        {
            return [];
        }

        return patterns.ValueKind == JsonValueKind.Object
            ? patterns.EnumerateObject().Select(p => new KeyValuePair<string, JsonElement>(p.Name, p.Value)).ToList()
            : throw new InvalidDataException($"{path}: {field} is {patterns.ValueKind}, expected an object of module patterns");
    }

    private static string? Text(JsonElement root, string field, string path) =>
        !root.TryGetProperty(field, out JsonElement value) || value.ValueKind == JsonValueKind.Null ? null
        : value.ValueKind == JsonValueKind.String ? value.GetString()
        : throw new InvalidDataException($"{path}: {field} is {value.ValueKind}, expected a string");

    private static bool Flag(JsonElement root, string field, string path) =>
        root.TryGetProperty(field, out JsonElement value) && value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False or JsonValueKind.Null => false,
            _ => throw new InvalidDataException($"{path}: {field} is {value.ValueKind}, expected true or false"),
        };

    private static double Number(JsonElement value, string field, string path) =>
        value.ValueKind == JsonValueKind.Number && value.TryGetDouble(out double number) && double.IsFinite(number)
            ? number
            : throw new InvalidDataException($"{path}: {field} is {value}, expected a number");

    private static int PositiveInteger(JsonElement value, string field, string path) =>
        value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out int number) && number >= 1
            ? number
            : throw new InvalidDataException($"{path}: {field} is {value}, expected a whole number of at least 1");

    [GeneratedRegex(@"^base_model\.model\.(?:[a-z_]+\.)*?layers\.(\d+)\.((?:self_attn|mlp)\.[a-z_]+)\.lora_(A|B)(?:\.default)?\.weight$")]
    private static partial Regex LayerTensor();
}
