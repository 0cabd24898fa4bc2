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
/// themselves, not as a repetition penalty), stop sequences matched across tokens, and the KV cache of the
/// previous turn kept, so a conversation that grows is not read again from the start.
/// </summary>
internal sealed class QwenChatClient(QwenModel model) : IChatClient
{
    private readonly ConversationCache _conversation = new();
    private readonly ChatClientMetadata _metadata = new("qwensharp", null, Path.GetFileName(Path.TrimEndingDirectorySeparator(model.Directory)));

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        await GetStreamingResponseAsync(messages, options, cancellationToken).ToChatResponseAsync(cancellationToken).ConfigureAwait(false);

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        CheckFormatAndTools(options);
        (int[] prompt, Qwen2VL.VisionPrompt? vision) = model.EncodeConversation(messages, options?.Instructions, options?.Tools);
        string responseId = Guid.NewGuid().ToString("N");
        var answer = new StringBuilder();

        // The kept cache is matched on token ids, which cannot tell two pictures apart: a conversation with pictures is read whole.
        ConversationCache? conversation = vision is null ? _conversation : null;
        await foreach (GenerationUpdate update in model.StreamAsync(prompt, OptionsFrom(options), conversation, echoPrompt: false, cancellationToken, vision).ConfigureAwait(false))
        {
            answer.Append(update.Text);
            var chatUpdate = new ChatResponseUpdate(ChatRole.Assistant, update.Text)
            {
                ResponseId = responseId,
                MessageId = responseId,
                ModelId = _metadata.DefaultModelId,
            };
            if (update.IsFinal)
            {
                chatUpdate.FinishReason = update.StopReason == StopReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop;
                if (options?.Tools is { Count: > 0 })
                {
                    // The answer's <tool_call> blocks, as function calls for the caller (or FunctionInvokingChatClient) to run.
                    List<FunctionCallContent> calls = ChatJson.ParseToolCalls(answer.ToString(), responseId);
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
            : serviceType.IsInstanceOfType(model) ? model
            : serviceType.IsInstanceOfType(model.Tokenizer) ? model.Tokenizer
            : serviceType.IsInstanceOfType(model.Model) ? model.Model
            : serviceType.IsInstanceOfType(this) ? this
            : null;
    }

    public void Dispose() => _conversation.Dispose();

    /// <summary>The conversation through the chat template (see <see cref="QwenModel.RenderConversation"/>).</summary>
    internal string Render(IEnumerable<ChatMessage> messages, ChatOptions? options) =>
        model.RenderConversation(messages, options?.Instructions, options?.Tools).Text;

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
        },
        StopSequences = options.StopSequences is { } stops ? [.. stops] : [],
        JsonObject = options.ResponseFormat is ChatResponseFormatJson { Schema: null },
        JsonSchema = (options.ResponseFormat as ChatResponseFormatJson)?.Schema,
    };

    /// <summary>A held answer (ChatResponseFormat.Json) cannot hold a tool call: with tools offered, they could never be called.</summary>
    private static void CheckFormatAndTools(ChatOptions? options)
    {
        if (options?.ResponseFormat is ChatResponseFormatJson && options.Tools is { Count: > 0 } && options.ToolMode is not NoneChatToolMode)
        {
            throw new NotSupportedException("ChatOptions.ResponseFormat JSON with ChatOptions.Tools: a held answer cannot call a tool here; drop one, or set ToolMode = ChatToolMode.None");
        }
    }
}
