using System.Text.Json;
using QwenSharp.Errors;
using QwenSharp.Qwen2VL;
using QwenSharp.Sampling;
using QwenSharp.Tokenization;
using QwenSharp.Tokenization.Chat;

namespace QwenSharp.Server.Api;

/// <summary>
/// OpenAI chat messages and tools rendered with the model's chat template: messages in transformers' shape
/// (text parts joined, assistant tool calls with object arguments, tool results as <c>tool</c> messages),
/// tools as given. <c>tool_choice</c> "none" leaves the tools out; "required" or a named function starts
/// the answer with Qwen's <c>&lt;tool_call&gt;</c> opening, so the model can only call.
/// </summary>
internal static class ChatPrompt
{
    private static readonly HashSet<string> s_messageFields = ["role", "content", "name", "tool_calls", "tool_call_id", "refusal"];
    private static readonly HashSet<string> s_partFields = ["type", "text"];
    private static readonly HashSet<string> s_imagePartFields = ["type", "image_url"];
    private static readonly HashSet<string> s_imageUrlFields = ["url", "detail"];
    private static readonly HashSet<string> s_callFields = ["id", "type", "function", "index"];
    private static readonly HashSet<string> s_functionCallFields = ["name", "arguments"];
    private static readonly HashSet<string> s_toolFields = ["type", "function"];
    private static readonly HashSet<string> s_functionFields = ["name", "description", "parameters", "strict"];
    private static readonly HashSet<string> s_toolChoiceFields = ["type", "function"];
    private static readonly HashSet<string> s_toolChoiceFunctionFields = ["name"];

    /// <summary>
    /// The rendered prompt, the text the answer is forced to start with ("" unless tool_choice forces a call), the tools
    /// the answer may call (null when none are offered; only the named one when tool_choice names it), and the pictures of a
    /// Qwen2-VL model's request in prompt order (<paramref name="processor"/> null: a text model, which refuses them).
    /// </summary>
    /// <param name="addGenerationPrompt">Open the assistant's turn after the messages (false: the conversation as it stands, as a reward model rates it).</param>
    /// <param name="prefillAssistant">Continue a final assistant message where the request does not say (see <see cref="ChatTurn"/>).</param>
    public static RenderedChat Render(RequestFields request, Tokenizer tokenizer, ImageProcessorConfig? processor = null, bool addGenerationPrompt = true,
        bool prefillAssistant = false)
    {
        if (!tokenizer.HasChatTemplate)
        {
            throw new ApiException(400, "this model has no chat template (no chat_template in tokenizer_config.json); use /v1/completions", "messages", "no_chat_template");
        }

        if (request.Get("messages") is not JsonElement messages || messages.ValueKind != JsonValueKind.Array || messages.GetArrayLength() == 0)
        {
            throw ApiException.BadField("messages", "'messages' must be a non-empty list of messages");
        }

        List<ToolSignature> signatures = [];
        using JsonDocument? tools = request.Get("tools") is JsonElement toolList ? Tools(toolList, signatures) : null;
        (bool useTools, string prefix, string? named) = ToolChoice(request, signatures);
        ChatTurn turn = ChatTurn.Read(request, messages, addGenerationPrompt, prefillAssistant);
        if (turn.ContinuesFinalMessage && prefix.Length > 0)
        {
            throw ApiException.BadField("tool_choice", "'tool_choice' forces a call, and the answer continues the final assistant message; give one (or 'continue_final_message': false)");
        }

        JsonElement? templateArguments = request.Get("chat_template_kwargs");
        if (templateArguments is JsonElement { ValueKind: not JsonValueKind.Object } notObject)
        {
            throw ApiException.BadField("chat_template_kwargs", $"'chat_template_kwargs' must be an object of the template's variables, not {RequestFields.Kind(notObject)}");
        }

        var pictures = new List<RgbImage>();
        using JsonDocument rendered = Messages(messages, processor, pictures);
        try
        {
            if (turn.ContinuesFinalMessage)
            {
                ChatTurn.CheckContinuable(rendered.RootElement, messages.GetArrayLength());
            }

            string prompt = tokenizer.ApplyChatTemplate(rendered.RootElement, useTools ? tools?.RootElement : null, turn.AddGenerationPrompt, templateArguments,
                turn.ContinuesFinalMessage);

            IReadOnlyList<ToolSignature>? callable = !useTools || tools is null ? null
                : named is null ? signatures : [signatures.First(t => t.Name == named)];
            return new RenderedChat(prompt + prefix, prefix, callable, pictures) { ContinuesFinalMessage = turn.ContinuesFinalMessage };
        }
        catch (TemplateException e)
        {
            // The template's own checks (raise_exception) say what is wrong with the conversation.
            throw new ApiException(400, $"the chat template refused the messages: {e.Message}", "messages", "invalid_messages");
        }
        catch (ArgumentException e) when (e.ParamName == "templateArguments")
        {
            throw ApiException.BadField("chat_template_kwargs", $"'chat_template_kwargs': {e.BareMessage()}");
        }
        catch (ArgumentException e) when (e.ParamName == "messages")
        {
            string final = $"messages[{messages.GetArrayLength() - 1}].content";
            throw new ApiException(400, $"'{final}': {e.BareMessage()}; give 'continue_final_message': false for a new turn", final, "invalid_messages");
        }
    }

