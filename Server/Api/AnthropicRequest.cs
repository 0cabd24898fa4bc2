using System.Text.Json;

namespace QwenSharp.Server.Api;

/// <summary>
/// A request to Anthropic's Messages API (<c>POST /v1/messages</c>) rewritten as the chat completions request it asks
/// for, as llama-server rewrites it: <c>system</c> a system message first; each message's content a text or blocks
/// (<c>text</c>; <c>image</c> from base64 as a data: URL; an assistant's <c>tool_use</c> a tool call, its <c>input</c>
/// the arguments; a user's <c>tool_result</c> a tool message, before the rest of the turn); <c>tools</c> with their
/// <c>input_schema</c>; <c>tool_choice</c> auto, any (required), tool (that function) or none, and
/// <c>disable_parallel_tool_use</c>; <c>max_tokens</c> (required, as Anthropic requires it), <c>stop_sequences</c>,
/// <c>temperature</c>, <c>top_p</c>, <c>top_k</c>. Extended thinking and documents are refused: the model has neither.
/// Every error names the Messages API's field.
/// </summary>
internal static class AnthropicRequest
{
    private static readonly HashSet<string> s_fields =
    [
        "model", "messages", "system", "max_tokens", "stop_sequences", "stream", "temperature", "top_p", "top_k", "tools", "tool_choice",
        "metadata", "thinking", "service_tier", "lora",
    ];

    private static readonly HashSet<string> s_messageFields = ["role", "content"];
    private static readonly HashSet<string> s_blockFields = ["type", "text", "source", "id", "name", "input", "tool_use_id", "content", "is_error", "cache_control", "citations"];
    private static readonly HashSet<string> s_sourceFields = ["type", "media_type", "data", "url"];
    private static readonly HashSet<string> s_toolFields = ["name", "description", "input_schema", "type", "cache_control"];
    private static readonly HashSet<string> s_toolChoiceFields = ["type", "name", "disable_parallel_tool_use"];
    private static readonly HashSet<string> s_thinkingFields = ["type", "budget_tokens"];
    private static readonly HashSet<string> s_metadataFields = ["user_id"];

    /// <summary>The chat completions request for <paramref name="body"/>; <paramref name="countOnly"/> (count_tokens) needs no max_tokens.</summary>
    public static JsonDocument ToChat(JsonElement body, bool countOnly = false)
    {
        RequestFields request = RequestFields.Of(body, "", s_fields);
        if (request.Get("thinking") is JsonElement thinking && RequestFields.Of(thinking, "thinking", s_thinkingFields).String("type", 16) is string kind && kind != "disabled")
        {
            throw ApiException.BadField("thinking.type", $"'thinking.type' is '{kind}': the model does not think before it answers (Qwen2 has no thinking mode)");
        }

        if (request.Get("metadata") is JsonElement metadata)
        {
            RequestFields.Of(metadata, "metadata", s_metadataFields).String("user_id", 512);
        }

        request.String("service_tier", 64);
        if (request.Get("max_tokens") is null && !countOnly)
        {
            throw ApiException.BadField("max_tokens", "'max_tokens' is required: the most tokens the answer may take");
        }

        return ChatMessageDraft.Request(w =>
        {
            ChatMessageDraft.CopyAll(request, w, "model", "stream", "temperature", "top_p", "top_k", "lora", "max_tokens");
            ChatMessageDraft.Copy(request, w, "stop_sequences", "stop");
            WriteMessages(request, w);
            WriteToolsAndChoice(request, w);
        });
    }

    private static void WriteMessages(RequestFields request, Utf8JsonWriter w)
    {
        var messages = new List<ChatMessageDraft>();
        if (request.Get("system") is JsonElement system)
        {
            var message = new ChatMessageDraft("system");
            AddBlocks(message, messages, system, "system", "system");
            messages.Add(message);
        }

        JsonElement list = request.Get("messages") ?? throw ApiException.BadField("messages", "'messages' is required: the conversation, user and assistant turns");
        if (list.ValueKind != JsonValueKind.Array || list.GetArrayLength() == 0)
        {
            throw ApiException.BadField("messages", $"'messages' must be a non-empty list of turns, not {(list.ValueKind == JsonValueKind.Array ? "an empty list" : RequestFields.Kind(list))}");
        }

        int i = 0;
        foreach (JsonElement turn in list.EnumerateArray())
        {
            string path = $"messages[{i++}]";
            RequestFields fields = RequestFields.Of(turn, path, s_messageFields);
            string role = fields.String("role", 16) ?? throw ApiException.BadField($"{path}.role", $"'{path}.role' is required: user or assistant");
            if (role is not ("user" or "assistant"))
            {
                throw ApiException.BadField($"{path}.role", $"'{path}.role' is '{role}'; it is user or assistant (the system prompt is the request's 'system')");
            }

            var message = new ChatMessageDraft(role);
            AddBlocks(message, messages, fields.Get("content") ?? throw ApiException.BadField($"{path}.content", $"'{path}.content' is required"), $"{path}.content", role);
            if (message.Parts.Count > 0 || message.Calls.Count > 0 || role == "assistant")
            {
                messages.Add(message);
            }
        }

        ChatMessageDraft.WriteMessages(w, messages);
        if (messages[^1].Role == "assistant")
        {
            // Anthropic's API continues a final assistant turn (a prefill) rather than answering after it.
            w.WriteBoolean("continue_final_message", true);
        }
    }

