using QwenSharp.Formats;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Where the CPU multiplies IQ4_NL matrices as the file stores them (18 bytes a block: an f16 scale and 16 bytes of 4-bit
/// indices into a table of 16 int8 values, Q4_0's layout): one token through <see cref="Q8IntegerKernel"/> (the Q4_0 loop,
/// one vpshufb a block for the table), several through Q8_0 panels of the same values (<see cref="Q8_0Panels"/>, made at
/// load). Elsewhere the matrix is widened to Q8_0 without loss (<see cref="Widening"/>: 34 bytes a block).
/// </summary>
/// <remarks>
/// IQ4_NL is what llama.cpp's IQ4_XS, Q3_K_M and Q2_K files store for matrices whose rows are not whole 256-value
/// super-blocks (Qwen2.5-0.5B's 896-wide q/k/v/o/gate/up, most of its bytes), and what IQ4_NL files hold throughout.
/// The table's values reach ±127, so the product needs vpdpbusd to take them + 128 as unsigned bytes; with vpmaddubsw
/// the values' signs move onto each row's activations, and on Zen 5 (one core reading 30-38 GB/s) a block so built took
/// about the time of a Q8_0 block: <c>bench/results/amd-epyc-zen5-2core-avx512/iq4_xs-and-q4_0-wide-2026-12-05.md</c>.
/// </remarks>
internal static class Iq4NlRows
{
    /// <summary>
    /// Whether the CPU keeps IQ4_NL matrices as stored on <paramref name="path"/>: vpdpbusd for one token and integer Q8_0
    /// panels for several (<see cref="QuantPanel.MultipliesInIntegers"/>).
    /// </summary>
    public static bool Pays(KernelPath path) =>
        ByteDots.Vnni(path) && QuantPanel.MultipliesInIntegers(path, DType.Q8_0) && ThreadOverride<Switch>.Or(true);

    /// <summary>Until disposed, this thread takes <paramref name="pays"/> as <see cref="Pays"/>' answer where the CPU has vpdpbusd (for tests and benches).</summary>
    public static ThreadOverride<Switch>.Scope Assume(bool pays) => ThreadOverride<Switch>.Set(pays);

    /// <summary>Names this switch's <see cref="ThreadOverride{TSwitch}"/>.</summary>
    internal readonly struct Switch
    {
    }
}
