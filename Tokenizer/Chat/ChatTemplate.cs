using System.Text.Json;

namespace QwenSharp.Tokenization.Chat;

/// <summary>
/// A model's Jinja chat template, parsed once and rendered for a conversation the way transformers'
/// <c>apply_chat_template</c> renders it (<c>trim_blocks</c>, <c>lstrip_blocks</c>, its <c>tojson</c>,
/// <c>raise_exception</c>). Unsupported constructs fail at parse time with their line.
/// </summary>
public sealed class ChatTemplate
{
    private readonly IReadOnlyList<Node> _nodes;

    private ChatTemplate(string source, IReadOnlyList<Node> nodes)
    {
        Source = source;
        _nodes = nodes;
    }

    public string Source { get; }

    /// <summary>Parses a template; a construct outside the supported subset is a <see cref="TemplateException"/> naming its line.</summary>
    public static ChatTemplate Parse(string source) => new(source, TemplateParser.Parse(source));

    /// <summary>
    /// Renders the template for <paramref name="messages"/> (a JSON list of <c>{"role", "content", ...}</c>
    /// objects, tool calls included) and optional <paramref name="tools"/> (a JSON list of tool definitions).
    /// </summary>
    /// <param name="messages">The conversation.</param>
    /// <param name="tools">Tool definitions, or null for none (the template sees <c>tools = None</c>).</param>
    /// <param name="addGenerationPrompt">End with the header of an assistant turn, so the model answers.</param>
    /// <param name="variables">More variables, such as the special tokens (<c>bos_token</c>, <c>eos_token</c>).</param>
    public string Render(JsonElement messages, JsonElement? tools, bool addGenerationPrompt, IReadOnlyDictionary<string, string>? variables = null) =>
        Render(messages, tools, addGenerationPrompt, variables, templateArguments: null);

    /// <summary>
    /// As <see cref="Render(JsonElement, JsonElement?, bool, IReadOnlyDictionary{string, string}?)"/>, with
    /// <paramref name="templateArguments"/> (a JSON object, transformers' <c>apply_chat_template(**kwargs)</c>, the servers'
    /// <c>chat_template_kwargs</c>) as more variables, over the special tokens'. The names the call itself sets
    /// (<see cref="ReservedArguments"/>) are refused.
    /// </summary>
    public string Render(JsonElement messages, JsonElement? tools, bool addGenerationPrompt, IReadOnlyDictionary<string, string>? variables, JsonElement? templateArguments)
    {
        if (messages.ValueKind != JsonValueKind.Array)
        {
            throw new ArgumentException($"messages must be a JSON list of message objects, found {messages.ValueKind}", nameof(messages));
        }

        if (tools is JsonElement t && t.ValueKind is not (JsonValueKind.Array or JsonValueKind.Null))
        {
            throw new ArgumentException($"tools must be a JSON list of tool definitions, found {t.ValueKind}", nameof(tools));
        }

        var globals = new Scope(null);
        foreach ((string name, string value) in variables ?? new Dictionary<string, string>())
        {
            globals.Set(name, value);
        }

        if (templateArguments is JsonElement arguments)
        {
            if (arguments.ValueKind != JsonValueKind.Object)
            {
                throw new ArgumentException($"template arguments must be a JSON object of names and values, found {arguments.ValueKind}", nameof(templateArguments));
            }

            foreach (JsonProperty argument in arguments.EnumerateObject())
            {
                if (ReservedArguments.Contains(argument.Name))
                {
                    throw new ArgumentException($"template argument '{argument.Name}' is set by the call itself", nameof(templateArguments));
                }

                globals.Set(argument.Name, FromJson(argument.Value));
            }
        }

        globals.Set("messages", FromJson(messages));
        globals.Set("tools", tools is JsonElement toolList && toolList.ValueKind == JsonValueKind.Array ? FromJson(toolList) : null);
        globals.Set("documents", null);
        globals.Set("add_generation_prompt", addGenerationPrompt);
        return TemplateInterpreter.Render(_nodes, globals);
    }

