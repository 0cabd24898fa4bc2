namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Whether one-token decode dots several rows at once, spread evenly over the thread's range, each activation load shared
/// by them and each row's sum the same bit for bit: on the 512-bit path BF16 and F16 placed throughout
/// (<see cref="SubnormalOperands"/>) four rows a quarter of the range apart (<see cref="Dot{TW}.FourRows512"/>) where the
/// rows are at least <see cref="FloatMinimumWidth"/> wide and two rows half the range apart
/// (<see cref="Dot{TW}.TwoRows512"/>) where narrower; on the 256-bit path BF16 and F16 two rows half the range apart at any
/// width (<see cref="Dot{TW}.TwoRows256"/>); on both, Q8_0 two rows half the range apart
/// (<see cref="RowGroups.RunPaired{TKernel}"/>).
/// </summary>
/// <remarks>
/// With f32 activations a BF16 row reads two bytes of activations per weight byte, and on one Zen 5 core that traffic, not
/// the weights', held the kernel under the read bound: 512 MiB of 4864-wide rows streamed at 66% of a plain sum, against
/// 80% for f32 weights against the same activations (one activation byte per weight byte) and 100% for the row sums
/// alone. In pairs, BF16 0.5B decoded 22.8-23.1 → 24.4-25.0 tokens/s on one thread; in fours, against pairs, 25.8-31.6
/// against 23.7-26.2 on one thread (5 alternating runs, 82-96% of the read bound against 71-76%) and 50.8-57.0 against
/// 45.0-52.7 on two (3 runs); F16 0.5B 22.9-26.5 against 21.4-23.0 on one (4 runs) and 43.7-47.6 against 42.6-45.1 on
/// two (3), the same greedy ids. Narrow rows lose (see <see cref="FloatMinimumWidth"/>). Q8_0's kernel (one activation
/// byte per weight byte, two accumulators a row) gains in pairs (see its pair kernel) but lost in fours (one accumulator
/// a row, as Q4_0's: 37-43 against 44-48 tokens/s). The 64-byte Q4_K, Q5_K and Q6_K kernels paired ran 3-6% faster
/// from L2, but Q4_K_M and Q5_K_M 1.5B decoded alike (6 alternating runs each), so they go row by row. Neighbouring rows sharing loads streamed worse on Zen 4
/// (<see cref="Dot{TW}"/>'s remarks); rows spread over the range keep sequential streams. On the 512-bit path measured on
/// Zen 5 (AMD family 1Ah) and Zen 4 (19h), which take them there: on a Zen 4 core (<c>bench stream --rows-apart</c>, two
/// alternations) 896-wide BF16 rows streamed at 96-97% of a plain sum apart against 75-83% row by row, F16 93-94% against
/// 86-91%, Q8_0 alike; the 0.5B decoded BF16 21.5-24.4 → 22.4-25.6 tokens/s on one thread and 28.6-30.1 → 29.6-31.8 on two,
/// F16 24.5-24.9 → 24.9-27.2 on one (3 alternating runs each, 8 of 9 won). Intel's Sapphire Rapids class pairs Q8_0 only
/// (<see cref="PayQ8_0"/>).
/// <para>
/// On Zen 3 (AMD family 19h, AVX2 only) two streams a core pay at every width. A trial kernel read 179 MB of BF16 rows
/// from memory in pairs at 23.5-23.9 GB/s on two threads against 16.4-18.4 row by row (896 wide), 20.0-21.6 against
/// 17.3-18.3 (4864 wide), and on one thread 18.6-19.1 against 13.0-13.3 and 17.1-17.3 against 12.4-13.5. Qwen2.5-0.5B
/// decoded, alternating builds, medians: BF16 28.9 against 23.6 tokens/s on two threads and 17.2 against 16.7 on one (4
/// pairs each, each won); F16 (placed, <see cref="SubnormalOperands"/>) 29.0 against 27.3 placed row by row on two and 17.5
/// against 16.5 on one (5 each; 23.1 and 13.9 before either change); Q8_0 50.1 against 45.4 on two and 34.5 against 31.8 on
/// one (4 pairs each, each won). Prefetching both rows beat none (F16, 3 alternations: 26.8-27.5 against 25.7-26.6 on two,
/// 16.4-17.9 against 13.6-15.2 on one). Four rows would need sixteen accumulators, all of AVX2's registers. Zen 1 and 2 and
/// Intel's AVX2 cores are not measured and go row by row. Tests set either answer on their own thread.
/// </para>
/// </remarks>
internal static class RowsApart
{
    /// <summary>
    /// The narrowest BF16/F16 rows read four at a time. Their f32 activations are 4 bytes a value, and at 896 values (3.5
    /// KB) sharing their loads gained nothing while four streams cost: one core streamed 512 MiB of such rows at 77-78% of a
    /// plain sum in fours against 81-82% row by row (BF16; F16 72-74% against 79-82%, 3 alternations). At 4864 values (19 KB,
    /// the MLP's down projection) they gain. Qwen2.5-0.5B decoded, one thread, 5 alternating runs, medians: BF16 26.1
    /// tokens/s with only rows of 2048 or more in fours, 25.9 with every row in fours, 24.9 with none; F16 29.4, 27.3 and
    /// 28.0. At 1536 values (Qwen2.5-1.5B) fours lost too: 512 MiB of such rows streamed at 90-92% of a plain sum row by
    /// row against BF16 85-97% and F16 81-89% in fours (3 alternations), and 1.5B's random weights decoded on one thread
    /// (4 alternating runs, medians) BF16 6.99 tokens/s with this bound against 6.63 with fours from 1536, F16 6.99
    /// against 6.15. Narrower rows go in pairs: once BF16 decode stopped prefetching on Zen 5 (<see cref="Prefetch.InDecode"/>),
    /// pairs without prefetch decoded the 0.5B's 896-wide rows faster than row by row, the same greedy ids (alternating
    /// runs): BF16 32.6-33.3 against 29.6-31.4 tokens/s on one thread (4 pairs, each won) and 55.9-60.6 against 53.8-54.6
    /// on two (2); F16 29.5-32.6 against 27.5-31.2 on one (2 of 3 won; medians 31.0 and 27.8).
    /// </summary>
    public const int FloatMinimumWidth = 2048;

