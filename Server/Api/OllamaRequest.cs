using System.Text.Json;

namespace QwenSharp.Server.Api;

/// <summary>
/// A request to Ollama's <c>POST /api/chat</c> (or <c>/api/generate</c>) rewritten as the chat completions request it asks
/// for: each message's <c>images</c> (base64) as picture parts, an assistant's <c>tool_calls</c> (arguments an object) and a
/// <c>tool</c> message's result; <c>tools</c> as given (Ollama's are OpenAI's function tools); <c>format</c> "json" or a
/// JSON schema as the response format; <c>stream</c> true unless it says false, as Ollama streams; and <c>options</c>:
/// the samplers (<c>temperature</c>, <c>top_k</c>, <c>top_p</c>, <c>min_p</c>, <c>typical_p</c>, <c>repeat_penalty</c>,
/// <c>presence_penalty</c>, <c>frequency_penalty</c>, <c>seed</c>, <c>mirostat</c>/<c>_tau</c>/<c>_eta</c>), <c>stop</c>
/// and <c>num_predict</c> (-1 and -2: until the context ends). Options about how Ollama runs a model (<c>num_ctx</c>,
/// <c>num_gpu</c>, <c>num_thread</c>, <c>num_batch</c>, <c>use_mmap</c>, ...) and <c>keep_alive</c> have no counterpart
/// here (the context is the server's, the model stays loaded) and are taken and left; <c>think</c> is refused, as Ollama
/// refuses it for a model without thinking. Every error names the Ollama field.
/// </summary>
internal static class OllamaRequest
{
    private static readonly HashSet<string> s_chatFields = ["model", "messages", "tools", "format", "options", "stream", "keep_alive", "think", "logprobs", "top_logprobs"];
    private static readonly HashSet<string> s_generateFields = ["model", "prompt", "suffix", "system", "images", "format", "options", "stream", "keep_alive", "think", "raw", "template", "context", "logprobs", "top_logprobs"];
    private static readonly HashSet<string> s_messageFields = ["role", "content", "images", "tool_calls", "tool_name", "thinking"];
    private static readonly HashSet<string> s_callFields = ["function", "id", "type"];
    private static readonly HashSet<string> s_functionFields = ["name", "arguments", "index"];

    /// <summary>Ollama's options that become the chat request's fields of the same meaning.</summary>
    private static readonly Dictionary<string, string> s_samplers = new(StringComparer.Ordinal)
    {
        ["temperature"] = "temperature", ["top_k"] = "top_k", ["top_p"] = "top_p", ["min_p"] = "min_p", ["typical_p"] = "typical_p",
        ["repeat_penalty"] = "repetition_penalty", ["presence_penalty"] = "presence_penalty", ["frequency_penalty"] = "frequency_penalty",
        ["seed"] = "seed", ["mirostat"] = "mirostat", ["mirostat_tau"] = "mirostat_tau", ["mirostat_eta"] = "mirostat_eta", ["stop"] = "stop",
    };

    /// <summary>Ollama's options about running the model, which the server decides: taken and left.</summary>
    private static readonly HashSet<string> s_runtimeOptions =
    [
        "num_ctx", "num_keep", "num_batch", "num_gpu", "main_gpu", "use_mmap", "use_mlock", "num_thread", "numa", "low_vram", "f16_kv",
        "vocab_only", "logits_all", "embedding_only", "penalize_newline", "tfs_z",
    ];

    private static readonly HashSet<string> s_options = [.. s_samplers.Keys, .. s_runtimeOptions, "num_predict", "repeat_last_n"];

