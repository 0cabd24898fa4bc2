using System.Text.Json;

namespace QwenSharp.Server.Api;

/// <summary>
/// A request to OpenAI's Responses API (<c>POST /v1/responses</c>) rewritten as the chat completions request it asks
/// for, as llama-server rewrites it: <c>instructions</c> a system message first; <c>input</c> a text (the user's
/// message) or a list of items: messages (<c>input_text</c>, <c>input_image</c>, a previous answer's <c>output_text</c>;
/// <c>developer</c> is <c>system</c>), <c>function_call</c>s (joined to the assistant message before them) and
/// <c>function_call_output</c>s (tool messages); <c>max_output_tokens</c>, the flat function <c>tools</c>,
/// <c>tool_choice</c>, <c>text.format</c> (as <c>response_format</c>) and logprobs through <c>include</c>. With
/// <c>previous_response_id</c> the conversation that stored response ends comes first (its instructions do not, as
/// OpenAI's do not; <see cref="ResponseStore"/>), and an <c>item_reference</c> stands for the stored item it names; a
/// <c>conversation</c> object is refused (the server has no Conversations API). Every error names the Responses field.
/// </summary>
internal sealed class ResponsesRequest
{
    /// <summary>What the Responses API asks for with logprobs.</summary>
    public const string LogprobsInclude = "message.output_text.logprobs";

    private static readonly HashSet<string> s_fields =
    [
        "model", "input", "instructions", "max_output_tokens", "stream", "stream_options", "tools", "tool_choice", "parallel_tool_calls",
        "text", "include", "top_logprobs", "store", "metadata", "user", "safety_identifier", "prompt_cache_key", "service_tier",
        "previous_response_id", "conversation", "reasoning", "truncation", "background", "lora", .. SamplingFields.Names,
    ];

    private static readonly HashSet<string> s_messageFields = ["type", "role", "content", "id", "status"];
    private static readonly HashSet<string> s_callFields = ["type", "call_id", "name", "arguments", "id", "status"];
    private static readonly HashSet<string> s_outputFields = ["type", "call_id", "output", "id", "status"];
    private static readonly HashSet<string> s_partFields = ["type", "text", "image_url", "detail", "file_id", "annotations", "logprobs", "refusal"];
    private static readonly HashSet<string> s_toolFields = ["type", "name", "description", "parameters", "strict"];
    private static readonly HashSet<string> s_textFields = ["format", "verbosity"];
    private static readonly HashSet<string> s_formatFields = ["type", "name", "description", "schema", "strict"];
    private static readonly HashSet<string> s_reasoningFields = ["effort", "summary", "generate_summary"];
    private static readonly HashSet<string> s_streamOptionFields = ["include_obfuscation"];
    private static readonly HashSet<string> s_toolChoiceFields = ["type", "name"];
    private static readonly HashSet<string> s_referenceFields = ["type", "id"];

    private ResponsesRequest(JsonDocument chat, JsonElement original, bool store, IReadOnlyList<JsonElement> inputItems, IReadOnlyList<JsonElement> conversation)
    {
        Chat = chat;
        Original = original;
        Store = store;
        InputItems = inputItems;
        Conversation = conversation;
    }

    /// <summary>The chat completions request.</summary>
    public JsonDocument Chat { get; }

    /// <summary>The request as sent, whose settings the response repeats.</summary>
    public JsonElement Original { get; }

    /// <summary>Whether its response is kept: <c>store</c> (true unless given false) on a server that keeps responses.</summary>
    public bool Store { get; }

    /// <summary>
    /// The items of its <c>input</c>, each with an id and its content as parts (a text input is the user's message);
    /// none when it is not kept.
    /// </summary>
    public IReadOnlyList<JsonElement> InputItems { get; }

    /// <summary>The conversation it answers, as kept: the previous response's, then <see cref="InputItems"/>.</summary>
    public IReadOnlyList<JsonElement> Conversation { get; }

