using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using QwenSharp.Formats;
using QwenSharp.Numerics;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Keys or values of a q4_0 KV cache (GGUF's Q4_0 blocks: per 32 values an f16 scale d and 16 bytes of codes, byte j
/// holding value j in its low nibble and value j + 16 in its high one) read as f32, d × (q − 8): the same products as
/// <see cref="LegacyQuantBlocks.DequantizeQ4_0"/>, so attention over these blocks is attention over f32 keys and values
/// holding their dequantized numbers, bit for bit. As for <see cref="Q8_0KvLoad"/>, a head is whole blocks and a load of
/// 8 or 16 values never crosses one.
/// </summary>
internal readonly struct Q4_0KvLoad : IWeightLoad
{
    public static DType Type => DType.Q4_0;

    /// <summary>Not per element: a block of 32 values takes 18 bytes (<see cref="OffsetOf"/>).</summary>
    public static int ElementSize => throw new NotSupportedException("q4_0 has no size per element; use Q4_0KvLoad.OffsetOf");

    /// <summary>Bytes from a row's start to its element <paramref name="index"/>, the first of a block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static nint OffsetOf(nint index) => index / LegacyQuantBlocks.BlockValues * LegacyQuantBlocks.Q4_0BlockBytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float LoadScalar(ref byte row, nint index)
    {
        ref byte block = ref Unsafe.Add(ref row, OffsetOf(index));
        int j = (int)(index % LegacyQuantBlocks.BlockValues);
        int code = (Unsafe.Add(ref block, 2 + (j & 15)) >> ((j & 16) >> 2)) & 0xF;
        return (code - 8) * Scale(ref block);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Load256(ref byte row, nint index)
    {
        ref byte block = ref Unsafe.Add(ref row, OffsetOf(index));
        int j = (int)(index % LegacyQuantBlocks.BlockValues);
        return EightCodes(ref Unsafe.Add(ref block, 2 + (j & 15)), high: j >= 16) * Scale(ref block);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load512(ref byte row, nint index)
    {
        ref byte block = ref Unsafe.Add(ref row, OffsetOf(index));
        Vector128<byte> bytes = Vector128.LoadUnsafe(ref Unsafe.Add(ref block, 2));
        Vector128<sbyte> codes = Codes(bytes, high: index % LegacyQuantBlocks.BlockValues >= 16);
        Vector512<int> wide = Vector512.WidenLower(Vector256.WidenLower(codes.ToVector256Unsafe()).ToVector512Unsafe());
        return Vector512.ConvertToSingle(wide) * Scale(ref block);
    }

    /// <summary>A head's <paramref name="d"/> values (whole blocks) as f32 at <paramref name="to"/>, each block's scale widened once.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void WidenHead(ref byte head, ref float to, int d)
    {
        for (int b = 0; b < d / LegacyQuantBlocks.BlockValues; b++)
        {
            ref byte block = ref Unsafe.Add(ref head, b * LegacyQuantBlocks.Q4_0BlockBytes);
            ref float values = ref Unsafe.Add(ref to, b * LegacyQuantBlocks.BlockValues);
            Vector256<float> scale = Vector256.Create(Scale(ref block));
            for (int i = 0; i < LegacyQuantBlocks.BlockValues; i += 8)
            {
                (EightCodes(ref Unsafe.Add(ref block, 2 + (i & 15)), high: i >= 16) * scale).StoreUnsafe(ref values, (nuint)i);
            }
        }
    }

    /// <summary>The low (or high) nibbles of the 8 bytes at <paramref name="bytes"/>, minus 8, as f32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> EightCodes(ref byte bytes, bool high)
    {
        Vector128<sbyte> codes = Codes(Vector128.CreateScalarUnsafe(Unsafe.ReadUnaligned<long>(ref bytes)).AsByte(), high);
        return Vector256.ConvertToSingle(Vector256.WidenLower(Vector128.WidenLower(codes).ToVector256Unsafe()));
    }

    /// <summary>Each byte's low (or high) nibble minus 8, as a signed byte.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<sbyte> Codes(Vector128<byte> bytes, bool high)
    {
        Vector128<byte> nibbles = high ? Vector128.ShiftRightLogical(bytes.AsUInt16(), 4).AsByte() & Vector128.Create((byte)0x0F) : bytes & Vector128.Create((byte)0x0F);
        return (nibbles.AsSByte() - Vector128.Create((sbyte)8)).AsSByte();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Scale(ref byte block) => HalfBits.ToSingle(Unsafe.ReadUnaligned<ushort>(ref block));
}
