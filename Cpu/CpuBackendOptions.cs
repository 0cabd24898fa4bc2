using QwenSharp.Cpu.Kernels;

namespace QwenSharp.Cpu;

/// <summary>How the CPU backend runs.</summary>
public sealed record CpuBackendOptions
{
    /// <summary>Threads for the kernels, the caller's included; default: every core.</summary>
    public int Threads { get; init; } = Environment.ProcessorCount;

    /// <summary>The SIMD path; default: the widest the CPU accelerates, or <c>QWENSHARP_KERNEL_PATH</c>.</summary>
    public KernelPath KernelPath { get; init; } = KernelPaths.Default;
}