    /// <summary>A turn's content into <paramref name="message"/>: its tool results go into <paramref name="messages"/> as tool messages first.</summary>
    private static void AddBlocks(ChatMessageDraft message, List<ChatMessageDraft> messages, JsonElement content, string path, string role)
    {
        foreach ((RequestFields fields, string type, string where) in message.Content(content, path, s_blockFields, "content blocks"))
        {
            switch (type)
            {
                case "text":
                    message.Parts.Add(("text", fields.String("text") ?? throw ApiException.BadField($"{where}.text", $"'{where}.text' is required")));
                    break;
                case "image" when role == "user":
                    message.Parts.Add(("image_url", ImageUrl(fields, where)));
                    break;
                case "tool_use" when role == "assistant":
                {
                    string id = fields.Required("id");
                    string name = fields.Required("name");
                    JsonElement input = fields.Get("input") ?? throw ApiException.BadField($"{where}.input", $"'{where}.input' is required: the call's arguments");
                    if (input.ValueKind != JsonValueKind.Object)
                    {
                        throw ApiException.BadField($"{where}.input", $"'{where}.input' must be an object of arguments, not {RequestFields.Kind(input)}");
                    }

                    message.Calls.Add((id, name, input.GetRawText()));
                    break;
                }

                case "tool_result" when role == "user":
                {
                    var result = new ChatMessageDraft("tool") { ToolCallId = fields.Required("tool_use_id") };
                    fields.Bool("is_error");
                    if (fields.Get("content") is JsonElement output)
                    {
                        AddBlocks(result, messages, output, $"{where}.content", "tool");
                    }

                    messages.Add(result);
                    break;
                }

                case "thinking" or "redacted_thinking":
                    throw ApiException.BadField($"{where}.type", $"'{where}' is a {type} block: the model does not think before it answers, and none of its answers hold one");
                case "document" or "search_result" or "server_tool_use" or "web_search_tool_result":
                    throw ApiException.BadField($"{where}.type", $"'{where}' is a {type} block: the model reads text, pictures, tool calls and their results");
                default:
                    throw ApiException.BadField($"{where}.type", $"'{where}.type' is '{type}'; {(role == "assistant" ? "an assistant's blocks are text and tool_use" : role == "user" ? "a user's blocks are text, image and tool_result" : "it is text (a tool's result reaches the model as text)")}");
            }
        }
    }

    /// <summary>An image block's source as the data: URL (or URL) the chat path reads.</summary>
    private static string ImageUrl(RequestFields block, string where)
    {
        JsonElement source = block.Get("source") ?? throw ApiException.BadField($"{where}.source", $"'{where}.source' is required");
        RequestFields fields = RequestFields.Of(source, $"{where}.source", s_sourceFields);
        return fields.String("type", 16) switch
        {
            "base64" => $"data:{fields.Required("media_type")};base64,{fields.Required("data")}",
            "url" => fields.Required("url"),
            string other => throw ApiException.BadField($"{where}.source.type", $"'{where}.source.type' is '{other}'; it is base64 or url"),
            null => throw ApiException.BadField($"{where}.source.type", $"'{where}.source.type' is required: base64 or url"),
        };
    }

    private static void WriteToolsAndChoice(RequestFields request, Utf8JsonWriter w)
    {
        ChatMessageDraft.WriteTools(request, w, s_toolFields, "custom", typeRequired: false, "input_schema");
        if (request.Get("tool_choice") is not JsonElement choice)
        {
            return;
        }

        RequestFields choiceFields = RequestFields.Of(choice, "tool_choice", s_toolChoiceFields);
        if (choiceFields.Bool("disable_parallel_tool_use") == true)
        {
            w.WriteBoolean("parallel_tool_calls", false);
        }

        switch (choiceFields.String("type", 16))
        {
            case "auto":
                w.WriteString("tool_choice", "auto");
                break;
            case "any":
                w.WriteString("tool_choice", "required");
                break;
            case "none":
                w.WriteString("tool_choice", "none");
                break;
            case "tool":
                w.WriteStartObject("tool_choice");
                w.WriteString("type", "function");
                w.WriteStartObject("function");
                w.WriteString("name", choiceFields.Required("name"));
                w.WriteEndObject();
                w.WriteEndObject();
                break;
            case string other:
                throw ApiException.BadField("tool_choice.type", $"'tool_choice.type' is '{other}'; it is auto, any, tool or none");
            case null:
                throw ApiException.BadField("tool_choice.type", "'tool_choice.type' is required: auto, any, tool or none");
        }
    }
}
