using System.Text.Json;
using QwenSharp.Errors;

namespace QwenSharp.Qwen2;

/// <summary>
/// The named prompts a sentence-transformers model ships in <c>config_sentence_transformers.json</c> (gte-Qwen2's
/// <c>"query": "Instruct: ...\nQuery: "</c>, jina-code-embeddings' tasks) and the one used when none is named
/// (<c>default_prompt_name</c>). As sentence-transformers' <c>encode(prompt_name=...)</c> does, a prompt is put before each
/// text.
/// </summary>
public sealed record EmbeddingPrompts(IReadOnlyDictionary<string, string> Prompts, string? DefaultName, string Source)
{
    public const string FileName = "config_sentence_transformers.json";

    public static EmbeddingPrompts None { get; } = new(new Dictionary<string, string>(), null, "none");

    /// <summary>The prompt sentence-transformers' <c>encode_query</c> names: <c>query</c> where the model has it (else none: the default).</summary>
    public string? QueryName => Prompts.ContainsKey("query") ? "query" : null;

    /// <summary>The prompt <c>encode_document</c> names: the first of <c>document</c>, <c>passage</c> and <c>corpus</c> the model has (else none: the default).</summary>
    public string? DocumentName => ((string[])["document", "passage", "corpus"]).FirstOrDefault(Prompts.ContainsKey);

    /// <summary>The text put before each text: <paramref name="prompt"/> when given, else the prompt named (or the default one), else none.</summary>
    public string Resolve(string? name, string? prompt = null)
    {
        if (prompt is not null)
        {
            return prompt;
        }

        if ((name ?? DefaultName) is not string chosen)
        {
            return "";
        }

        return Prompts.TryGetValue(chosen, out string? text) ? text
            : throw new ArgumentException(Prompts.Count == 0
                ? $"prompt name '{chosen}': the model names no prompts ({FileName} has none)"
                : $"prompt name '{chosen}' is not one of the model's prompts ({string.Join(", ", Prompts.Keys.Order(StringComparer.Ordinal))}; {Source})", nameof(name));
    }

    /// <summary>From a folder's <see cref="FileName"/>; <see cref="None"/> without one.</summary>
    public static EmbeddingPrompts LoadOrNone(string directory)
    {
        string path = Path.Combine(directory, FileName);
        if (!File.Exists(path))
        {
            return None;
        }

        using (JsonDocument document = EmbeddingConfig.Parse(path))
        {
            JsonElement root = document.RootElement;
            var prompts = new Dictionary<string, string>(StringComparer.Ordinal);
            if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("prompts", out JsonElement list) && list.ValueKind != JsonValueKind.Null)
            {
                if (list.ValueKind != JsonValueKind.Object)
                {
                    QwenThrow.InvalidData($"{path}: \"prompts\" is {list.ValueKind}, expected an object of name: text");
                }

                foreach (JsonProperty entry in list.EnumerateObject())
                {
                    prompts[entry.Name] = entry.Value.ValueKind == JsonValueKind.String ? entry.Value.GetString()!
                        : throw new InvalidDataException($"{path}: prompt \"{entry.Name}\" is {entry.Value.ValueKind}, expected a string");
                }
            }

            string? defaultName = root.ValueKind == JsonValueKind.Object && root.TryGetProperty("default_prompt_name", out JsonElement d) && d.ValueKind == JsonValueKind.String
                ? d.GetString()
                : null;
            if (defaultName is not null && !prompts.ContainsKey(defaultName))
            {
                QwenThrow.InvalidData($"{path}: default_prompt_name \"{defaultName}\" is not one of its prompts");
            }

            return new EmbeddingPrompts(prompts, defaultName, path);
        }
    }
}
