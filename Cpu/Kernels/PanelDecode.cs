using System.Runtime.Intrinsics.X86;
using QwenSharp.Formats;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Whether one token's product with a repacked Q4_0 matrix (a decode step of one sequence) reads the matrix's panels
/// (<see cref="NibblePanels"/>) rather than its stored rows (<see cref="Q8IntegerKernel"/>). The panels are 20 bytes per 32
/// weights against the rows' 18, but a panel's sixteen rows share each activation load, and with vpmaddubsw a sub-block's
/// sixteen 16-bit pair sums add up before one vpmaddwd widens them (<see cref="NibblePairSums"/>), where a stored row pays
/// a vpmaddwd, a conversion and two float operations for every block. Where the integer units, not memory, bound decode
/// that wins: on AMD Zen and Zen+ (family 17h below model 30h), whose 256-bit operations each run as two 128-bit halves and
/// whose vector integer multiplies issue on one pipe, both engines read Q4_0 rows at a third of the read bandwidth (ours and
/// llama.cpp's alike, see bench/results/amd-epyc-zen1-2core-avx2). There, the Q4_0 Qwen2.5-0.5B decoded 14.6-15.4 tokens/s
/// on one thread from the rows and 24.0-25.2 from the panels, 25.6-26.6 and 40.6-44.2 on two (alternating runs, 2-vCPU
/// EPYC). Q4_K's panels are 24 bytes per 32 weights against 18 and gained nothing there (1.5B Q4_K_M, two threads: 10.9
/// and 12.0 from the rows, 11.0 and 11.5 from the panels), so Q4_K reads its rows. Zen 3 (AVX2 only, whole 256-bit units)
/// reads Q4_0 rows at 57-64% of the read bound (bench/results/amd-epyc-zen3-2core-avx2), its four-row kernel held by its
/// arithmetic as on Zen 1: there the 0.5B decoded 33.6-54.0 tokens/s from the panels against 31.7-46.1 from the rows on
/// one thread (medians 42.6 and 37.6) and 54.9-88.5 against 52.4-85.1 on two (75.7 and 66.4; 8 alternating pairs each, 13
/// of the 16 won by the panels), so it reads the panels too. (On 2026-12-02, on a host reading 10-16 GB/s, the two
/// measured alike.) Other cores with whole 256-bit units (Zen 2, Zen 4 and later, Intel's) read the rows; where one stream
/// nears the read bound, 11% more bytes would cost. Tests set either answer on their own thread.
/// From cache on that Zen 1 (256 rows of 896, one token), a block of a row took 2.35 ns through the panels against 3.87
/// through the rows; at 2.35 ns the 0.5B's 15.4 million row-blocks are about the whole decode step, so the panel kernel's
/// arithmetic is now the limit there. Walking each pair of sub-blocks once (each load split into both nibbles) instead of
/// twice measured the same (2.33-2.37 ns against 2.35-2.37), so the kernel is as prefill's.
/// </summary>
/// <remarks>
/// A panel's sums are the same for a token whatever else it is multiplied with, so where one token reads the panels, a
/// batch-invariant step (<see cref="CpuBackendOptions.BatchInvariant"/>) reads them too and gives each row its bits alone.
/// </remarks>
internal static class PanelDecode
{
    private static readonly bool s_pays = CpuIdentity.IsZen1Class || CpuIdentity.IsZen3;

    /// <summary>Whether one token's product with a repacked <paramref name="type"/> matrix on <paramref name="path"/> reads its panels (see the class).</summary>
    public static bool Pays(KernelPath path, DType type) =>
        type == DType.Q4_0 && path != KernelPath.Scalar && Avx2.IsSupported && Fma.IsSupported && ThreadOverride<Switch>.Or(s_pays);

    /// <summary>Until disposed, this thread takes <paramref name="pays"/> as the CPU's answer (for tests).</summary>
    public static ThreadOverride<Switch>.Scope Assume(bool pays) => ThreadOverride<Switch>.Set(pays);

    /// <summary>Names this switch's <see cref="ThreadOverride{TSwitch}"/>.</summary>
    internal readonly struct Switch
    {
    }
}
