using System.Runtime.Intrinsics.X86;
using QwenSharp.Formats;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Whether 512-bit integer multiplies (vpmaddubsw, vpmaddwd) run at twice the rate of 256-bit ones, so that a kernel bound by
/// them, not by memory, gains from 64-byte products. AMD Zen 5 executes 512-bit instructions on four full-width pipes; Zen 4
/// splits each into two 256-bit halves. Intel's server cores since Sapphire Rapids (AVX-512 with AVX-VNNI) multiply 512-bit
/// vectors on two ports, as they do 256-bit ones: on the 2-core Xeon (Emerald Rapids) the 64-byte kernels streamed 512 MiB
/// of 1536-wide rows from memory, one core, at a higher share of a plain sum for every type (<c>bench stream --wide</c>,
/// alternating): IQ4_XS 72-76% → 83-88%, Q2_K 67-70% → 73-75%, Q3_K 62-66% → 67-69%, Q4_K 86% → 90%, Q5_K 84-86% → 92-94%,
/// Q6_K 88-92% → 96-97%; and from L2 Q6_K 18.2 → 25.5 GB/s, Q4_K 17.7 → 20.5, IQ4_XS 12.3 → 14.4 (an earlier Q6_K kernel had
/// measured the other way there). Intel's AVX-512 cores without AVX-VNNI (Ice Lake, Tiger Lake: one 512-bit multiply port
/// on most) are not counted. Tests set either answer on their own thread, so one machine runs both kernels.
/// </summary>
internal static class VectorUnits
{
    /// <summary>Whether this CPU's 512-bit integer multiplies are twice as fast as its 256-bit ones (see the class).</summary>
    public static bool DoubleRate512 { get; } = Detect();

    /// <summary>Whether the kernels on <paramref name="path"/> take the 64-byte products (the hardware permitting).</summary>
    public static bool Wide(KernelPath path) => HasWideKernels(path) && ThreadOverride<Switch>.Or(DoubleRate512);

    /// <summary>
    /// Whether <paramref name="type"/>'s kernels on <paramref name="path"/> take the 64-byte products: as <see cref="Wide(KernelPath)"/>,
    /// and Q6_K's on Zen 4 as well, whose 32-byte Q6_K kernel, without vpdpbusd there (<see cref="CpuIdentity.IsZen4"/>), is held by
    /// its arithmetic: one core streamed 512 MiB of 1536-wide Q6_K rows at 69-70% of a plain sum with it against 84-91% with the
    /// 64-byte one, while Q4_K's lost that way (74-76% against 63-65%) and Q5_K's measured alike (<c>bench stream --wide</c>,
    /// two alternations, EPYC family 19h model 11h).
    /// </summary>
    public static bool Wide(KernelPath path, DType type) =>
        HasWideKernels(path) && ThreadOverride<Switch>.Or(DoubleRate512 || (type == DType.Q6_K && CpuIdentity.IsZen4));

    private static bool HasWideKernels(KernelPath path) =>
        path == KernelPath.Vector512 && Avx512BW.IsSupported && Avx512DQ.IsSupported && Gfni.V512.IsSupported;

    /// <summary>Until disposed, this thread's kernels take <paramref name="doubleRate"/> as the CPU's answer (for tests).</summary>
    public static ThreadOverride<Switch>.Scope Assume(bool doubleRate) => ThreadOverride<Switch>.Set(doubleRate);

    private static bool Detect() =>
        Avx512BW.IsSupported && ((CpuIdentity.IsAmd && CpuIdentity.Family >= 0x1A) || CpuIdentity.IsIntelAvx512Vnni);

    /// <summary>Names this switch's <see cref="ThreadOverride{TSwitch}"/>.</summary>
    internal readonly struct Switch
    {
    }
}