    private static readonly bool s_pays512 = CpuIdentity.IsAmd && CpuIdentity.Family >= 0x19; // Zen 4 and later (Zen 3 has no AVX-512)

    private static readonly bool s_pays256 = CpuIdentity.IsZen3;

    /// <summary>
    /// Intel's AVX-512 cores with AVX-VNNI (Sapphire Rapids and later) pair Q8_0's rows but not BF16's or F16's: on the 2-core
    /// Xeon (Emerald Rapids) one core streamed 512 MiB of 896-wide Q8_0 rows at 97-100% of a plain sum in pairs against 92%
    /// row by row, BF16 at 86% in pairs against 101-102%, F16 alike either way (<c>bench stream --rows-apart</c>, alternating).
    /// </summary>
    private static readonly bool s_q8_0Pays512 = CpuIdentity.IsIntelAvx512Vnni;

    /// <summary>Whether one-token decode on <paramref name="path"/> dots rows apart at once (see the class).</summary>
    public static bool Pay(KernelPath path) => path switch
    {
        KernelPath.Vector512 => ThreadOverride<Switch>.Or(s_pays512),
        KernelPath.Vector256 => ThreadOverride<Switch>.Or(s_pays256),
        _ => false,
    };

    /// <summary>Whether Q8_0's one-token decode on <paramref name="path"/> goes in pairs half the range apart: as <see cref="Pay"/>, and on Intel's AVX-512 cores with AVX-VNNI.</summary>
    public static bool PayQ8_0(KernelPath path) => path == KernelPath.Vector512 ? ThreadOverride<Switch>.Or(s_pays512 || s_q8_0Pays512) : Pay(path);

    /// <summary>Until disposed, this thread takes <paramref name="apart"/> as the CPU's answer (for tests).</summary>
    public static ThreadOverride<Switch>.Scope Assume(bool apart) => ThreadOverride<Switch>.Set(apart);

    /// <summary>Names this switch's <see cref="ThreadOverride{TSwitch}"/>.</summary>
    internal readonly struct Switch
    {
    }
}