    public static ResponsesRequest Read(JsonElement body, ResponseStore? store)
    {
        RequestFields request = RequestFields.Of(body, "", s_fields);
        Refuse(request);
        IReadOnlyList<JsonElement> earlier = Previous(request, store)?.Conversation ?? [];
        JsonElement[]? listed = request.Get("input") is { ValueKind: JsonValueKind.Array } list
            ? [.. list.EnumerateArray().Select((item, i) => Referenced(item, $"input[{i}]", store))]
            : null;
        JsonDocument chat = ChatMessageDraft.Request(w =>
        {
            ChatMessageDraft.CopyAll(request, w, ["model", "stream", "parallel_tool_calls", "lora", "user", .. SamplingFields.Names]);
            ChatMessageDraft.Copy(request, w, "max_output_tokens", "max_tokens");
            WriteMessages(request, earlier, listed, w);
            ChatMessageDraft.WriteTools(request, w, s_toolFields, "function", typeRequired: true, "parameters");
            WriteToolChoice(request, w);
            WriteFormat(request, w);
            WriteLogprobs(request, w);
        });
        bool? asked = request.Bool("store");
        bool keep = store is not null && (asked ?? true);
        JsonElement input = request.Get("input")!.Value;
        JsonElement[] items = !keep ? [] : input.ValueKind == JsonValueKind.String
            ? [StoredItem(null, "message", w =>
            {
                w.WriteString("role", "user");
                WriteTextContent(w, "user", input.GetString()!);
            })]
            : [.. listed!.Select(StoredItem)];
        return new ResponsesRequest(chat, body, keep, items, [.. earlier, .. items]);
    }

    /// <summary>
    /// An input item, or the stored item an <c>item_reference</c> names (an input or output item of a stored response:
    /// <see cref="ResponseStore.FindItem"/>), which then stands in its place.
    /// </summary>
    private static JsonElement Referenced(JsonElement item, string path, ResponseStore? store)
    {
        if (item.ValueKind != JsonValueKind.Object || TypeOf(item) != "item_reference")
        {
            return item;
        }

        string id = RequestFields.Of(item, path, s_referenceFields).Required("id");
        if (store is null)
        {
            throw ApiException.BadField($"{path}.id", $"'{path}' is an item reference, and this server keeps no items (it was started with --stored-responses 0); send the item itself");
        }

        return store.FindItem(id) ?? throw ApiException.BadField($"{path}.id", $"'{path}.id': no stored response holds an item '{id}'");
    }

    /// <summary>The stored response <c>previous_response_id</c> names, if it names one.</summary>
    private static StoredResponse? Previous(RequestFields request, ResponseStore? store)
    {
        if (request.String("previous_response_id", 256) is not string id)
        {
            return null;
        }

        if (store is null)
        {
            throw ApiException.BadField("previous_response_id", "'previous_response_id': this server keeps no responses (it was started with --stored-responses 0); send the conversation so far as 'input'");
        }

        // OpenAI's error, whose code clients such as Codex look for to send the whole conversation again.
        return store.Find(id) ?? throw new ApiException(400, $"Previous response with id '{id}' not found.", "previous_response_id", "previous_response_not_found");
    }

    /// <summary>
    /// An input item as stored and listed: with an id (the client's, else a new one), its type, and a message's text
    /// content as one part, as OpenAI lists input items.
    /// </summary>
    private static JsonElement StoredItem(JsonElement item)
    {
        string type = TypeOf(item);
        string? id = item.TryGetProperty("id", out JsonElement i) && i.ValueKind == JsonValueKind.String ? i.GetString() : null;
        return StoredItem(id, type, w =>
        {
            foreach (JsonProperty property in item.EnumerateObject())
            {
                if (property.Name is "id" or "type")
                {
                    continue;
                }

                if (type == "message" && property.Name == "content" && property.Value.ValueKind == JsonValueKind.String)
                {
                    WriteTextContent(w, item.GetProperty("role").GetString()!, property.Value.GetString()!);
                }
                else
                {
                    property.WriteTo(w);
                }
            }
        });
    }

    private static JsonElement StoredItem(string? id, string type, Action<Utf8JsonWriter> rest)
    {
        using JsonDocument item = JsonDocument.Parse(ResponseJson.Serialize(w =>
        {
            w.WriteStartObject();
            w.WriteString("id", id ?? ItemId(type));
            w.WriteString("type", type);
            rest(w);
            w.WriteEndObject();
        }));
        return item.RootElement.Clone();
    }

