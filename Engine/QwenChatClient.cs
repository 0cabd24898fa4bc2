using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;
using QwenSharp.Generation;
using QwenSharp.Sampling;

namespace QwenSharp;

/// <summary>
/// <see cref="IChatClient"/> over a <see cref="QwenModel"/>: messages rendered with the model's chat
/// template, ChatOptions mapped to the same-named sampling settings (frequency and presence penalties as
/// themselves, not as a repetition penalty), stop sequences matched across tokens, held answers in
/// AdditionalProperties (grammar, regex, choices; the samplers' settings by the server's field names: min_p, typical_p,
/// mirostat, dry_multiplier, ...), and the KV cache of the previous turn kept, so a conversation that
/// grows is not read again from the start. That cache can be kept in a file and read back by a later run
/// (<see cref="SaveConversationAsync"/>, <see cref="LoadConversationAsync"/>): reach the client through
/// <c>chatClient.GetService&lt;QwenChatClient&gt;()</c>, which also finds it inside a ChatClientBuilder pipeline.
/// </summary>
public sealed class QwenChatClient : IChatClient
{
    private readonly QwenModel _model;
    private readonly ConversationCache _conversation = new();
    private readonly ChatClientMetadata _metadata;

    internal QwenChatClient(QwenModel model)
    {
        _model = model;
        _metadata = new("qwensharp", null, Path.GetFileName(Path.TrimEndingDirectorySeparator(model.Directory)));
    }

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        await GetStreamingResponseAsync(messages, options, cancellationToken).ToChatResponseAsync(cancellationToken).ConfigureAwait(false);

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        IList<AITool>? tools = OfferedTools(options);
        List<ChatMessage> conversationSoFar = [.. messages];
        bool? continueFinalMessage = ContinuesFinalMessage(conversationSoFar, options);
        (int[] prompt, Qwen2VL.VisionPrompt? vision) = _model.EncodeConversation(conversationSoFar, options?.Instructions, tools, continueFinalMessage);
        string responseId = Guid.NewGuid().ToString("N");
        var answer = new StringBuilder();

