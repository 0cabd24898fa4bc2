namespace QwenSharp.Gpu;

/// <summary>How to open the GPU backend.</summary>
public sealed record VulkanBackendOptions
{
    /// <summary>"gpu" (the first discrete GPU, else integrated, else any usable device) or "gpu:N".</summary>
    public string Device { get; init; } = "gpu";
}
