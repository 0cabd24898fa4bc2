using System.Runtime.CompilerServices;
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
        int[] prompt = model.Tokenizer.Encode(Render(messages, options));
        string responseId = Guid.NewGuid().ToString("N");
        await foreach (GenerationUpdate update in model.StreamAsync(prompt, OptionsFrom(options), _conversation, echoPrompt: false, cancellationToken).ConfigureAwait(false))
        {
            var chatUpdate = new ChatResponseUpdate(ChatRole.Assistant, update.Text)
            {
                ResponseId = responseId,
                MessageId = responseId,
                ModelId = _metadata.DefaultModelId,
            };
            if (update.IsFinal)
            {
                chatUpdate.FinishReason = update.StopReason == StopReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop;
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

    /// <summary>The conversation through the chat template, with ChatOptions.Instructions as a system message when there is none.</summary>
    private string Render(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        List<(string Role, string Content)> turns = [.. messages.Select(m => (m.Role.Value, m.Text))];
        if (options?.Instructions is string instructions && !turns.Any(t => t.Role == "system"))
        {
            turns.Insert(0, ("system", instructions));
        }

        return model.Tokenizer.ApplyChatTemplate(turns, addGenerationPrompt: true);
    }

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
    };
}
