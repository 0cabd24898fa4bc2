using System.Buffers;
using System.Text.Json;

namespace QwenSharp.Server.Api;

/// <summary>
/// A chat completions message being built from another API's request (the Responses API's input items, Anthropic's
/// content blocks): its content parts, its tool calls, the call a tool message answers; written as chat's JSON.
/// </summary>
internal sealed class ChatMessageDraft(string role)
{
    public string Role { get; } = role;

    public List<(string Type, string Value)> Parts { get; } = [];

    public List<(string Id, string Name, string Arguments)> Calls { get; } = [];

    public string? ToolCallId { get; init; }

    /// <summary>A chat completions request as a JSON document: <paramref name="write"/> writes its fields.</summary>
    public static JsonDocument Request(Action<Utf8JsonWriter> write)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            write(w);
            w.WriteEndObject();
        }

        return JsonDocument.Parse(buffer.WrittenMemory);
    }

    /// <summary>The request's <c>messages</c>.</summary>
    public static void WriteMessages(Utf8JsonWriter w, List<ChatMessageDraft> messages)
    {
        w.WriteStartArray("messages");
        foreach (ChatMessageDraft message in messages)
        {
            message.WriteTo(w);
        }

        w.WriteEndArray();
    }

    /// <summary>
    /// The request's <c>tools</c>, where given, as chat's function tools: each checked against <paramref name="fields"/>,
    /// of <paramref name="type"/>, the type the API gives a tool the client defines (which may be left out unless
    /// <paramref name="typeRequired"/>), its parameters' schema under <paramref name="parameters"/>. Any other type (a
    /// hosted tool) is refused naming it.
    /// </summary>
    public static void WriteTools(RequestFields request, Utf8JsonWriter w, IReadOnlySet<string> fields, string type, bool typeRequired, string parameters)
    {
        if (request.Get("tools") is not JsonElement tools)
        {
            return;
        }

        if (tools.ValueKind != JsonValueKind.Array)
        {
            throw ApiException.BadField("tools", $"'tools' must be a list of tools, not {RequestFields.Kind(tools)}");
        }

        w.WriteStartArray("tools");
        int i = 0;
        foreach (JsonElement tool in tools.EnumerateArray())
        {
            string path = $"tools[{i++}]";
            RequestFields tooled = RequestFields.Of(tool, path, fields);
            string? given = tooled.String("type", 64);
            if (given is null ? typeRequired : given != type)
            {
                throw ApiException.BadField($"{path}.type", given is null ? $"'{path}.type' is required: {type}"
                    : $"'{path}.type' is '{given}': this server runs no tools of its own; it offers the model the tools the client defines (type {type})");
            }

            w.WriteStartObject();
            w.WriteString("type", "function");
            w.WriteStartObject("function");
            w.WriteString("name", tooled.Required("name"));
            Copy(tooled, w, "description", "description");
            Copy(tooled, w, parameters, "parameters");
            Copy(tooled, w, "strict", "strict");
            w.WriteEndObject();
            w.WriteEndObject();
        }

        w.WriteEndArray();
    }

    /// <summary>Writes each of the request's fields <paramref name="names"/> that is given, under the same name.</summary>
    public static void CopyAll(RequestFields request, Utf8JsonWriter w, params string[] names)
    {
        foreach (string name in names)
        {
            Copy(request, w, name, name);
        }
    }

    /// <summary>Writes the request's field <paramref name="from"/>, where given, as <paramref name="to"/>.</summary>
    public static void Copy(RequestFields request, Utf8JsonWriter w, string from, string to)
    {
        if (request.Get(from) is JsonElement value)
        {
            w.WritePropertyName(to);
            value.WriteTo(w);
        }
    }

    /// <summary>
    /// A message's content as the other APIs give it: a text (added here, as one text part, yielding nothing) or a list of
    /// typed parts (<paramref name="noun"/>), each checked against <paramref name="fields"/> and yielded with its type and
    /// path for the caller to read.
    /// </summary>
    public IEnumerable<(RequestFields Fields, string Type, string Path)> Content(JsonElement content, string path, IReadOnlySet<string> fields, string noun)
    {
        if (content.ValueKind == JsonValueKind.String)
        {
            Parts.Add(("text", RequestFields.Text(content, path)));
            yield break;
        }

        if (content.ValueKind != JsonValueKind.Array)
        {
            throw ApiException.BadField(path, $"'{path}' must be a text or a list of {noun}, not {RequestFields.Kind(content)}");
        }

        int i = 0;
        foreach (JsonElement part in content.EnumerateArray())
        {
            string where = $"{path}[{i++}]";
            RequestFields partFields = RequestFields.Of(part, where, fields);
            yield return (partFields, partFields.String("type", 32) ?? throw ApiException.BadField($"{where}.type", $"'{where}.type' is required"), where);
        }
    }

    public void WriteTo(Utf8JsonWriter w)
    {
        w.WriteStartObject();
        w.WriteString("role", Role);
        if (ToolCallId is not null)
        {
            w.WriteString("tool_call_id", ToolCallId);
        }

        if (Parts.All(p => p.Type == "text"))
        {
            // Text alone as one string: every chat template reads that, where some read no parts.
            if (Parts.Count > 0 || Calls.Count == 0)
            {
                w.WriteString("content", string.Concat(Parts.Select(p => p.Value)));
            }
        }
        else
        {
            w.WriteStartArray("content");
            foreach ((string type, string value) in Parts)
            {
                w.WriteStartObject();
                w.WriteString("type", type);
                if (type == "text")
                {
                    w.WriteString("text", value);
                }
                else
                {
                    w.WriteStartObject("image_url");
                    w.WriteString("url", value);
                    w.WriteEndObject();
                }

                w.WriteEndObject();
            }

            w.WriteEndArray();
        }

        if (Calls.Count > 0)
        {
            w.WriteStartArray("tool_calls");
            foreach ((string id, string name, string arguments) in Calls)
            {
                w.WriteStartObject();
                w.WriteString("id", id);
                w.WriteString("type", "function");
                w.WriteStartObject("function");
                w.WriteString("name", name);
                w.WriteString("arguments", arguments);
                w.WriteEndObject();
                w.WriteEndObject();
            }

            w.WriteEndArray();
        }

        w.WriteEndObject();
    }
}
