using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using V256 = System.Runtime.Intrinsics.Vector256;
using V512 = System.Runtime.Intrinsics.Vector512;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// What <see cref="Dot{TW}"/> and <see cref="DotTokens{TW}"/> do for <see cref="F16ScaledLoad"/> weights (activations ×
/// 2^112): every group of 64 weights (32 on 256-bit vectors) that holds a zero or subnormal f16 is read exactly instead
/// of by bit placement. Placed, an f16 subnormal is an f32 subnormal (the value × 2^-112), and an FMA with a subnormal
/// operand takes a microcode assist on Intel cores: on the 2-core Xeon (AVX512_FP16) a row of weights in ±0.025, 0.24% of
/// them subnormal as in real F16 checkpoints, ran at 11.6 GB/s from L2 instead of 29, and F16 decode read 68% of the
/// memory bound against BF16's 94%. Zen 4 takes no such assist (and AMD cores from Zen 4 on read every group placed at
/// decode, <see cref="SubnormalOperands"/>). The exact group has the same products (the true weight
/// times the true activation, both normal), in the same accumulators, so the sums are bit for bit those of the placed
/// loader and of <see cref="F16FiniteLoad"/>. The at most three vectors past a row's last whole group are placed as
/// before (the same values; rows a multiple of 64 long, as the Qwen2 sizes are, have none).
/// </summary>
/// <remarks>
/// Decode (<see cref="Dot{TW}"/>) reads which groups to take exactly from a map made once at load (<see cref="MapRow"/>),
/// where <see cref="DotTokens{TW}"/> tests each group's exponents in the loop: the same groups either way, so the same sums.
/// The test cost four vector instructions per 64 weights on the two ports that AVX-512 leaves, against a bit test on
/// the scalar ports. On the 2-core Xeon, 896-wide rows of weights in ±0.025 (14% of their groups exact) read 9.5 GB/s
/// from memory against 8.4 with the test in the loop (medians of 6), and 19.7 against 16.9 GB/s from L2; the random F16
/// Qwen2.5-0.5B (11% of groups exact, as real checkpoints) decoded 10.4 against 9.5 tokens/s on one thread and 17.1
/// against 16.5 on two (medians of 6, alternating builds).
/// </remarks>
internal static class F16ExactGroups
{
    /// <summary>Weights per bit of a map: the 256-bit kernels' group (the 512-bit kernels' group of 64 is two bits).</summary>
    public const int MapGroup = 32;

    /// <summary>The 64-bit words of one row's map: a bit for each whole group of <see cref="MapGroup"/> weights.</summary>
    public static int MapWords(int cols) => (cols / MapGroup + 63) / 64;

    /// <summary>
    /// One row's map: bit g of <paramref name="words"/> set where weights [32g, 32g + 32) hold a zero or subnormal, the test
    /// <see cref="HasSmall32"/> makes.
    /// </summary>
    public static void MapRow(ReadOnlySpan<byte> row, int cols, Span<ulong> words)
    {
        if (row.Length < (long)cols * 2 || words.Length < MapWords(cols))
        {
            throw new ArgumentException($"a map of {words.Length} words for a row of {row.Length} bytes does not fit {cols} f16 values");
        }

        words[..MapWords(cols)].Clear();
        ref byte weights = ref MemoryMarshal.GetReference(row);
        for (int g = 0; g < cols / MapGroup; g++)
        {
            if (HasSmall32(ref weights, g * MapGroup))
            {
                words[g >> 6] |= 1UL << (g & 63);
            }
        }
    }


    /// <summary>The f32 sign bit, and the f16 exponent and mantissa once shifted into place.</summary>
    private const uint SignExponentMantissa = 0x8FFFE000;

    /// <summary>
    /// Whether the 64 weights from <paramref name="index"/> hold a zero or subnormal: one test and branch serves the 64.
    /// Inlined into the kernels' conditions this is vpminuw, vptestnmw, kortest and a jump. (An earlier form, a bool made
    /// apart from the condition, was materialized by the JIT with setne, movzx and test in every iteration, and the
    /// 256-bit kernel ran 7% slower from L2; read the disassembly after changing it.)
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool HasSmall64(ref byte weights, nint index) => V512.EqualsAny(Exponents512(ref weights, index), Vector512<ushort>.Zero);

    /// <summary><see cref="HasSmall64"/> for the 32 weights from <paramref name="index"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool HasSmall32(ref byte weights, nint index) => V256.EqualsAny(Exponents256(ref weights, index), Vector256<ushort>.Zero);

    /// <summary>
    /// The smaller exponent field of each pair of halves across the 64 weights from <paramref name="index"/>: zero somewhere
    /// when they hold a zero or subnormal.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<ushort> Exponents512(ref byte weights, nint index)
    {
        ref ushort halves = ref Unsafe.As<byte, ushort>(ref weights);
        var exponent = V512.Create((ushort)0x7C00);
        return V512.Min(V512.LoadUnsafe(ref halves, (nuint)index) & exponent, V512.LoadUnsafe(ref halves, (nuint)(index + 32)) & exponent);
    }

