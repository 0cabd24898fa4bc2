using QwenSharp.Cpu.Kernels;

namespace QwenSharp.Cpu;

/// <summary>How the CPU backend runs.</summary>
public sealed record CpuBackendOptions
{
    /// <summary>Threads for the kernels, the caller's included; default: every core.</summary>
    public int Threads { get; init; } = Environment.ProcessorCount;

    /// <summary>The SIMD path; default: the widest the CPU accelerates, or <c>QWENSHARP_KERNEL_PATH</c>.</summary>
    public KernelPath KernelPath { get; init; } = KernelPaths.Default;

    /// <summary>
    /// Whether Q4_0 matrices are repacked at load into the integer kernels' panels (<c>Q4_0Panels</c>): the same bytes again
    /// in memory (the stored rows stay for the embedding lookup, in the page cache when memory-mapped), for batches and prompts
    /// that need not unpack every panel at every step. Default: yes, unless <c>QWENSHARP_REPACK_Q4_0</c> is <c>0</c>.
    /// </summary>
    public bool RepackQ4_0 { get; init; } = Environment.GetEnvironmentVariable("QWENSHARP_REPACK_Q4_0") != "0";
}