    /// <summary>The chat completions request for an <c>/api/chat</c> body.</summary>
    public static JsonDocument ChatToChat(JsonElement body)
    {
        RequestFields request = Fields(body, s_chatFields);
        return ChatMessageDraft.Request(w =>
        {
            WriteCommon(request, w);
            var messages = new List<ChatMessageDraft>();
            JsonElement list = request.Get("messages") ?? throw ApiException.BadField("messages", "'messages' is required: the conversation");
            if (list.ValueKind != JsonValueKind.Array || list.GetArrayLength() == 0)
            {
                throw ApiException.BadField("messages", $"'messages' must be a non-empty list of messages, not {(list.ValueKind == JsonValueKind.Array ? "an empty list" : RequestFields.Kind(list))}");
            }

            int i = 0;
            foreach (JsonElement item in list.EnumerateArray())
            {
                messages.Add(Message(item, $"messages[{i++}]"));
            }

            ChatMessageDraft.WriteMessages(w, messages);
            if (messages[^1].Role == "assistant")
            {
                // Ollama continues a final assistant message (its content is the answer's start).
                w.WriteBoolean("continue_final_message", true);
            }

            ChatMessageDraft.Copy(request, w, "tools", "tools");
        });
    }

    /// <summary>
    /// The chat completions request for an <c>/api/generate</c> body: its <c>system</c> and <c>prompt</c> (with its
    /// <c>images</c>) as a chat of two messages through the model's template, as Ollama renders them. A <c>raw</c> or
    /// <c>suffix</c> generation is <see cref="RawGeneration"/>'s; <c>template</c> and <c>context</c> are refused naming
    /// what to send instead.
    /// </summary>
    public static JsonDocument GenerateToChat(JsonElement body)
    {
        RequestFields request = Fields(body, s_generateFields);
        RefuseTemplateAndContext(request);
        return ChatMessageDraft.Request(w =>
        {
            WriteCommon(request, w);
            var messages = new List<ChatMessageDraft>();
            if (request.String("system") is string system)
            {
                var message = new ChatMessageDraft("system");
                message.Parts.Add(("text", system));
                messages.Add(message);
            }

            var user = new ChatMessageDraft("user");
            AddImages(user, request, "images");
            user.Parts.Add(("text", request.String("prompt") ?? ""));
            messages.Add(user);
            ChatMessageDraft.WriteMessages(w, messages);
        });
    }

    /// <summary>
    /// "load" (or "unload", with <c>keep_alive</c> 0) for a request that asks for nothing but the model (a chat without
    /// messages, a generation without a prompt, system or images): Ollama's way to load a model ahead, or let it go, which
    /// it answers at once; this server's model is always loaded. Null for a request that asks for an answer.
    /// </summary>
    public static string? OnlyLoads(JsonElement body, bool chat)
    {
        if (body.ValueKind != JsonValueKind.Object)
        {
            return null;
        }

        bool Empty(string field) => !body.TryGetProperty(field, out JsonElement value) || value.ValueKind == JsonValueKind.Null
            || (value.ValueKind == JsonValueKind.Array && value.GetArrayLength() == 0) || (value.ValueKind == JsonValueKind.String && value.GetString()!.Length == 0);
        bool nothing = chat ? Empty("messages") : Empty("prompt") && Empty("system") && Empty("images") && Empty("suffix");
        if (!nothing)
        {
            return null;
        }

        bool unload = body.TryGetProperty("keep_alive", out JsonElement keep) && keep.ValueKind switch
        {
            JsonValueKind.Number => keep.GetDouble() == 0,
            JsonValueKind.String => keep.GetString() is "0" or "0s" or "0m",
            _ => false,
        };
        return unload ? "unload" : "load";
    }

    /// <summary>Whether an <c>/api/generate</c> body asks for its prompt as it is (<c>raw</c>) or for fill in the middle (a <c>suffix</c>).</summary>
    public static bool IsRaw(JsonElement body) =>
        (body.TryGetProperty("raw", out JsonElement raw) && raw.ValueKind == JsonValueKind.True)
        || (body.TryGetProperty("suffix", out JsonElement suffix) && suffix.ValueKind == JsonValueKind.String && suffix.GetString()!.Length > 0);

