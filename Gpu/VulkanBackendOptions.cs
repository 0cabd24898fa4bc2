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

    /// <summary>
    /// Whether prefill products (of weights of every type, rows of even width) run on the device's matrix units
    /// (VK_KHR_cooperative_matrix, f16 into f32; gemm_coop.comp) where it has them and they pass a check against the f32 GEMM when the backend opens.
    /// Null: on a GPU, off on a CPU implementation, which emulates them (lavapipe's take 3.4 times as long as its f32 GEMM);
    /// the environment variable QWENSHARP_MATRIX_UNITS=off or =on overrides either (for a comparison). True: wherever the
    /// device has them (the tests on lavapipe); false: never.
    /// </summary>
    public bool? MatrixUnits { get; init; }

    /// <summary>
    /// Host threads, the calling one included, that run a step's host work split by sequence
    /// (<see cref="Backend.IBackend.ForEachOnHost"/>: each sequence's token choice, a scan of the vocabulary's logits). Null:
    /// half the cores, at most 8, on a GPU; 1 (one after another) on a CPU implementation (lavapipe), whose own threads
    /// run the steps on the same cores.
    /// </summary>
    public int? HostThreads { get; init; }

    /// <summary>
    /// The most device memory the backend takes as free, for tests of what does not fit (a model too big for the GPU, the
    /// layers that would fit) on a device with plenty; null: what the driver says is free.
    /// </summary>
    internal long? MemoryLimit { get; init; }
}