    /// <summary><see cref="Exponents512"/> for the 32 weights of a 256-bit group.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<ushort> Exponents256(ref byte weights, nint index)
    {
        ref ushort halves = ref Unsafe.As<byte, ushort>(ref weights);
        var exponent = V256.Create((ushort)0x7C00);
        return V256.Min(V256.LoadUnsafe(ref halves, (nuint)index) & exponent, V256.LoadUnsafe(ref halves, (nuint)(index + 16)) & exponent);
    }

    /// <summary>
    /// Sixteen f16 weights as the f32s of the same value, with no floating-point operation on a subnormal: normals are
    /// placed and rebiased in integers (exponent + 112), zeros and subnormals are their mantissa converted and scaled by
    /// 2^-24 (a normal result), each with its sign. Finite weights only (as <see cref="F16ScaledLoad"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(ref byte weights, nint index)
    {
        Vector512<int> h = V512.WidenLower(V256.LoadUnsafe(ref Unsafe.As<byte, short>(ref weights), (nuint)index).ToVector512Unsafe());
        Vector512<uint> placed = (h << 13).AsUInt32() & V512.Create(SignExponentMantissa);
        Vector512<uint> normal = placed + V512.Create(112u << 23);
        Vector512<uint> small = (V512.ConvertToSingle(h & V512.Create(0x3FF)) * V512.Create(1f / (1 << 24))).AsUInt32()
            | (placed & V512.Create(0x80000000u));
        Vector512<uint> isSmall = V512.Equals(h & V512.Create(0x7C00), Vector512<int>.Zero).AsUInt32();
        return V512.ConditionalSelect(isSmall, small, normal).AsSingle();
    }

    /// <summary><see cref="Load512"/> for eight weights.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(ref byte weights, nint index)
    {
        Vector256<int> h = V256.WidenLower(Vector128.LoadUnsafe(ref Unsafe.As<byte, short>(ref weights), (nuint)index).ToVector256Unsafe());
        Vector256<uint> placed = (h << 13).AsUInt32() & V256.Create(SignExponentMantissa);
        Vector256<uint> normal = placed + V256.Create(112u << 23);
        Vector256<uint> small = (V256.ConvertToSingle(h & V256.Create(0x3FF)) * V256.Create(1f / (1 << 24))).AsUInt32()
            | (placed & V256.Create(0x80000000u));
        Vector256<uint> isSmall = V256.Equals(h & V256.Create(0x7C00), Vector256<int>.Zero).AsUInt32();
        return V256.ConditionalSelect(isSmall, small, normal).AsSingle();
    }

    /// <summary>Sixteen activations back from × 2^112 (exact: they were scaled by a power of two).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Unscaled512(ref float x, nint index) =>
        V512.LoadUnsafe(ref x, (nuint)index) * V512.Create(F16Scaling.Down);

    /// <summary><see cref="Unscaled512"/> for eight activations.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Unscaled256(ref float x, nint index) =>
        V256.LoadUnsafe(ref x, (nuint)index) * V256.Create(F16Scaling.Down);
}

/// <summary>How a kernel finds the groups of <see cref="F16ScaledLoad"/> weights that it reads exactly (<see cref="F16ExactGroups"/>).</summary>
internal interface IExactGroupTest
{
    /// <summary>Whether the 64 weights from <paramref name="index"/> (a multiple of 64) are read exactly.</summary>
    static abstract bool Exact64(ref byte weights, ref ulong map, nint index);

    /// <summary>Whether the 32 weights from <paramref name="index"/> (a multiple of 32) are read exactly.</summary>
    static abstract bool Exact32(ref byte weights, ref ulong map, nint index);
}

/// <summary>By the weights' exponents, tested in the loop (no map).</summary>
internal readonly struct ExponentTest : IExactGroupTest
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Exact64(ref byte weights, ref ulong map, nint index) => F16ExactGroups.HasSmall64(ref weights, index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Exact32(ref byte weights, ref ulong map, nint index) => F16ExactGroups.HasSmall32(ref weights, index);
}

/// <summary>By the row's map (<see cref="F16ExactGroups.MapRow"/>): a bit per 32 weights, two per 64.</summary>
internal readonly struct MapTest : IExactGroupTest
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Exact64(ref byte weights, ref ulong map, nint index) => ((Unsafe.Add(ref map, index >> 11) >> (int)(index >> 5)) & 3) != 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Exact32(ref byte weights, ref ulong map, nint index) => ((Unsafe.Add(ref map, index >> 11) >> (int)(index >> 5)) & 1) != 0;
}

/// <summary>No group read exactly: every weight by placement (where <see cref="SubnormalOperands.AtFullSpeed"/>).</summary>
internal readonly struct PlacedOnly : IExactGroupTest
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Exact64(ref byte weights, ref ulong map, nint index) => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Exact32(ref byte weights, ref ulong map, nint index) => false;
}