    /// <summary>
    /// <paramref name="rendered"/> (the conversation rendered with no generation prompt) cut after the final message's
    /// text, as transformers' <c>apply_chat_template(continue_final_message=True)</c> cuts it: at the last place that text
    /// (stripped) stands, its trailing spaces kept where the template kept them, so the answer continues the message
    /// instead of following its end of turn. The text is the final message's content, or its last part holding text.
    /// </summary>
    public static string ContinueFinalMessage(string rendered, JsonElement messages)
    {
        string text = messages.ValueKind == JsonValueKind.Array && messages.GetArrayLength() > 0 ? FinalText(messages[messages.GetArrayLength() - 1]) ?? "" : "";
        string stripped = text.Trim();
        if (stripped.Length == 0)
        {
            throw new ArgumentException("the final message has no text to continue", nameof(messages));
        }

        int at = rendered.LastIndexOf(stripped, StringComparison.Ordinal);
        if (at < 0)
        {
            throw new ArgumentException("the chat template does not write the final message's text as given, so it cannot be continued", nameof(messages));
        }

        bool kept = text.TrimStart().Length == text.Length && string.CompareOrdinal(rendered, at, text, 0, text.Length) == 0;
        return rendered[..(at + (kept ? text.Length : stripped.Length))];
    }

    /// <summary>Whether the last of <paramref name="messages"/> is the assistant's: a conversation whose answer continues it (assistant prefill).</summary>
    public static bool EndsWithAssistantMessage(JsonElement messages) =>
        messages.ValueKind == JsonValueKind.Array && messages.GetArrayLength() > 0 && messages[messages.GetArrayLength() - 1] is { ValueKind: JsonValueKind.Object } last
        && last.TryGetProperty("role", out JsonElement role) && role.ValueKind == JsonValueKind.String && role.GetString() == "assistant";

    private static string? FinalText(JsonElement message) =>
        message.ValueKind != JsonValueKind.Object || !message.TryGetProperty("content", out JsonElement content) ? null
        : content.ValueKind == JsonValueKind.String ? content.GetString()
        : content.ValueKind == JsonValueKind.Array ? content.EnumerateArray().Reverse()
            .Select(p => p.ValueKind == JsonValueKind.Object && p.TryGetProperty("text", out JsonElement t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null)
            .FirstOrDefault(t => t is not null)
        : null;

    /// <summary>The variables every render sets from its own arguments, which template arguments may not set.</summary>
    public static IReadOnlySet<string> ReservedArguments { get; } = new HashSet<string>(StringComparer.Ordinal) { "messages", "tools", "documents", "add_generation_prompt" };

    /// <summary>Renders a conversation of plain role/content messages.</summary>
    public string Render(IEnumerable<(string Role, string Content)> messages, bool addGenerationPrompt, IReadOnlyDictionary<string, string>? variables = null) =>
        Render(messages, addGenerationPrompt, variables, continueFinalMessage: false);

    /// <summary>Renders a conversation of plain role/content messages; with <paramref name="continueFinalMessage"/>, cut after the final message's text (<see cref="ContinueFinalMessage"/>).</summary>
    public string Render(IEnumerable<(string Role, string Content)> messages, bool addGenerationPrompt, IReadOnlyDictionary<string, string>? variables, bool continueFinalMessage)
    {
        using JsonDocument document = JsonDocument.Parse(JsonSerializer.Serialize(
            messages.Select(m => new Dictionary<string, string> { ["role"] = m.Role, ["content"] = m.Content }).ToList(),
            ChatJsonContext.Default.ListDictionaryStringString));
        string rendered = Render(document.RootElement, null, addGenerationPrompt, variables);
        return continueFinalMessage ? ContinueFinalMessage(rendered, document.RootElement) : rendered;
    }

    /// <summary>JSON as the Python values <c>json.loads</c> gives: dicts keep their order; integers stay integers.</summary>
    internal static object? FromJson(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.Object => ToDict(element),
        JsonValueKind.Array => element.EnumerateArray().Select(FromJson).ToList(),
        JsonValueKind.String => element.GetString(),
        JsonValueKind.Number => IsInteger(element) && element.TryGetInt64(out long l) ? (object)l : element.GetDouble(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => null,
    };

    private static bool IsInteger(JsonElement number) => number.GetRawText().AsSpan().IndexOfAny(".eE") < 0;

    private static OrderedDictionary<string, object?> ToDict(JsonElement element)
    {
        var dict = new OrderedDictionary<string, object?>();
        foreach (JsonProperty property in element.EnumerateObject())
        {
            dict[property.Name] = FromJson(property.Value);
        }

        return dict;
    }
}

[System.Text.Json.Serialization.JsonSerializable(typeof(List<Dictionary<string, string>>))]
internal sealed partial class ChatJsonContext : System.Text.Json.Serialization.JsonSerializerContext;
