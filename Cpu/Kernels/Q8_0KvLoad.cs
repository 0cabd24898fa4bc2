using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using QwenSharp.Formats;
using QwenSharp.Numerics;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Keys or values of a q8_0 KV cache (<see cref="Q8_0Blocks"/>: per 32 values an f16 scale d and 32 int8 codes q) read
/// as f32, d × q: the same products as <see cref="Q8_0Blocks.Dequantize"/>, so attention over these blocks is attention
/// over f32 keys and values holding their dequantized numbers, bit for bit. The attention kernel reads a head from a
/// block's start (a head is whole blocks) and loads 8 or 16 values at a time, which never cross a block.
/// </summary>
internal readonly struct Q8_0KvLoad : IWeightLoad
{
    public static DType Type => DType.Q8_0;

    /// <summary>Not per element: a block of 32 values takes 34 bytes (<see cref="OffsetOf"/>).</summary>
    public static int ElementSize => throw new NotSupportedException("q8_0 has no size per element; use Q8_0KvLoad.OffsetOf");

    /// <summary>Bytes from a row's start to its element <paramref name="index"/>, the first of a block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static nint OffsetOf(nint index) => index / Q8_0Blocks.BlockValues * Q8_0Blocks.BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float LoadScalar(ref byte row, nint index)
    {
        ref byte block = ref Unsafe.Add(ref row, OffsetOf(index));
        return Scale(ref block) * (sbyte)Unsafe.Add(ref block, 2 + (index % Q8_0Blocks.BlockValues));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(ref byte row, nint index)
    {
        ref byte block = ref Unsafe.Add(ref row, OffsetOf(index));
        return EightCodes(ref Unsafe.Add(ref block, 2 + (index % Q8_0Blocks.BlockValues))) * Scale(ref block);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(ref byte row, nint index)
    {
        ref byte block = ref Unsafe.Add(ref row, OffsetOf(index));
        Vector128<sbyte> codes = Vector128.LoadUnsafe(ref Unsafe.As<byte, sbyte>(ref Unsafe.Add(ref block, 2 + (index % Q8_0Blocks.BlockValues))));
        Vector512<int> wide = Vector512.WidenLower(Vector256.WidenLower(codes.ToVector256Unsafe()).ToVector512Unsafe());
        return Vector512.ConvertToSingle(wide) * Scale(ref block);
    }

    /// <summary>
    /// A head's <paramref name="d"/> values (whole blocks) from <paramref name="head"/> as f32 at <paramref name="to"/>,
    /// each block's scale widened once: the numbers <see cref="Load256"/> gives, which widens the scale at every load
    /// (4 times a block). Attention over 4096 positions of a 64-value head (<c>bench attention</c>, one Zen 1 core): 42.5
    /// ns a position and query head by loads, 28.8 by blocks.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void WidenHead(ref byte head, ref float to, int d)
    {
        for (int b = 0; b < d / Q8_0Blocks.BlockValues; b++)
        {
            ref byte block = ref Unsafe.Add(ref head, b * Q8_0Blocks.BlockBytes);
            ref float values = ref Unsafe.Add(ref to, b * Q8_0Blocks.BlockValues);
            Vector256<float> scale = Vector256.Create(Scale(ref block));
            for (int i = 0; i < Q8_0Blocks.BlockValues; i += 8)
            {
                (EightCodes(ref Unsafe.Add(ref block, 2 + i)) * scale).StoreUnsafe(ref values, (nuint)i);
            }
        }
    }

    /// <summary>The 8 signed codes at <paramref name="codes"/> as f32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> EightCodes(ref byte codes)
    {
        Vector128<sbyte> bytes = Vector128.CreateScalarUnsafe(Unsafe.ReadUnaligned<long>(ref codes)).AsSByte();
        return Vector256.ConvertToSingle(Vector256.WidenLower(Vector128.WidenLower(bytes).ToVector256Unsafe()));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Scale(ref byte block) => HalfBits.ToSingle(Unsafe.ReadUnaligned<ushort>(ref block));
}
