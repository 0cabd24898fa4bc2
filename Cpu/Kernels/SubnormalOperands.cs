using System.Runtime.Intrinsics.X86;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Whether this CPU multiplies subnormal f32 operands at full speed, so that <see cref="F16ScaledLoad"/> weights may be read
/// by placement throughout, with no group read exactly (<see cref="F16ExactGroups"/>): the products, and so the sums, are
/// the same either way. Intel cores take a microcode assist on such an FMA (the 2-core Xeon read a row with 0.24%
/// subnormal weights from L2 at 11.6 GB/s instead of 29), and they keep the exact groups. AMD Zen 4 takes none. On Zen 5,
/// one core read 512 MiB of 896-wide F16 rows in ±0.035 (about 10% of their groups exact) at 90.5-92.8% of a plain sum
/// timed beside it placed throughout, against 74-84% by the maps (<c>bench stream</c>, alternating builds; a first trial,
/// with the map test made constant false, 86-92% against 81-84%, BF16 alike in both builds). F16 0.5B decoded 22.3
/// against 19.9 tokens/s on one thread (medians of 4 alternating pairs, each pair faster placed) and 40.8 against 38.1
/// on two (3 pairs). So AMD family 19h with AVX-512 (Zen 4) and later read F16 weights placed; Zen 3 (also 19h, no
/// AVX-512) is not measured and keeps the maps. Tests set either answer on their own thread.
/// </summary>
internal static class SubnormalOperands
{
    private static readonly bool s_fullSpeed = Avx512F.IsSupported && CpuIdentity.IsAmd && CpuIdentity.Family >= 0x19;

    /// <summary>Whether F16 decode reads its weights by placement throughout (see the class).</summary>
    public static bool AtFullSpeed => ThreadOverride<Switch>.Or(s_fullSpeed);

    /// <summary>Until disposed, this thread takes <paramref name="fullSpeed"/> as the CPU's answer (for tests).</summary>
    public static ThreadOverride<Switch>.Scope Assume(bool fullSpeed) => ThreadOverride<Switch>.Set(fullSpeed);

    /// <summary>Names this switch's <see cref="ThreadOverride{TSwitch}"/>.</summary>
    internal readonly struct Switch
    {
    }
}
