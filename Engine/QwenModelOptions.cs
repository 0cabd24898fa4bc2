namespace QwenSharp;

/// <summary>How to load a model folder.</summary>
public sealed record QwenModelOptions
{
    /// <summary>"cpu", "gpu" (the first discrete GPU, else integrated, else any Vulkan device) or "gpu:N" (see <c>qwensharp devices</c>).</summary>
    public string Device { get; init; } = "cpu";

    /// <summary>A quantized type (Q8_0) to convert the model's matrices to at load; null keeps them as stored.</summary>
    public QwenSharp.Formats.DType? Quantize { get; init; }

    /// <summary>Threads for the CPU kernels; null uses every core.</summary>
    public int? Threads { get; init; }

    /// <summary>
    /// Prompt lookup for every generation of this model, the chat client's too, unless
    /// <see cref="TextGenerationOptions.PromptLookup"/> says otherwise: up to this many guessed tokens a step (1 to
    /// <see cref="Generation.PromptLookup.MaxDraftTokens"/>), checked in the same step; the same tokens as without. Null: off.
    /// </summary>
    public int? PromptLookup { get; init; }
}
