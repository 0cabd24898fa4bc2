using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using QwenSharp.Formats;
using QwenSharp.Numerics;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Reads weights of one stored type as f32: one element, 8 (a Vector256) or 16 (a Vector512) at a time.
/// Kernels are generic over it, so one dot product serves BF16, F16 and F32 weights and the JIT
/// specializes each (a struct type argument) with the conversion inlined into the loop.
/// </summary>
internal interface IWeightLoad
{
    /// <summary>The stored type these weights are.</summary>
    static abstract DType Type { get; }

    /// <summary>Bytes per stored element.</summary>
    static abstract int ElementSize { get; }

    static abstract float LoadScalar(ref byte weights, nint index);

    static abstract Vector256<float> Load256(ref byte weights, nint index);

    static abstract Vector512<float> Load512(ref byte weights, nint index);
}

/// <summary>f32 weights: a plain load.</summary>
internal readonly struct F32Load : IWeightLoad
{
    public static DType Type => DType.F32;

    public static int ElementSize => 4;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float LoadScalar(ref byte weights, nint index) =>
        Unsafe.Add(ref Unsafe.As<byte, float>(ref weights), index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(ref byte weights, nint index) =>
        Vector256.LoadUnsafe(ref Unsafe.As<byte, float>(ref weights), (nuint)index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(ref byte weights, nint index) =>
        Vector512.LoadUnsafe(ref Unsafe.As<byte, float>(ref weights), (nuint)index);
}

/// <summary>
/// bf16 weights: widen each 16-bit lane to 32 and shift it into the top half, which is the f32 with the same
/// value (see <see cref="BFloat16Bits"/>); exact, two instructions per vector.
/// </summary>
internal readonly struct Bf16Load : IWeightLoad
{
    public static DType Type => DType.BF16;

    public static int ElementSize => 2;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float LoadScalar(ref byte weights, nint index) =>
        BFloat16Bits.ToSingle(Unsafe.Add(ref Unsafe.As<byte, ushort>(ref weights), index));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(ref byte weights, nint index)
    {
        Vector128<ushort> bits = Vector128.LoadUnsafe(ref Unsafe.As<byte, ushort>(ref weights), (nuint)index);
        return (Vector256.WidenLower(bits.ToVector256Unsafe()) << 16).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(ref byte weights, nint index)
    {
        Vector256<ushort> bits = Vector256.LoadUnsafe(ref Unsafe.As<byte, ushort>(ref weights), (nuint)index);
        return (Vector512.WidenLower(bits.ToVector512Unsafe()) << 16).AsSingle();
    }
}

/// <summary>
/// f16 weights, converted with integer operations (no F16C intrinsics in .NET): move sign, exponent and
/// mantissa into f32 position and multiply by 2^112 to rebias the exponent (15 → 127), which also turns
/// f16 subnormals into the right f32 normals; infinities and NaNs get the f32 all-ones exponent.
/// Exact for all 65536 inputs (tested).
/// </summary>
internal readonly struct F16Load : IWeightLoad
{
    private const uint TwoPow112Bits = (127 + 112) << 23;

    public static DType Type => DType.F16;

    public static int ElementSize => 2;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float LoadScalar(ref byte weights, nint index) =>
        HalfBits.ToSingle(Unsafe.Add(ref Unsafe.As<byte, ushort>(ref weights), index));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(ref byte weights, nint index)
    {
        Vector128<ushort> bits = Vector128.LoadUnsafe(ref Unsafe.As<byte, ushort>(ref weights), (nuint)index);
        return Widen(Vector256.WidenLower(bits.ToVector256Unsafe()));
    }

    /// <summary>Eight f16 bit patterns, one in the low 16 bits of each lane (the rest zero), as f32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Widen(Vector256<uint> h)
    {
        Vector256<uint> magnitude = h & Vector256.Create(0x7FFFu);
        Vector256<uint> shifted = magnitude << 13;
        Vector256<float> finite = shifted.AsSingle() * Vector256.Create(TwoPow112Bits).AsSingle();
        Vector256<uint> special = Vector256.GreaterThanOrEqual(magnitude, Vector256.Create(0x7C00u));
        Vector256<uint> value = Vector256.ConditionalSelect(
            special, shifted | Vector256.Create(0x7F800000u), finite.AsUInt32());
        return (value | ((h & Vector256.Create(0x8000u)) << 16)).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(ref byte weights, nint index)
    {
        Vector256<ushort> bits = Vector256.LoadUnsafe(ref Unsafe.As<byte, ushort>(ref weights), (nuint)index);
        Vector512<uint> h = Vector512.WidenLower(bits.ToVector512Unsafe());
        Vector512<uint> magnitude = h & Vector512.Create(0x7FFFu);
        Vector512<uint> shifted = magnitude << 13;
        Vector512<float> finite = shifted.AsSingle() * Vector512.Create(TwoPow112Bits).AsSingle();
        Vector512<uint> special = Vector512.GreaterThanOrEqual(magnitude, Vector512.Create(0x7C00u));
        Vector512<uint> value = Vector512.ConditionalSelect(
            special, shifted | Vector512.Create(0x7F800000u), finite.AsUInt32());
        return (value | ((h & Vector512.Create(0x8000u)) << 16)).AsSingle();
    }
}

/// <summary>
/// f16 weights known to hold no infinity or NaN (checked once at load, <see cref="F16Values.AllFinite"/>): the sign moved
/// with the rest by one arithmetic shift, then the multiply by 2^112 that rebiases the exponent and turns subnormals into
/// normals. Five instructions for 16 values against <see cref="F16Load"/>'s ten, which decode pays for every weight:
/// F16 decode on one Zen 4 core ran at half llama.cpp's speed (its vcvtph2ps is not in .NET 10).
/// Exact for every finite input (tested).
/// </summary>
internal readonly struct F16FiniteLoad : IWeightLoad
{
    private const uint TwoPow112Bits = (127 + 112) << 23;

    /// <summary>The f32 sign bit, and the f16 exponent and mantissa once shifted into place.</summary>
    private const uint SignExponentMantissa = 0x8FFFE000;

    public static DType Type => DType.F16;

    public static int ElementSize => 2;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float LoadScalar(ref byte weights, nint index) => F16Load.LoadScalar(ref weights, index);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(ref byte weights, nint index)
    {
        Vector128<ushort> bits = Vector128.LoadUnsafe(ref Unsafe.As<byte, ushort>(ref weights), (nuint)index);

        // h << 16 puts the sign at bit 31; an arithmetic shift by 3 puts exponent and mantissa where f32 has them (the
        // sign is copied into bits 28-30, which the mask clears).
        Vector256<int> placed = Vector256.ShiftRightArithmetic((Vector256.WidenLower(bits.ToVector256Unsafe()) << 16).AsInt32(), 3);
        return (placed.AsUInt32() & Vector256.Create(SignExponentMantissa)).AsSingle() * Vector256.Create(TwoPow112Bits).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(ref byte weights, nint index)
    {
        Vector256<ushort> bits = Vector256.LoadUnsafe(ref Unsafe.As<byte, ushort>(ref weights), (nuint)index);
        Vector512<int> placed = Vector512.ShiftRightArithmetic((Vector512.WidenLower(bits.ToVector512Unsafe()) << 16).AsInt32(), 3);
        return (placed.AsUInt32() & Vector512.Create(SignExponentMantissa)).AsSingle() * Vector512.Create(TwoPow112Bits).AsSingle();
    }
}

/// <summary>
/// <see cref="F16FiniteLoad"/> without its multiply: the f16's bits sign-extended and shifted into f32 position, which
/// is the value × 2^-112 exactly (f16 subnormals become f32 subnormals). Decode pairs it with activations × 2^112
/// (<see cref="F16Scaling"/>): each product, and so every sum, is the same number as the finite loader's, with three
/// instructions per 16 values (as <see cref="Bf16Load"/>) instead of five. Prefill widens with the finite loader.
/// </summary>
internal readonly struct F16ScaledLoad : IWeightLoad
{
    /// <summary>The f32 sign bit, and the f16 exponent and mantissa once shifted into place.</summary>
    private const uint SignExponentMantissa = 0x8FFFE000;

    public static DType Type => DType.F16;

    public static int ElementSize => 2;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float LoadScalar(ref byte weights, nint index) => F16Load.LoadScalar(ref weights, index) * F16Scaling.Down;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(ref byte weights, nint index)
    {
        // Sign-extended, the sign lands in bit 31 after the shift by 13 and its copies in bits 28-30, which the mask clears.
        Vector128<short> bits = Vector128.LoadUnsafe(ref Unsafe.As<byte, short>(ref weights), (nuint)index);
        return ((Vector256.WidenLower(bits.ToVector256Unsafe()) << 13).AsUInt32() & Vector256.Create(SignExponentMantissa)).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(ref byte weights, nint index)
    {
        Vector256<short> bits = Vector256.LoadUnsafe(ref Unsafe.As<byte, short>(ref weights), (nuint)index);
        return ((Vector512.WidenLower(bits.ToVector512Unsafe()) << 13).AsUInt32() & Vector512.Create(SignExponentMantissa)).AsSingle();
    }
}

/// <summary>The power-of-two scales between <see cref="F16ScaledLoad"/>'s weights and the activations they meet.</summary>
internal static class F16Scaling
{
    /// <summary>2^112, by which the activations are multiplied (exactly).</summary>
    public static float Up => BitConverter.Int32BitsToSingle((127 + 112) << 23);

    /// <summary>2^-112: what <see cref="F16ScaledLoad"/> leaves on each weight.</summary>
    public static float Down => BitConverter.Int32BitsToSingle((127 - 112) << 23);

    /// <summary>
    /// Activations below this in size scale without overflow (2^15 × 2^112 is well inside f32); larger ones (or NaN) take
    /// <see cref="F16FiniteLoad"/> instead.
    /// </summary>
    public const float Largest = 32768f;

    /// <summary>
    /// <paramref name="x"/> × 2^112 into <paramref name="scaled"/>, when every |x| is below <see cref="Largest"/>; false
    /// (nothing written that matters) when one is not.
    /// </summary>
    public static bool TryScale(ReadOnlySpan<float> x, Span<float> scaled)
    {
        float largest = System.Numerics.Tensors.TensorPrimitives.MaxMagnitude(x);
        if (!(Math.Abs(largest) < Largest))
        {
            return false;
        }

        System.Numerics.Tensors.TensorPrimitives.Multiply(x, Up, scaled);
        return true;
    }
}

/// <summary>A check over stored f16 values.</summary>
internal static class F16Values
{
    /// <summary>Whether no value is an infinity or NaN (exponent bits all ones), so <see cref="F16FiniteLoad"/> may read them.</summary>
    public static bool AllFinite(ReadOnlySpan<byte> bytes)
    {
        ReadOnlySpan<ushort> halves = MemoryMarshal.Cast<byte, ushort>(bytes);
        var exponent = Vector256.Create((ushort)0x7C00);
        int i = 0;
        for (; i <= halves.Length - Vector256<ushort>.Count; i += Vector256<ushort>.Count)
        {
            if (Vector256.EqualsAny(Vector256.Create(halves.Slice(i, Vector256<ushort>.Count)) & exponent, exponent))
            {
                return false;
            }
        }

        for (; i < halves.Length; i++)
        {
            if ((halves[i] & 0x7C00) == 0x7C00)
            {
                return false;
            }
        }

        return true;
    }
}