        // The kept cache is matched on token ids, which cannot tell two pictures apart: a conversation with pictures is read whole.
        ConversationCache? conversation = vision is null ? _conversation : null;
        int shown = 0;
        string? adapter = _model.AdapterNamedBy(options?.ModelId);
        TextGenerationOptions generation = OptionsFrom(options) with { HeldCalls = HeldCalls(tools, options), LoraAdapter = adapter };
        await foreach (GenerationUpdate update in _model.StreamAsync(prompt, generation, conversation, echoPrompt: false, cancellationToken, vision).ConfigureAwait(false))
        {
            // With tools, text from a <tool_call> on is held back: its calls become function calls at the end, not text
            // (which FunctionInvokingChatClient would send back beside them, so that the next prompt held each call twice).
            // Without tools, each update's text goes out as it comes, and the answer is not read again.
            List<ToolCallBlock> blocks = [];
            string visible = update.Text;
            if (tools is not null)
            {
                answer.Append(update.Text);
                string text = answer.ToString();
                blocks = update.IsFinal ? ChatJson.ToolCallBlocks(text) : [];
                visible = update.IsFinal ? ChatJson.WithoutToolCalls(text, blocks, shown) : text[shown..Math.Max(shown, ChatJson.ReleasableLength(text))];
                shown += visible.Length;
            }

            var chatUpdate = new ChatResponseUpdate(ChatRole.Assistant, visible)
            {
                ResponseId = responseId,
                MessageId = responseId,
                ModelId = adapter ?? _metadata.DefaultModelId,
            };
            if (update.IsFinal)
            {
                chatUpdate.FinishReason = update.StopReason == StopReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop;
                if (tools is not null)
                {
                    // The answer's <tool_call> blocks, as function calls for the caller (or FunctionInvokingChatClient) to run.
                    List<FunctionCallContent> calls = ChatJson.FunctionCalls(blocks, responseId);
                    foreach (FunctionCallContent call in calls)
                    {
                        chatUpdate.Contents.Add(call);
                    }

                    chatUpdate.FinishReason = calls.Count > 0 ? ChatFinishReason.ToolCalls : chatUpdate.FinishReason;
                }

                chatUpdate.Contents.Add(new UsageContent(new UsageDetails
                {
                    InputTokenCount = update.PromptTokens,
                    CachedInputTokenCount = update.PromptTokens - update.PromptTokensRead,
                    OutputTokenCount = update.GeneratedTokens,
                    TotalTokenCount = update.PromptTokens + update.GeneratedTokens,
                }));
            }

            yield return chatUpdate;
        }
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null)
        {
            return null;
        }

        return serviceType == typeof(ChatClientMetadata) ? _metadata
            : serviceType.IsInstanceOfType(_model) ? _model
            : serviceType.IsInstanceOfType(_model.Tokenizer) ? _model.Tokenizer
            : serviceType.IsInstanceOfType(_model.Model) ? _model.Model
            : serviceType.IsInstanceOfType(this) ? this
            : null;
    }

    /// <summary>
    /// Writes the conversation this client holds (the tokens its last answer left in the KV cache, and their keys and
    /// values) to a new file at <paramref name="path"/>, so that a later run with the same model reads only what is new:
    /// a long system prompt or document computed once. The file is llama-server's slot file as QwenSharp writes it
    /// (<c>POST /slots/ID?action=save</c> writes the same). A file there already is replaced only when it is such a file;
    /// any other is left as it is (a <see cref="Backend.SlotFile.OtherFileException"/>, an <see cref="IOException"/>). Returns the bytes written.
    /// </summary>
    public Task<long> SaveConversationAsync(string path, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return _model.SaveConversationAsync(_conversation, path, cancellationToken);
    }

    /// <summary>
    /// Reads a conversation saved by <see cref="SaveConversationAsync"/> (or a server's slot save) into this client: the
    /// next request whose conversation starts the same way reads only the rest. The file is checked whole first (the
    /// model's shape, the KV cache type, its length) and its last position is computed again and compared, so a file of
    /// another model is refused (an <see cref="InvalidDataException"/> naming the file) and the client holds nothing.
    /// Returns the positions restored.
    /// </summary>
    public Task<int> LoadConversationAsync(string path, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return _model.LoadConversationAsync(_conversation, path, cancellationToken);
    }

    public void Dispose() => _conversation.Dispose();

    /// <summary>The conversation through the chat template (see <see cref="QwenModel.RenderConversation"/>).</summary>
    internal string Render(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        List<ChatMessage> conversation = [.. messages];
        return _model.RenderConversation(conversation, options?.Instructions, OfferedTools(options), ContinuesFinalMessage(conversation, options)).Text;
    }

    /// <summary>
    /// <c>AdditionalProperties["continue_final_message"]</c> (vLLM's field: true or false), or null, where a final assistant
    /// message is continued (assistant prefill). A continued answer cannot also be held to a forced call or a format,
    /// which would hold it from its first token: refused naming the option.
    /// </summary>
    private static bool? ContinuesFinalMessage(List<ChatMessage> messages, ChatOptions? options)
    {
        object? value = null;
        options?.AdditionalProperties?.TryGetValue("continue_final_message", out value);
        bool? given = value switch
        {
            null => null,
            bool flag => flag,
            System.Text.Json.JsonElement { ValueKind: System.Text.Json.JsonValueKind.True or System.Text.Json.JsonValueKind.False } json => json.GetBoolean(),
            _ => throw new ArgumentException($"ChatOptions.AdditionalProperties[\"continue_final_message\"] must be true or false, not {value.GetType().Name}", nameof(options)),
        };
        if ((given ?? (messages.Count > 0 && messages[^1].Role == ChatRole.Assistant)) && options is not null)
        {
            string? held = options.ToolMode is RequiredChatToolMode && options.Tools is { Count: > 0 } ? "ChatOptions.ToolMode (a required call)"
                : options.ResponseFormat is ChatResponseFormatJson ? "ChatOptions.ResponseFormat"
                : ((string[])["grammar", "regex", "choices"]).FirstOrDefault(k => options.AdditionalProperties?.ContainsKey(k) == true) is string key ? $"ChatOptions.AdditionalProperties[\"{key}\"]"
                : null;
            if (held is not null)
            {
                throw new ArgumentException($"{held} holds the answer from its first token, and the answer continues the conversation's final assistant message; give one (or AdditionalProperties[\"continue_final_message\"] = false)", nameof(options));
            }
        }

        return given;
    }

    /// <summary>The tools the prompt offers: none with <see cref="ChatToolMode.None"/>, as the server leaves them out for tool_choice none.</summary>
    private static IList<AITool>? OfferedTools(ChatOptions? options) =>
        options?.ToolMode is NoneChatToolMode || options?.Tools is not { Count: > 0 } ? null : options.Tools;

    /// <summary>ChatOptions as generation options; what they leave out comes from generation_config.json.</summary>
    private static TextGenerationOptions OptionsFrom(ChatOptions? options) => options is null ? new TextGenerationOptions() : new TextGenerationOptions
    {
        MaxNewTokens = options.MaxOutputTokens,
        Sampling = new SamplingOverrides
        {
            Temperature = options.Temperature,
            TopP = options.TopP,
            TopK = options.TopK,
            PresencePenalty = options.PresencePenalty,
            FrequencyPenalty = options.FrequencyPenalty,
            Seed = options.Seed is long seed ? unchecked((ulong)seed) : null,
            MinP = Number(options, "min_p"),
            RepetitionPenalty = Number(options, "repetition_penalty"),
            TypicalP = Number(options, "typical_p"),
            TopNSigma = Number(options, "top_n_sigma"),
            XtcProbability = Number(options, "xtc_probability"),
            XtcThreshold = Number(options, "xtc_threshold"),
            Mirostat = WholeNumber(options, "mirostat"),
            MirostatTau = Number(options, "mirostat_tau"),
            MirostatEta = Number(options, "mirostat_eta"),
            DynamicTemperatureRange = Number(options, "dynatemp_range"),
            DynamicTemperatureExponent = Number(options, "dynatemp_exponent"),
            DryMultiplier = Number(options, "dry_multiplier"),
            DryBase = Number(options, "dry_base"),
            DryAllowedLength = WholeNumber(options, "dry_allowed_length"),
            DryPenaltyLastN = WholeNumber(options, "dry_penalty_last_n"),
            DrySequenceBreakers = Extra<IEnumerable<string>>(options, "dry_sequence_breakers") is { } breakers ? [.. breakers] : null,
        },
        StopSequences = options.StopSequences is { } stops ? [.. stops] : [],
        JsonObject = options.ResponseFormat is ChatResponseFormatJson { Schema: null },
        JsonSchema = (options.ResponseFormat as ChatResponseFormatJson)?.Schema,
        Grammar = Extra<string>(options, "grammar"),
        Regex = Extra<string>(options, "regex"),
        Choices = Extra<IEnumerable<string>>(options, "choices") is { } choices ? [.. choices] : null,
    };

    /// <summary>
    /// The held answers that have no ChatOptions property, by the names the server takes (vLLM's guided_*, llama-server's
    /// grammar): <c>AdditionalProperties["grammar"]</c> (GBNF), <c>["regex"]</c> and <c>["choices"]</c> (texts). A value of
    /// another type is refused naming the key.
    /// </summary>
    private static T? Extra<T>(ChatOptions options, string key)
        where T : class
    {
        if (options.AdditionalProperties is null || !options.AdditionalProperties.TryGetValue(key, out object? value) || value is null)
        {
            return null;
        }

        return value as T ?? throw new ArgumentException($"ChatOptions.AdditionalProperties[\"{key}\"] must be {(typeof(T) == typeof(string) ? "a string" : "a list of strings")}, not {value.GetType().Name}", nameof(options));
    }

    /// <summary>
    /// A sampling setting that has no ChatOptions property, by the name the server's field has (llama-server's and vLLM's:
    /// <c>min_p</c>, <c>typical_p</c>, <c>mirostat</c>, <c>dry_multiplier</c>, ...): a number of any .NET type or a JSON
    /// number (as deserialized options hold it); anything else is refused naming the key.
    /// </summary>
    private static double? Number(ChatOptions options, string key)
    {
        if (options.AdditionalProperties is null || !options.AdditionalProperties.TryGetValue(key, out object? value) || value is null)
        {
            return null;
        }

        return value switch
        {
            System.Text.Json.JsonElement { ValueKind: System.Text.Json.JsonValueKind.Number } json => json.GetDouble(),
            double or float or int or long or short or decimal or uint or ulong or byte => Convert.ToDouble(value, System.Globalization.CultureInfo.InvariantCulture),
            _ => throw new ArgumentException($"ChatOptions.AdditionalProperties[\"{key}\"] must be a number, not {value.GetType().Name}", nameof(options)),
        };
    }

    /// <summary>As <see cref="Number"/>, for a setting that is a count: a fraction is refused naming the key.</summary>
    private static int? WholeNumber(ChatOptions options, string key) => Number(options, key) switch
    {
        null => null,
        double whole when whole == Math.Floor(whole) && Math.Abs(whole) <= int.MaxValue => (int)whole,
        double other => throw new ArgumentException($"ChatOptions.AdditionalProperties[\"{key}\"] must be a whole number, not {other}", nameof(options)),
    };

    /// <summary>
    /// The answer's tool calls held to the tools (<see cref="ConstrainedOutput.ToolCalls"/>): calls only for
    /// <see cref="ChatToolMode.RequireAny"/> (and only to the one <see cref="ChatToolMode.RequireSpecific"/> names), else from
    /// the moment the model opens one, or with <see cref="ChatOptions.ResponseFormat"/> JSON, calls or an answer in that
    /// format. Several calls in one answer unless <see cref="ChatOptions.AllowMultipleToolCalls"/> is false.
    /// </summary>
    private Func<ITokenConstraint>? HeldCalls(IList<AITool>? tools, ChatOptions? options)
    {
        if (tools is null || options is null)
        {
            return null;
        }

        if (((string[])["grammar", "regex", "choices"]).FirstOrDefault(k => options.AdditionalProperties?.ContainsKey(k) == true) is string plain)
        {
            throw new ArgumentException($"ChatOptions.AdditionalProperties[\"{plain}\"] with ChatOptions.Tools: the answer would be calls or plain text; give one", nameof(options));
        }

        List<ToolSignature> signatures = [.. tools.OfType<AIFunctionDeclaration>()
            .Select((f, i) => new ToolSignature(f.Name, f.JsonSchema, Strict: false, $"ChatOptions.Tools[{i}]"))];
        string? forced = options.ToolMode is RequiredChatToolMode ? "" : null;
        if (options.ToolMode is RequiredChatToolMode { RequiredFunctionName: string name })
        {
            ToolSignature named = signatures.FirstOrDefault(s => s.Name == name)
                ?? throw new ArgumentException($"ChatOptions.ToolMode requires the function '{name}', which is not one of ChatOptions.Tools ({string.Join(", ", signatures.Select(s => s.Name))})", nameof(options));
            signatures = [named];
        }

        // With a response format the answer is calls or an answer in that format (GetResponseAsync<T> beside tools).
        JsonElement? answer = options.ResponseFormat is ChatResponseFormatJson json ? json.Schema ?? ConstrainedOutput.AnyObjectSchema : null;
        return _model.Constrained.ToolCalls(signatures, options.AllowMultipleToolCalls ?? true, forced, answer);
    }
}