    /// <summary>
    /// A raw or fill-in-the-middle <c>/api/generate</c> body's sampling, format and limit as chat completions fields, and
    /// its <c>prompt</c> and <c>suffix</c> (the code before and after the gap): the prompt goes to the model as it is, or
    /// with the suffix in the model's fill-in-the-middle form (Qwen2.5-Coder's), as Ollama's <c>suffix</c> asks.
    /// <c>system</c> and <c>images</c> go through a chat template, which a raw prompt has not: refused.
    /// </summary>
    public static (JsonDocument Fields, string Prompt, string? Suffix) RawGeneration(JsonElement body)
    {
        RequestFields request = Fields(body, s_generateFields);
        RefuseTemplateAndContext(request);
        foreach (string field in new[] { "system", "images" })
        {
            if (request.Get(field) is JsonElement given && given.ValueKind != JsonValueKind.Null)
            {
                throw ApiException.BadField(field, $"'{field}' goes through the chat template, and a raw or fill-in-the-middle prompt goes to the model as it is");
            }
        }

        string? suffix = request.String("suffix");
        JsonDocument fields = ChatMessageDraft.Request(w => WriteCommon(request, w));
        return (fields, request.String("prompt") ?? "", string.IsNullOrEmpty(suffix) ? null : suffix);
    }

    /// <summary>
    /// Ollama's log-probs (since 0.12.11): <c>logprobs</c> asks for each new token's, <c>top_logprobs</c> (0-20) for that
    /// many of the likeliest at each step besides; as in Ollama, <c>top_logprobs</c> alone gives none.
    /// </summary>
    private static void WriteLogprobs(RequestFields request, Utf8JsonWriter w)
    {
        if (Logprobs(request) is int top)
        {
            w.WriteBoolean("logprobs", true);
            w.WriteNumber("top_logprobs", top);
        }
    }

    /// <summary>
    /// The alternatives a step <paramref name="request"/> asks log-probs for (0: only the chosen token's), or null where it
    /// asks none; <c>top_logprobs</c> is checked either way. Read from Ollama's request and from the one
    /// <see cref="RawGeneration"/> writes of it.
    /// </summary>
    public static int? Logprobs(RequestFields request)
    {
        bool asked = request.Bool("logprobs") ?? false;
        int top = request.Int("top_logprobs", 0, 20) ?? 0;
        return asked ? top : null;
    }

    private static void RefuseTemplateAndContext(RequestFields request)
    {
        if (request.Get("template") is JsonElement template && template.ValueKind == JsonValueKind.String && template.GetString()!.Length > 0)
        {
            throw ApiException.BadField("template", "'template' is not supported: the model's own chat template is the one applied (or send 'raw': true and the prompt as the model reads it)");
        }

        if (request.Get("context") is JsonElement context && context.ValueKind == JsonValueKind.Array && context.GetArrayLength() > 0)
        {
            throw ApiException.BadField("context", "'context' (deprecated in Ollama) is not kept: send the conversation to /api/chat");
        }
    }

    /// <summary>
    /// A request's top-level fields, those Ollama does not know taken and left as Ollama's server leaves them: its clients
    /// send some of their own (OllamaSharp sends its <c>CustomHeaders</c>), and Ollama answers them. Within the fields
    /// (messages, options), every name is checked.
    /// </summary>
    public static RequestFields Fields(JsonElement body, IReadOnlySet<string> known) =>
        RequestFields.Of(body, "", body.ValueKind == JsonValueKind.Object ? new HashSet<string>([.. known, .. body.EnumerateObject().Select(p => p.Name)], StringComparer.Ordinal) : known);

    /// <summary>The request's model as the chat and embeddings requests name it: Ollama's names carry a tag, this server's model none (":latest" is what /api/tags lists).</summary>
    public static void WriteModel(RequestFields request, Utf8JsonWriter w)
    {
        if (request.String("model", 256) is string model)
        {
            w.WriteString("model", model.EndsWith(":latest", StringComparison.Ordinal) ? model[..^":latest".Length] : model);
        }
    }