    /// <summary>An input item's type: a message where it names none.</summary>
    private static string TypeOf(JsonElement item) =>
        item.TryGetProperty("type", out JsonElement type) && type.ValueKind == JsonValueKind.String ? type.GetString()! : "message";

    /// <summary>A message's text as its one content part: input_text, or output_text in an answer.</summary>
    private static void WriteTextContent(Utf8JsonWriter w, string role, string text)
    {
        w.WriteStartArray("content");
        w.WriteStartObject();
        w.WriteString("type", role == "assistant" ? "output_text" : "input_text");
        w.WriteString("text", text);
        w.WriteEndObject();
        w.WriteEndArray();
    }

    /// <summary>A new item id, with OpenAI's prefix for the item's type.</summary>
    private static string ItemId(string type) => type switch
    {
        "function_call" => "fc_",
        "function_call_output" => "fco_",
        _ => "msg_",
    } + Guid.NewGuid().ToString("N");

    /// <summary>What the server cannot do, refused by name rather than answered as if it had been done.</summary>
    private static void Refuse(RequestFields request)
    {
        if (request.Get("conversation") is not null)
        {
            throw ApiException.BadField("conversation", "'conversation': this server has no Conversations API; go on from a stored response with 'previous_response_id', or send the conversation so far as 'input'");
        }

        if (request.Bool("background") == true)
        {
            throw ApiException.BadField("background", "'background': this server answers a response while the request waits (or streams it); it runs none in the background");
        }

        if (request.String("truncation", 16) is string truncation && truncation != "disabled")
        {
            throw ApiException.BadField("truncation", $"'truncation' is '{truncation}'; this server does not drop input items: a conversation longer than the context is refused ('disabled')");
        }

        if (request.Get("reasoning") is JsonElement reasoning)
        {
            RequestFields fields = RequestFields.Of(reasoning, "reasoning", s_reasoningFields);
            if (fields.String("effort", 16) is string effort && effort != "none")
            {
                throw ApiException.BadField("reasoning.effort", $"'reasoning.effort' is '{effort}': the model does not reason (Qwen2 has no thinking mode); leave it out or give 'none'");
            }
        }

        foreach (string ignored in (string[])["safety_identifier", "prompt_cache_key", "service_tier"])
        {
            request.String(ignored, 512);
        }

        if (request.Get("metadata") is JsonElement metadata && metadata.ValueKind != JsonValueKind.Object)
        {
            throw ApiException.BadField("metadata", $"'metadata' must be an object of strings, not {RequestFields.Kind(metadata)}");
        }

        if (request.Get("stream_options") is JsonElement options)
        {
            // include_obfuscation: there is nothing to obfuscate against; a stream here carries no padding.
            RequestFields.Of(options, "stream_options", s_streamOptionFields).Bool("include_obfuscation");
        }
    }

    /// <summary>instructions, the <paramref name="earlier"/> conversation's items and input as chat messages.</summary>
    private static void WriteMessages(RequestFields request, IReadOnlyList<JsonElement> earlier, JsonElement[]? listed, Utf8JsonWriter w)
    {
        var messages = new List<ChatMessageDraft>();
        if (request.Get("instructions") is JsonElement instructions)
        {
            messages.Add(new ChatMessageDraft("system") { Parts = { ("text", RequestFields.Text(StringOf(instructions, "instructions"), "instructions")) } });
        }

        for (int k = 0; k < earlier.Count; k++)
        {
            AddItem(messages, earlier[k], $"previous_response_id's conversation[{k}]");
        }

        JsonElement input = request.Get("input") ?? throw ApiException.BadField("input", "'input' is required: a text or a list of input items");
        if (input.ValueKind == JsonValueKind.String)
        {
            messages.Add(new ChatMessageDraft("user") { Parts = { ("text", RequestFields.Text(input, "input")) } });
        }
        else if (input.ValueKind == JsonValueKind.Array && input.GetArrayLength() > 0)
        {
            for (int i = 0; i < listed!.Length; i++)
            {
                AddItem(messages, listed[i], $"input[{i}]");
            }
        }
        else
        {
            throw ApiException.BadField("input", $"'input' must be a text or a non-empty list of input items, not {(input.ValueKind == JsonValueKind.Array ? "an empty list" : RequestFields.Kind(input))}");
        }

        ChatMessageDraft.WriteMessages(w, messages);
    }

