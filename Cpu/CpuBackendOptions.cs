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
    /// Whether Q4_0, Q4_K and (on a CPU with vpdpbusd) Q8_0 matrices are repacked at load into the integer kernels' panels
    /// (<c>NibblePanels</c>, <c>Q8_0Panels</c>): 10% (Q4_K: 33%, Q8_0: 6%) more bytes than they take as stored, in memory besides
    /// them (the stored rows stay for decoding one sequence, except Q4_0 on AMD Zen and Zen+, and for the embedding lookup), for batches, prompt lookup and prompts
    /// that then need not unpack every panel at every step. Default: yes, unless <c>QWENSHARP_REPACK</c> is <c>0</c>.
    /// </summary>
    public bool RepackPanels { get; init; } = Environment.GetEnvironmentVariable("QWENSHARP_REPACK") != "0";

    /// <summary>
    /// Whether every step of up to 7 rows gives each row the bits a step of that row alone gives it: a decode step of up to 7
    /// sequences, and prompt lookup's steps, whose tokens are then exactly those of decoding one token at a time. Such steps
    /// then multiply repacked matrices (Q8_0, Q4_0, Q4_K) through their stored rows, not their panels, whose sums differ in the
    /// last bits; on Qwen2.5-0.5B's shape in Q8_0 that made 4 sequences decode 87 tokens/s in all instead of 175-190 on one
    /// Zen 5 core, and prompt lookup 80 instead of 139-144. Steps of more rows (prompts, 8 or more sequences) are not covered.
    /// Default: no.
    /// </summary>
    public bool BatchInvariant { get; init; }
}