    /// <summary>The model, stream, think, keep_alive, format and options, as the chat request's fields.</summary>
    private static void WriteCommon(RequestFields request, Utf8JsonWriter w)
    {
        WriteModel(request, w);

        w.WriteBoolean("stream", request.Bool("stream") ?? true);
        WriteLogprobs(request, w);

        if (request.Get("think") is JsonElement think && think.ValueKind is not (JsonValueKind.False or JsonValueKind.Null))
        {
            throw ApiException.BadField("think", "'think': the model does not support thinking (Qwen2 has no thinking mode)");
        }

        if (request.Get("keep_alive") is JsonElement keep && keep.ValueKind is not (JsonValueKind.String or JsonValueKind.Number or JsonValueKind.Null))
        {
            throw ApiException.BadField("keep_alive", $"'keep_alive' must be a duration (\"5m\") or a number of seconds, not {RequestFields.Kind(keep)}");
        }

        WriteFormat(request, w);
        WriteOptions(request, w);
    }

    private static void WriteFormat(RequestFields request, Utf8JsonWriter w)
    {
        switch (request.Get("format"))
        {
            case null:
            case { ValueKind: JsonValueKind.Null }:
            case { ValueKind: JsonValueKind.String } empty when empty.GetString() == "":
                return;
            case { ValueKind: JsonValueKind.String } json when json.GetString() == "json":
                w.WriteStartObject("response_format");
                w.WriteString("type", "json_object");
                w.WriteEndObject();
                return;
            case { ValueKind: JsonValueKind.Object } schema:
                w.WriteStartObject("response_format");
                w.WriteString("type", "json_schema");
                w.WriteStartObject("json_schema");
                w.WriteString("name", "format");
                w.WritePropertyName("schema");
                schema.WriteTo(w);
                w.WriteEndObject();
                w.WriteEndObject();
                return;
            case JsonElement other:
                throw ApiException.BadField("format", $"'format' is {RequestFields.Show(other)}; it is \"json\" or a JSON schema");
        }
    }

    private static void WriteOptions(RequestFields request, Utf8JsonWriter w)
    {
        if (request.Get("options") is not JsonElement value || value.ValueKind == JsonValueKind.Null)
        {
            return;
        }

        RequestFields options = RequestFields.Of(value, "options", s_options);
        foreach ((string ollama, string chat) in s_samplers)
        {
            if (options.Get(ollama) is JsonElement given && given.ValueKind != JsonValueKind.Null)
            {
                w.WritePropertyName(chat);
                given.WriteTo(w);
            }
        }

        if (options.Int("num_predict", -2, int.MaxValue) is int predict and not (-1 or -2))
        {
            if (predict == 0)
            {
                throw ApiException.BadField("options.num_predict", "'options.num_predict' is 0: at least one token, or -1 for as many as the context holds");
            }

            w.WriteNumber("max_tokens", predict);
        }

        if (options.Int("repeat_last_n", -1, int.MaxValue) is int window and not -1 && options.Get("repeat_penalty") is JsonElement penalty
            && !(penalty.ValueKind == JsonValueKind.Number && penalty.GetDouble() == 1))
        {
            throw ApiException.BadField("options.repeat_last_n", $"'options.repeat_last_n' is {window}: this server's repeat penalty counts every token of the context (-1)");
        }

        foreach (string runtime in s_runtimeOptions)
        {
            if (options.Get(runtime) is JsonElement given && given.ValueKind is not (JsonValueKind.Number or JsonValueKind.True or JsonValueKind.False or JsonValueKind.Null))
            {
                throw ApiException.BadField($"options.{runtime}", $"'options.{runtime}' must be a number or a boolean, not {RequestFields.Kind(given)}");
            }
        }
    }

