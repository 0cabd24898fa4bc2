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
    /// Whether Q4_0 and Q4_K matrices are repacked at load into the integer kernels' panels (<c>NibblePanels</c>): 10% (Q4_K:
    /// 33%) more bytes than they take as stored, in memory besides them (the stored rows stay for decoding one or two
    /// sequences and the embedding lookup), for batches and prompts that then need not unpack every panel at every step.
    /// Default: yes, unless <c>QWENSHARP_REPACK</c> is <c>0</c>.
    /// </summary>
    public bool RepackPanels { get; init; } = Environment.GetEnvironmentVariable("QWENSHARP_REPACK") != "0";
}