    private static void AddItem(List<ChatMessageDraft> messages, JsonElement item, string path)
    {
        if (item.ValueKind != JsonValueKind.Object)
        {
            throw ApiException.BadField(path, $"'{path}' must be an input item (an object), not {RequestFields.Kind(item)}");
        }

        string type = TypeOf(item);
        ChatMessageDraft? last = messages.Count > 0 ? messages[^1] : null;
        switch (type)
        {
            case "message":
            {
                RequestFields fields = RequestFields.Of(item, path, s_messageFields);
                string role = fields.String("role", 16) ?? throw ApiException.BadField($"{path}.role", $"'{path}.role' is required: user, assistant, system or developer");
                if (role is not ("user" or "assistant" or "system" or "developer"))
                {
                    throw ApiException.BadField($"{path}.role", $"'{path}.role' is '{role}'; it is user, assistant, system or developer");
                }

                var message = new ChatMessageDraft(role == "developer" ? "system" : role);
                JsonElement content = fields.Get("content") ?? throw ApiException.BadField($"{path}.content", $"'{path}.content' is required");
                AddContent(message, content, $"{path}.content", role == "assistant");
                if (role == "assistant" && last is { Role: "assistant" })
                {
                    last.Parts.AddRange(message.Parts);
                }
                else
                {
                    messages.Add(message);
                }

                break;
            }

            case "function_call":
            {
                RequestFields fields = RequestFields.Of(item, path, s_callFields);
                string callId = fields.Required("call_id");
                string name = fields.Required("name");
                string arguments = fields.String("arguments") ?? throw ApiException.BadField($"{path}.arguments", $"'{path}.arguments' is required: the call's arguments as JSON text");
                if (last is not { Role: "assistant" })
                {
                    last = new ChatMessageDraft("assistant");
                    messages.Add(last);
                }

                last.Calls.Add((callId, name, arguments));
                break;
            }

            case "function_call_output":
            {
                RequestFields fields = RequestFields.Of(item, path, s_outputFields);
                var tool = new ChatMessageDraft("tool") { ToolCallId = fields.Required("call_id") };
                AddContent(tool, fields.Get("output") ?? throw ApiException.BadField($"{path}.output", $"'{path}.output' is required: what the call returned"), $"{path}.output", assistant: false);
                messages.Add(tool);
                break;
            }

            case "reasoning":
                throw ApiException.BadField($"{path}.type", $"'{path}' is a reasoning item: the model does not reason, and none of its answers hold one");
            default:
                throw ApiException.BadField($"{path}.type", $"'{path}.type' is '{type}'; this server reads message, function_call and function_call_output items");
        }
    }