    private static JsonDocument Messages(JsonElement messages, ImageProcessorConfig? processor, List<RgbImage> pictures)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream))
        {
            writer.WriteStartArray();
            int i = 0;
            foreach (JsonElement message in messages.EnumerateArray())
            {
                WriteMessage(writer, RequestFields.Of(message, $"messages[{i}]", s_messageFields), $"messages[{i}]", processor, pictures);
                i++;
            }

            writer.WriteEndArray();
        }

        return JsonDocument.Parse(stream.ToArray());
    }

    private static void WriteMessage(Utf8JsonWriter writer, RequestFields message, string path, ImageProcessorConfig? processor, List<RgbImage> pictures)
    {
        string role = message.String("role") ?? throw ApiException.BadField($"{path}.role", $"'{path}.role' is missing");
        // OpenAI's newer name for the system role.
        role = role == "developer" ? "system" : role;
        if (role is not ("system" or "user" or "assistant" or "tool"))
        {
            throw ApiException.BadField($"{path}.role", $"'{path}.role' is '{role}'; expected system, developer, user, assistant or tool");
        }

        writer.WriteStartObject();
        writer.WriteString("role", role);
        WriteContent(writer, message, path, processor, pictures);
        if (message.Get("tool_calls") is JsonElement calls)
        {
            if (role != "assistant" || calls.ValueKind != JsonValueKind.Array)
            {
                throw ApiException.BadField($"{path}.tool_calls", $"'{path}.tool_calls' must be a list, on an assistant message");
            }

            writer.WriteStartArray("tool_calls");
            int c = 0;
            foreach (JsonElement call in calls.EnumerateArray())
            {
                string callPath = $"{path}.tool_calls[{c++}]";
                RequestFields fields = RequestFields.Of(call, callPath, s_callFields);
                if (fields.String("type") is string type && type != "function")
                {
                    throw ApiException.BadField($"{callPath}.type", $"'{callPath}.type' is '{type}'; only 'function' calls exist");
                }

                RequestFields function = RequestFields.Of(fields.Get("function") ?? throw ApiException.BadField($"{callPath}.function", $"'{callPath}.function' is missing"),
                    $"{callPath}.function", s_functionCallFields);
                string name = function.String("name") ?? throw ApiException.BadField($"{callPath}.function.name", $"'{callPath}.function.name' is missing");
                writer.WriteStartObject();
                writer.WriteString("type", "function");
                writer.WriteStartObject("function");
                writer.WriteString("name", name);
                WriteArguments(writer, function.String("arguments") ?? "{}");
                writer.WriteEndObject();
                writer.WriteEndObject();
            }

            writer.WriteEndArray();
        }

        if (message.String("tool_call_id") is string id)
        {
            writer.WriteString("tool_call_id", id);
        }

        if (message.String("name") is string author)
        {
            writer.WriteString("name", author);
        }

        writer.WriteEndObject();
    }

    /// <summary>
    /// A message's content: its text (a string, or text parts joined), or for a message with pictures the parts in
    /// order as Qwen2-VL's template takes them (<c>{"type": "text", "text"}</c> and <c>{"type": "image"}</c>).
    /// </summary>
    private static void WriteContent(Utf8JsonWriter writer, RequestFields message, string path, ImageProcessorConfig? processor, List<RgbImage> pictures)
    {
        if (processor is null || message.Get("content") is not JsonElement { ValueKind: JsonValueKind.Array } parts
            || !parts.EnumerateArray().Any(IsImagePart))
        {
            writer.WriteString("content", Content(message, path));
            return;
        }

        writer.WriteStartArray("content");
        int i = 0;
        foreach (JsonElement part in parts.EnumerateArray())
        {
            string partPath = $"{path}.content[{i++}]";
            writer.WriteStartObject();
            if (IsImagePart(part))
            {
                pictures.Add(Picture(part, partPath, processor));
                writer.WriteString("type", "image");
            }
            else
            {
                writer.WriteString("type", "text");
                writer.WriteString("text", TextPart(part, partPath));
            }

            writer.WriteEndObject();
        }

        writer.WriteEndArray();
    }

    private static bool IsImagePart(JsonElement part) =>
        part.ValueKind == JsonValueKind.Object && part.TryGetProperty("type", out JsonElement t) && t.ValueKind == JsonValueKind.String
        && t.GetString() is "image_url" or "input_image" or "image";

    /// <summary>An <c>image_url</c> part's picture, decoded: a <c>data:image/png|jpeg;base64,</c> URL (the server downloads nothing).</summary>
    private static RgbImage Picture(JsonElement part, string path, ImageProcessorConfig processor)
    {
        RequestFields fields = RequestFields.Of(part, path, s_imagePartFields);
        if (fields.String("type") != "image_url")
        {
            throw ApiException.BadField($"{path}.type", $"'{path}.type' is '{fields.String("type")}'; pictures come as 'image_url' parts");
        }

        JsonElement image = fields.Get("image_url") ?? throw ApiException.BadField($"{path}.image_url", $"'{path}.image_url' is missing");
        string? url = image.ValueKind == JsonValueKind.String ? image.GetString()
            : RequestFields.Of(image, $"{path}.image_url", s_imageUrlFields).String("url", int.MaxValue);
        if (url is null)
        {
            throw ApiException.BadField($"{path}.image_url.url", $"'{path}.image_url.url' is missing");
        }

        if (!url.StartsWith("data:", StringComparison.Ordinal))
        {
            throw ApiException.BadField($"{path}.image_url.url", $"'{path}.image_url.url' must be a data: URL (data:image/png;base64,...); this server downloads nothing");
        }

        try
        {
            return Images.PicturePrompts.Load(url, "", processor);
        }
        catch (Exception e) when (e is InvalidDataException or NotSupportedException)
        {
            throw ApiException.BadField($"{path}.image_url.url", $"'{path}.image_url.url': {e.Message}");
        }
    }

    /// <summary>A message's text: a string, or a list of text parts joined. Images need a vision model.</summary>
    private static string Content(RequestFields message, string path)
    {
        if (message.Get("content") is not JsonElement content)
        {
            return "";
        }

        if (content.ValueKind == JsonValueKind.String)
        {
            return RequestFields.Text(content, $"{path}.content");
        }

        if (content.ValueKind != JsonValueKind.Array)
        {
            throw ApiException.BadField($"{path}.content", $"'{path}.content' must be a string or a list of parts, not {RequestFields.Kind(content)}");
        }

        var text = new System.Text.StringBuilder();
        int i = 0;
        foreach (JsonElement part in content.EnumerateArray())
        {
            string partPath = $"{path}.content[{i++}]";
            string? type = part.ValueKind == JsonValueKind.Object && part.TryGetProperty("type", out JsonElement t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
            if (type is "image_url" or "input_image" or "image")
            {
                throw new ApiException(400, $"'{partPath}' is an image; this server runs a text-only model", $"{partPath}.type", "unsupported_content");
            }

            text.Append(TextPart(part, partPath));
        }

        return text.ToString();
    }

    private static string TextPart(JsonElement part, string path)
    {
        RequestFields fields = RequestFields.Of(part, path, s_partFields);
        string? type = fields.String("type");
        if (type != "text")
        {
            throw ApiException.BadField($"{path}.type", $"'{path}.type' is '{type}'; only 'text' and (for a vision model) 'image_url' parts are supported");
        }

        return fields.String("text") ?? throw ApiException.BadField($"{path}.text", $"'{path}.text' is missing");
    }

    /// <summary>OpenAI sends arguments as JSON text; templates want the object (Qwen's writes it with tojson).</summary>
    private static void WriteArguments(Utf8JsonWriter writer, string arguments)
    {
        try
        {
            using JsonDocument parsed = JsonDocument.Parse(arguments);
            writer.WritePropertyName("arguments");
            parsed.RootElement.WriteTo(writer);
        }
        catch (JsonException)
        {
            writer.WriteString("arguments", arguments);
        }
    }

    private static JsonDocument Tools(JsonElement tools, List<ToolSignature> signatures)
    {
        if (tools.ValueKind != JsonValueKind.Array)
        {
            throw ApiException.BadField("tools", $"'tools' must be a list, not {RequestFields.Kind(tools)}");
        }

        int i = 0;
        foreach (JsonElement tool in tools.EnumerateArray())
        {
            string path = $"tools[{i++}]";
            RequestFields fields = RequestFields.Of(tool, path, s_toolFields);
            if (fields.String("type") != "function")
            {
                throw ApiException.BadField($"{path}.type", $"'{path}.type' must be 'function'");
            }

            RequestFields function = RequestFields.Of(fields.Get("function") ?? throw ApiException.BadField($"{path}.function", $"'{path}.function' is missing"),
                $"{path}.function", s_functionFields);
            string name = function.String("name", 256) ?? throw ApiException.BadField($"{path}.function.name", $"'{path}.function.name' is missing");
            function.String("description");
            JsonElement? parameters = function.Get("parameters");
            if (parameters is JsonElement given && given.ValueKind != JsonValueKind.Object)
            {
                throw ApiException.BadField($"{path}.function.parameters", $"'{path}.function.parameters' must be a JSON schema object");
            }

            if (signatures.Any(s => s.Name == name))
            {
                throw ApiException.BadField($"{path}.function.name", $"'{path}.function.name': two tools are named '{name}'");
            }

            signatures.Add(new ToolSignature(name, parameters?.Clone(), function.Bool("strict") ?? false, $"{path}.function.parameters"));
        }

        return JsonDocument.Parse(tools.GetRawText());
    }

    /// <summary>Whether the tools go in the prompt, the text the answer is forced to begin with, and the function tool_choice names.</summary>
    private static (bool UseTools, string Prefix, string? Named) ToolChoice(RequestFields request, List<ToolSignature> tools)
    {
        if (request.Get("tool_choice") is not JsonElement choice)
        {
            return (true, "", null);
        }

        if (choice.ValueKind == JsonValueKind.String)
        {
            string value = RequestFields.Text(choice, "tool_choice");
            return value switch
            {
                "auto" => (true, "", null),
                "none" => (false, "", null),
                "required" when tools.Count > 0 => (true, "<tool_call>\n", null),
                "required" => throw ApiException.BadField("tool_choice", "'tool_choice' is 'required' but no tools are given"),
                _ => throw ApiException.BadField("tool_choice", $"'tool_choice' is '{value}'; expected auto, none, required or a function"),
            };
        }

        RequestFields fields = RequestFields.Of(choice, "tool_choice", s_toolChoiceFields);
        RequestFields function = RequestFields.Of(fields.Get("function") ?? throw ApiException.BadField("tool_choice.function", "'tool_choice.function' is missing"),
            "tool_choice.function", s_toolChoiceFunctionFields);
        string name = function.String("name") ?? throw ApiException.BadField("tool_choice.function.name", "'tool_choice.function.name' is missing");
        if (!tools.Any(t => t.Name == name))
        {
            throw ApiException.BadField("tool_choice.function.name", $"'tool_choice' names '{name}', which is not one of the tools");
        }

        // The name as the model writes it in a call (and as ToolCallPrefix then holds it).
        return (true, $"<tool_call>\n{{\"name\": \"{ToolCallGrammar.WrittenName(name)}\", \"arguments\": ", name);
    }
}

/// <summary>
/// A chat request rendered (<see cref="ChatPrompt.Render"/>): the prompt, the text the answer is forced to begin with, the
/// tools the answer may call (null when none are offered), and the pictures in prompt order.
/// </summary>
internal sealed record RenderedChat(string Prompt, string AnswerPrefix, IReadOnlyList<ToolSignature>? CallableTools, List<RgbImage> Pictures)
{
    public bool HasTools => CallableTools is not null;

    /// <summary>tool_choice required or a named function: the answer is calls only.</summary>
    public bool CallsForced => AnswerPrefix.Length > 0;

    /// <summary>Whether the answer continues the final assistant message's text (see <see cref="ChatTurn"/>).</summary>
    public bool ContinuesFinalMessage { get; init; }
}
