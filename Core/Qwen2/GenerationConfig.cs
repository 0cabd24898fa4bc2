using QwenSharp.Formats;

namespace QwenSharp.Qwen2;

/// <summary>
/// generation_config.json: the stop ids and sampling defaults a model ships with. Every field is optional;
/// a model folder without the file gets <see cref="Empty"/>.
/// </summary>
public sealed record GenerationConfig
{
    public const string FileName = "generation_config.json";

    public static GenerationConfig Empty { get; } = new();

    /// <summary>Every id that ends a sequence (Qwen2.5 lists 151645 and 151643).</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];

    public int? BosTokenId { get; init; }

    public int? PadTokenId { get; init; }

    public bool? DoSample { get; init; }

    public double? Temperature { get; init; }

    public int? TopK { get; init; }

    public double? TopP { get; init; }

    public double? MinP { get; init; }

    /// <summary>transformers' typical_p (1: off).</summary>
    public double? TypicalP { get; init; }

    public double? RepetitionPenalty { get; init; }

    public int? MaxNewTokens { get; init; }

    /// <summary>Prompt plus new tokens, the older way of bounding generation.</summary>
    public int? MaxLength { get; init; }

    /// <summary>The new-token budget a model asks for: max_new_tokens, else what max_length leaves after the longest prompt, else 256.</summary>
    public int DefaultMaxNewTokens(int longestPrompt) =>
        MaxNewTokens ?? (MaxLength is int maxLength && maxLength > longestPrompt ? maxLength - longestPrompt : 256);

    public static GenerationConfig Load(string path) => From(JsonFile.Read(path, ConfigJsonContext.Default.GenerationConfigJson));

    /// <summary>Reads <c>generation_config.json</c> from a model folder, or <see cref="Empty"/> where there is none.</summary>
    public static GenerationConfig LoadOrEmpty(string directory)
    {
        string path = Path.Combine(directory, FileName);
        return File.Exists(path) ? Load(path) : Empty;
    }

    public static GenerationConfig Parse(string json, string fileName = FileName) =>
        From(JsonFile.Parse(System.Text.Encoding.UTF8.GetBytes(json), fileName, ConfigJsonContext.Default.GenerationConfigJson));

    private static GenerationConfig From(GenerationConfigJson json) => new()
    {
        EosTokenIds = json.EosTokenId ?? [],
        BosTokenId = json.BosTokenId is { Length: > 0 } bos ? bos[0] : null,
        PadTokenId = json.PadTokenId is { Length: > 0 } pad ? pad[0] : null,
        DoSample = json.DoSample,
        Temperature = json.Temperature,
        TopK = json.TopK,
        TopP = json.TopP,
        MinP = json.MinP,
        TypicalP = json.TypicalP,
        RepetitionPenalty = json.RepetitionPenalty,
        MaxNewTokens = json.MaxNewTokens,
        MaxLength = json.MaxLength,
    };
}
