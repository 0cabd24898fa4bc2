using Microsoft.Extensions.AI;

namespace QwenSharp;

/// <summary>
/// <see cref="IEmbeddingGenerator{TInput, TEmbedding}"/> over a <see cref="QwenModel"/>: each text encoded as the
/// tokenizer adds special tokens (an embedding model's tokenizer ends it with &lt;|endoftext|&gt;), pooled and
/// normalized as the model ships it; <see cref="EmbeddingGenerationOptions.Dimensions"/> keeps the first values,
/// <c>AdditionalProperties["prompt_name"]</c> names one of the model's prompts, and a <c>ModelId</c> naming one of its LoRA
/// adapters runs that adapter alone.
/// </summary>
internal sealed class QwenEmbeddingGenerator(QwenModel model) : IEmbeddingGenerator<string, Embedding<float>>
{
    private readonly EmbeddingGeneratorMetadata _metadata = new("qwensharp", null,
        Path.GetFileName(Path.TrimEndingDirectorySeparator(model.Directory)), model.Model.EmbeddingDimensions);

    public async Task<GeneratedEmbeddings<Embedding<float>>> GenerateAsync(IEnumerable<string> values, EmbeddingGenerationOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(values);
        string[] texts = [.. values];
        // A named prompt travels in AdditionalProperties["prompt_name"] (gte-Qwen2's "query" for questions, none for passages).
        string? promptName = options?.AdditionalProperties?.TryGetValue("prompt_name", out object? name) == true ? name as string ?? name?.ToString() : null;
        var embedding = new TextEmbeddingOptions { Dimensions = options?.Dimensions, PromptName = promptName, LoraAdapter = model.AdapterNamedBy(options?.ModelId) };
        TextEmbeddings result = await model.EmbedAsync(texts, embedding, cancellationToken).ConfigureAwait(false);
        DateTimeOffset created = DateTimeOffset.UtcNow;
        return new GeneratedEmbeddings<Embedding<float>>(result.Vectors.Select(v => new Embedding<float>(v) { ModelId = _metadata.DefaultModelId, CreatedAt = created }))
        {
            Usage = new UsageDetails { InputTokenCount = result.TokenCount, TotalTokenCount = result.TokenCount },
        };
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null)
        {
            return null;
        }

        return serviceType == typeof(EmbeddingGeneratorMetadata) ? _metadata
            : serviceType.IsInstanceOfType(model) ? model
            : serviceType.IsInstanceOfType(model.Model) ? model.Model
            : serviceType.IsInstanceOfType(this) ? this
            : null;
    }

    /// <summary>The model is the caller's: disposing the generator leaves it loaded.</summary>
    public void Dispose()
    {
    }
}
