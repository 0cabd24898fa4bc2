namespace QwenSharp.Gpu;

/// <summary>How to open the GPU backend.</summary>
public sealed record VulkanBackendOptions
{
    /// <summary>"gpu" (the first discrete GPU, else integrated, else any usable device) or "gpu:N".</summary>
    public string Device { get; init; } = "gpu";

    /// <summary>
    /// Whether a decode step fuses neighbouring operations into fewer dispatches (the norm into the q/k/v and gate/up
    /// products, the residual adds into o_proj and down_proj, the cache store into RoPE). Null: on a GPU, where a small
    /// model's decode waits on launches; off on a CPU implementation (lavapipe), where a launch is cheap and the fused
    /// product's extra loads of x and the norm's weight cost about a third of its time.
    /// </summary>
    public bool? FuseDecode { get; init; }
}