    private static ChatMessageDraft Message(JsonElement item, string path)
    {
        RequestFields fields = RequestFields.Of(item, path, s_messageFields);
        string role = fields.String("role", 16) ?? throw ApiException.BadField($"{path}.role", $"'{path}.role' is required: system, user, assistant or tool");
        if (role is not ("system" or "user" or "assistant" or "tool"))
        {
            throw ApiException.BadField($"{path}.role", $"'{path}.role' is '{role}'; it is system, user, assistant or tool");
        }

        if (fields.Get("thinking") is JsonElement thinking && thinking.ValueKind == JsonValueKind.String && thinking.GetString()!.Length > 0)
        {
            throw ApiException.BadField($"{path}.thinking", $"'{path}.thinking': the model does not think before it answers, and none of its answers hold thinking");
        }

        fields.String("tool_name", 256);
        var message = new ChatMessageDraft(role);
        AddImages(message, fields, $"{path}.images");
        message.Parts.Add(("text", fields.String("content") ?? ""));
        if (fields.Get("tool_calls") is JsonElement calls && calls.ValueKind != JsonValueKind.Null)
        {
            if (role != "assistant" || calls.ValueKind != JsonValueKind.Array)
            {
                throw ApiException.BadField($"{path}.tool_calls", role != "assistant"
                    ? $"'{path}.tool_calls': only an assistant's message holds tool calls"
                    : $"'{path}.tool_calls' must be a list of calls, not {RequestFields.Kind(calls)}");
            }

            int c = 0;
            foreach (JsonElement call in calls.EnumerateArray())
            {
                string where = $"{path}.tool_calls[{c}]";
                RequestFields callFields = RequestFields.Of(call, where, s_callFields);
                JsonElement function = callFields.Get("function") ?? throw ApiException.BadField($"{where}.function", $"'{where}.function' is required");
                RequestFields functionFields = RequestFields.Of(function, $"{where}.function", s_functionFields);
                JsonElement arguments = functionFields.Get("arguments") ?? throw ApiException.BadField($"{where}.function.arguments", $"'{where}.function.arguments' is required");
                string json = arguments.ValueKind switch
                {
                    JsonValueKind.Object => arguments.GetRawText(),
                    JsonValueKind.String => arguments.GetString()!,
                    _ => throw ApiException.BadField($"{where}.function.arguments", $"'{where}.function.arguments' must be an object of arguments, not {RequestFields.Kind(arguments)}"),
                };
                message.Calls.Add((callFields.String("id", 256) ?? $"call_{c}", functionFields.Required("name"), json));
                c++;
            }
        }

        return message;
    }

    /// <summary>A list of base64 pictures as picture parts (data: URLs, their type read from their first bytes).</summary>
    private static void AddImages(ChatMessageDraft message, RequestFields fields, string path)
    {
        string name = path[(path.LastIndexOf('.') + 1)..];
        if (fields.Get(name) is not JsonElement images || images.ValueKind == JsonValueKind.Null)
        {
            return;
        }

        if (images.ValueKind != JsonValueKind.Array)
        {
            throw ApiException.BadField(path, $"'{path}' must be a list of base64 pictures, not {RequestFields.Kind(images)}");
        }

        int i = 0;
        foreach (JsonElement image in images.EnumerateArray())
        {
            string data = image.ValueKind == JsonValueKind.String ? image.GetString()! : throw ApiException.BadField($"{path}[{i}]", $"'{path}[{i}]' must be a base64 picture, not {RequestFields.Kind(image)}");
            string type = data.StartsWith("/9j/", StringComparison.Ordinal) ? "jpeg" : data.StartsWith("R0lGOD", StringComparison.Ordinal) ? "gif"
                : data.StartsWith("UklGR", StringComparison.Ordinal) ? "webp" : data.StartsWith("Qk", StringComparison.Ordinal) ? "bmp" : "png";
            message.Parts.Add(("image_url", $"data:image/{type};base64,{data}"));
            i++;
        }
    }
}
