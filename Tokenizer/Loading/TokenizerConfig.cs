using System.Text.Json;
using static QwenSharp.Tokenization.Loading.JsonFields;

namespace QwenSharp.Tokenization.Loading;

/// <summary>What transformers reads from tokenizer_config.json (and chat_template.jinja) on top of tokenizer.json.</summary>
internal sealed record TokenizerConfig(
    string? BosToken,
    string? EosToken,
    string? PadToken,
    string? UnkToken,
    bool? AddBosToken,
    bool? AddEosToken,
    string? ChatTemplate,
    string? ChatTemplateSource)
{
    public static readonly TokenizerConfig Empty = new(null, null, null, null, null, null, null, null);

    /// <summary>
    /// Reads tokenizer_config.json in <paramref name="directory"/> (if present) and a chat_template.jinja or a
    /// processor's chat_template.json (Qwen2-VL) beside it.
    /// </summary>
    public static TokenizerConfig Load(string directory)
    {
        string path = Path.Combine(directory, "tokenizer_config.json");
        TokenizerConfig config = File.Exists(path) ? Read(path) : Empty;
        string processorPath = Path.Combine(directory, "chat_template.json");
        if (File.Exists(processorPath))
        {
            // A processor's template (transformers' ProcessorMixin saves it here): what apply_chat_template uses for it.
            using JsonDocument document = Parse(processorPath);
            (string? template, string? source) = ReadChatTemplate(Optional(document.RootElement, "chat_template"), processorPath);
            if (template is not null)
            {
                config = config with { ChatTemplate = template, ChatTemplateSource = source };
            }
        }

        string jinjaPath = Path.Combine(directory, "chat_template.jinja");
        if (File.Exists(jinjaPath))
        {
            // Newer transformers saves the template in its own file, which takes precedence.
            config = config with { ChatTemplate = File.ReadAllText(jinjaPath), ChatTemplateSource = jinjaPath };
        }

        return config;
    }

    private static TokenizerConfig Read(string path)
    {
        using JsonDocument document = Parse(path);
        JsonElement root = document.RootElement;
        (string? template, string? source) = ReadChatTemplate(Optional(root, "chat_template"), path);
        return new TokenizerConfig(
            TokenText(root, "bos_token", path),
            TokenText(root, "eos_token", path),
            TokenText(root, "pad_token", path),
            TokenText(root, "unk_token", path),
            Optional(root, "add_bos_token") is null ? null : OptionalBool(root, "add_bos_token", false, path),
            Optional(root, "add_eos_token") is null ? null : OptionalBool(root, "add_eos_token", false, path),
            template,
            source);
    }

    /// <summary>A special token written as a string or as an AddedToken object <c>{"content": ...}</c>.</summary>
    private static string? TokenText(JsonElement root, string name, string path)
    {
        JsonElement? value = Optional(root, name);
        return value?.ValueKind switch
        {
            null => null,
            JsonValueKind.String => value.Value.GetString(),
            JsonValueKind.Object => RequiredString(value.Value, "content", $"{path}: {name}"),
            _ => throw new InvalidDataException($"{path}: field '{name}' must be a string or {{\"content\": ...}}, found {Describe(value.Value)}"),
        };
    }

    /// <summary>The template: a string, or a list of named templates of which "default" is used.</summary>
    private static (string? Template, string? Source) ReadChatTemplate(JsonElement? value, string path)
    {
        switch (value?.ValueKind)
        {
            case null:
                return (null, null);
            case JsonValueKind.String:
                return (value.Value.GetString(), $"{path}: chat_template");
            case JsonValueKind.Array:
                foreach (JsonElement named in value.Value.EnumerateArray())
                {
                    if (OptionalString(named, "name", $"{path}: chat_template[]") == "default")
                    {
                        return (RequiredString(named, "template", $"{path}: chat_template[default]"), $"{path}: chat_template[default]");
                    }
                }

                throw new InvalidDataException($"{path}: chat_template is a list without a template named 'default'");
            default:
                throw new InvalidDataException($"{path}: chat_template must be a string or a list of {{name, template}}, found {Describe(value.Value)}");
        }
    }
}
