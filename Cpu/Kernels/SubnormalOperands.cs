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
/// on two (3 pairs). On Zen 3 (also family 19h, AVX2 only) one core streamed such rows placed at 78.6-83.5% of the sum
/// against 64.3-75.1% by the maps, and from L2 at 19-20 GB/s against 14-16 (<c>bench stream --placed on|off</c>, 2
/// alternations each); F16 0.5B decoded 14.9-17.2 against 12.3-15.4 tokens/s on one thread and 25.5-30.4 against
/// 24.8-26.6 on two (3 alternating pairs each, each pair faster placed). So AMD family 19h (Zen 3, Zen 4) and later read
/// F16 weights placed; Zen 1 and 2 (17h) are not measured and keep the maps. Tests set either answer on their own thread.
/// </summary>
internal static class SubnormalOperands
{
    private static readonly bool s_fullSpeed = CpuIdentity.IsAmd && CpuIdentity.Family >= 0x19;

    /// <summary>Whether F16 decode reads its weights by placement throughout (see the class).</summary>
    public static bool AtFullSpeed => ThreadOverride<Switch>.Or(s_fullSpeed);

    /// <summary>Until disposed, this thread takes <paramref name="fullSpeed"/> as the CPU's answer (for tests).</summary>
    public static ThreadOverride<Switch>.Scope Assume(bool fullSpeed) => ThreadOverride<Switch>.Set(fullSpeed);

    /// <summary>Names this switch's <see cref="ThreadOverride{TSwitch}"/>.</summary>
    internal readonly struct Switch
    {
    }
}
