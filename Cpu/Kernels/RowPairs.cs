namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Whether one-token decode on the 512-bit path dots its rows in pairs, half the thread's range apart, each activation load
/// shared by the two, each row's sum the same bit for bit: BF16 and F16 placed throughout (<see cref="SubnormalOperands"/>)
/// by <see cref="Dot{TW}.TwoRows512"/>, and Q8_0 by <see cref="RowGroups.RunPaired{TKernel}"/>. With f32 activations a BF16 row reads two
/// bytes of activations per weight byte, and on one Zen 5 core that traffic, not the weights', held the kernel under the
/// read bound: 512 MiB of 4864-wide rows streamed at 66% of a plain sum, against 80% for f32 weights against the same
/// activations (one activation byte per weight byte) and 100% for the row sums alone. Paired, decode of BF16 0.5B went
/// 22.8-23.1 → 24.4-25.0 tokens/s on one thread (4 alternating pairs, the same greedy ids) and 43.6-44.4 → 43.2-48.2 on
/// two (3 pairs); F16 0.5B placed, 22.5-23.6 → 23.3-24.4 on one thread (3 pairs, the same greedy ids) and 43.2-44.8 →
/// 50.5-52.2 on two (2 pairs). Q8_0 (one activation byte per weight byte) gains too (see its pair kernel). The
/// 64-byte Q4_K, Q5_K and Q6_K kernels paired ran 3-6% faster from L2, but Q4_K_M and Q5_K_M 1.5B decoded alike (6
/// alternating pairs each), so they go row by row. Two rows next to each other sharing loads streamed worse on Zen 4 (<see cref="Dot{TW}"/>'s
/// remarks); rows half a range apart keep two sequential streams. Measured on Zen 5 only (AMD family 1Ah), so only it
/// pairs; tests set either answer on their own thread.
/// </summary>
internal static class RowPairs
{
    /// <summary>0: the CPU's answer; 1: pair; 2: not (for tests, this thread only).</summary>
    [ThreadStatic]
    private static int t_assumed;

    private static readonly bool s_pays = CpuIdentity.IsAmd && CpuIdentity.Family >= 0x1A;

    /// <summary>Whether one-token decode on <paramref name="path"/> pairs its rows (see the class).</summary>
    public static bool Pay(KernelPath path) => path == KernelPath.Vector512 && (t_assumed == 0 ? s_pays : t_assumed == 1);

    /// <summary>Until disposed, this thread takes <paramref name="pair"/> as the CPU's answer (for tests).</summary>
    public static Scope Assume(bool pair)
    {
        t_assumed = pair ? 1 : 2;
        return default;
    }

    /// <summary>Ends <see cref="Assume"/>.</summary>
    public readonly struct Scope : IDisposable
    {
        public void Dispose() => t_assumed = 0;
    }
}