    /// <summary>A message's content: a text, or parts (input_text, input_image; a previous answer's output_text and refusal).</summary>
    private static void AddContent(ChatMessageDraft message, JsonElement content, string path, bool assistant)
    {
        foreach ((RequestFields fields, string type, string where) in message.Content(content, path, s_partFields, "content parts"))
        {
            switch (type)
            {
                case "input_text" or "output_text":
                    message.Parts.Add(("text", fields.String("text") ?? throw ApiException.BadField($"{where}.text", $"'{where}.text' is required")));
                    break;
                case "refusal" when assistant:
                    message.Parts.Add(("text", fields.String("refusal") ?? throw ApiException.BadField($"{where}.refusal", $"'{where}.refusal' is required")));
                    break;
                case "input_image" when !assistant:
                    if (fields.Get("file_id") is not null)
                    {
                        throw ApiException.BadField($"{where}.file_id", $"'{where}.file_id': this server keeps no files; give the picture as 'image_url' (a data: URL)");
                    }

                    fields.String("detail", 16);
                    message.Parts.Add(("image_url", fields.String("image_url") ?? throw ApiException.BadField($"{where}.image_url", $"'{where}.image_url' is required: the picture as a data: URL")));
                    break;
                case "input_file":
                    throw ApiException.BadField($"{where}.type", $"'{where}' is a file: the model reads text and pictures (input_text, input_image)");
                default:
                    throw ApiException.BadField($"{where}.type", $"'{where}.type' is '{type}'; {(assistant ? "an answer's parts are output_text and refusal" : "it is input_text or input_image")}");
            }
        }
    }

    private static void WriteToolChoice(RequestFields request, Utf8JsonWriter w)
    {
        switch (request.Get("tool_choice"))
        {
            case null:
                return;
            case { ValueKind: JsonValueKind.String } mode:
                w.WritePropertyName("tool_choice");
                mode.WriteTo(w);
                return;
            case { ValueKind: JsonValueKind.Object } choice:
                RequestFields fields = RequestFields.Of(choice, "tool_choice", s_toolChoiceFields);
                if (fields.String("type", 64) is not "function")
                {
                    throw ApiException.BadField("tool_choice.type", "'tool_choice.type' must be function (this server offers only the client's functions)");
                }

                w.WriteStartObject("tool_choice");
                w.WriteString("type", "function");
                w.WriteStartObject("function");
                w.WriteString("name", fields.Required("name"));
                w.WriteEndObject();
                w.WriteEndObject();
                return;
            case JsonElement other:
                throw ApiException.BadField("tool_choice", $"'tool_choice' must be auto, none, required or {{\"type\": \"function\", \"name\": ...}}, not {RequestFields.Kind(other)}");
        }
    }

    /// <summary>text.format as chat's response_format.</summary>
    private static void WriteFormat(RequestFields request, Utf8JsonWriter w)
    {
        if (request.Get("text") is not JsonElement text)
        {
            return;
        }

        RequestFields fields = RequestFields.Of(text, "text", s_textFields);
        if (fields.String("verbosity", 16) is string verbosity && verbosity != "medium")
        {
            throw ApiException.BadField("text.verbosity", $"'text.verbosity' is '{verbosity}': this server has no verbosity to set; leave it out");
        }

        if (fields.Get("format") is not JsonElement format)
        {
            return;
        }

        RequestFields formatFields = RequestFields.Of(format, "text.format", s_formatFields);
        string type = formatFields.String("type", 32) ?? throw ApiException.BadField("text.format.type", "'text.format.type' is required: text, json_object or json_schema");
        switch (type)
        {
            case "text":
                return;
            case "json_object":
                w.WriteStartObject("response_format");
                w.WriteString("type", "json_object");
                w.WriteEndObject();
                return;
            case "json_schema":
                w.WriteStartObject("response_format");
                w.WriteString("type", "json_schema");
                w.WriteStartObject("json_schema");
                w.WriteString("name", formatFields.Required("name"));
                ChatMessageDraft.Copy(formatFields, w, "description", "description");
                JsonElement schema = formatFields.Get("schema") ?? throw ApiException.BadField("text.format.schema", "'text.format.schema' is required: the JSON schema of the answer");
                w.WritePropertyName("schema");
                schema.WriteTo(w);
                ChatMessageDraft.Copy(formatFields, w, "strict", "strict");
                w.WriteEndObject();
                w.WriteEndObject();
                return;
            default:
                throw ApiException.BadField("text.format.type", $"'text.format.type' is '{type}'; it is text, json_object or json_schema");
        }
    }

    /// <summary>include's message.output_text.logprobs, with top_logprobs alternatives.</summary>
    private static void WriteLogprobs(RequestFields request, Utf8JsonWriter w)
    {
        IReadOnlyList<string> include = request.StringOrList("include", 16, 128);
        foreach (string item in include)
        {
            if (item != LogprobsInclude)
            {
                throw ApiException.BadField("include", $"'include' holds '{item}'; this server can add only {LogprobsInclude}");
            }
        }

        int? top = request.Int("top_logprobs", 0, 20);
        if (include.Count > 0)
        {
            w.WriteBoolean("logprobs", true);
            w.WriteNumber("top_logprobs", top ?? 0);
        }
        else if (top > 0)
        {
            throw ApiException.BadField("top_logprobs", $"'top_logprobs' needs 'include': [\"{LogprobsInclude}\"]");
        }
    }

    private static JsonElement StringOf(JsonElement value, string path) => value.ValueKind == JsonValueKind.String
        ? value
        : throw ApiException.BadField(path, $"'{path}' must be a string, not {RequestFields.Kind(value)}");
}
