using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using QwenSharp.Formats;
using QwenSharp.Numerics;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Rows of block-quantized weights widened to f32: the prefill panels and the embedding. Decode multiplies integers
/// instead (<see cref="Q8IntegerKernel"/>, <see cref="KQuantIntegerKernel"/>). The vector paths do the format's
/// reference arithmetic (<see cref="LegacyQuantBlocks"/>, <see cref="KQuantBlocks"/>) in the same order, a multiply then
/// a subtraction where the reference has them (never fused), so they equal it bit for bit. Prefill reads every weight
/// once per panel: with the scalar reference, widening was a third of a 128-token Q4_K_M prefill on one thread.
/// </summary>
internal static class QuantizedRows
{
    /// <summary>A row of whole blocks of <paramref name="type"/> widened to f32.</summary>
    public static void Dequantize(KernelPath path, DType type, ReadOnlySpan<byte> row, Span<float> values)
    {
        bool vector = path != KernelPath.Scalar && Vector256.IsHardwareAccelerated;
        int blocks = values.Length / DTypes.BlockValues(type);
        if (row.Length < (long)blocks * DTypes.BlockBytes(type))
        {
            throw new ArgumentException($"a {type} row of {row.Length} bytes is shorter than {values.Length} values", nameof(row));
        }

        switch (type)
        {
            case DType.Q8_0: Q8_0Kernel.Dequantize(path, row, values); break;
            case DType.Q4_0 when vector: Q4_0(row, values, blocks); break;
            case DType.Q4_0: LegacyQuantBlocks.DequantizeQ4_0(row, values); break;
            case DType.Q4_K when vector: Q4_K(row, values, blocks, fifth: false); break;
            case DType.Q4_K: KQuantBlocks.DequantizeQ4_K(row, values); break;
            case DType.Q5_K when vector: Q4_K(row, values, blocks, fifth: true); break;
            case DType.Q5_K: KQuantBlocks.DequantizeQ5_K(row, values); break;
            case DType.Q6_K when vector: Q6_K(row, values, blocks); break;
            case DType.Q6_K: KQuantBlocks.DequantizeQ6_K(row, values); break;
            case DType.Q2_K when vector: Q2_K(row, values, blocks); break;
            case DType.Q2_K: KQuantBlocks.DequantizeQ2_K(row, values); break;
            case DType.Q3_K when vector: Q3_K(row, values, blocks); break;
            case DType.Q3_K: WidenedBlocks.DequantizeQ3_K(row, values); break;
            case DType.IQ4_XS when vector: Iq4_XS(row, values, blocks); break;
            case DType.IQ4_XS: Iq4XsBlocks.Dequantize(row, values); break;
            default: throw new ArgumentOutOfRangeException(nameof(type), type, "not a block-quantized type");
        }
    }

    /// <summary>(q - 8) × d per value, q the low nibbles (values 0-15) then the high ones (16-31).</summary>
    private static void Q4_0(ReadOnlySpan<byte> row, Span<float> values, int blocks)
    {
        ref byte w = ref MemoryMarshal.GetReference(row);
        ref float y = ref MemoryMarshal.GetReference(values);
        ref float half = ref MemoryMarshal.GetArrayDataReference(Q8_0Kernel.HalfToSingle);
        var eight = Vector128.Create((byte)8);
        for (int b = 0; b < blocks; b++)
        {
            ref byte block = ref Unsafe.Add(ref w, b * 18);
            var d = Vector256.Create(RowOperands.Half(ref half, ref block));
            Vector128<byte> packed = Vector128.LoadUnsafe(ref Unsafe.Add(ref block, 2));
            Vector128<sbyte> low = ((packed & Vector128.Create((byte)0x0F)) - eight).AsSByte();
            Vector128<sbyte> high = ((Vector128.ShiftRightLogical(packed.AsUInt16(), 4).AsByte() & Vector128.Create((byte)0x0F)) - eight).AsSByte();
            ref float at = ref Unsafe.Add(ref y, b * 32);
            StoreScaled(low, d, ref at);
            StoreScaled(high, d, ref Unsafe.Add(ref at, 16));
        }
    }

    /// <summary>16 signed codes as f32 times <paramref name="scale"/>, stored.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreScaled(Vector128<sbyte> codes, Vector256<float> scale, ref float at)
    {
        (Vector128<short> lower, Vector128<short> upper) = Vector128.Widen(codes);
        (Vector256.ConvertToSingle(Vector256.WidenLower(lower.ToVector256Unsafe())) * scale).StoreUnsafe(ref at);
        (Vector256.ConvertToSingle(Vector256.WidenLower(upper.ToVector256Unsafe())) * scale).StoreUnsafe(ref at, 8);
    }

    /// <summary>
    /// d × scale × q - dmin × min per sub-block of 32 (the reference's d1 × q - m1). With <paramref name="fifth"/>, Q5_K:
    /// the codes' fifth bit from qh (bit 2c or 2c + 1 of qh[l] for value l of chunk c), the nibbles 32 bytes further on.
    /// </summary>
    private static void Q4_K(ReadOnlySpan<byte> row, Span<float> values, int blocks, bool fifth)
    {
        ref byte w = ref MemoryMarshal.GetReference(row);
        ref float y = ref MemoryMarshal.GetReference(values);
        ref float half = ref MemoryMarshal.GetArrayDataReference(Q8_0Kernel.HalfToSingle);
        var mask = Vector256.Create((byte)0x0F);
        int blockBytes = fifth ? 176 : 144, codesAt = fifth ? 48 : 16;
        for (int b = 0; b < blocks; b++)
        {
            ref byte block = ref Unsafe.Add(ref w, b * blockBytes);
            float d = RowOperands.Half(ref half, ref block), min = RowOperands.Half(ref half, ref Unsafe.Add(ref block, 2));
            (ulong scales, ulong mins) = KQuantIntegerKernel.UnpackScalesAndMins(ref Unsafe.Add(ref block, 4));
            Vector256<byte> qh = fifth ? Vector256.LoadUnsafe(ref Unsafe.Add(ref block, 16)) : default;
            for (int c = 0; c < 4; c++)
            {
                Vector256<byte> packed = Vector256.LoadUnsafe(ref Unsafe.Add(ref block, codesAt + (32 * c)));
                Vector256<byte> low = packed & mask, high = Vector256.ShiftRightLogical(packed.AsUInt16(), 4).AsByte() & mask;
                if (fifth)
                {
                    low |= KQuantIntegerKernel.FifthBit(qh, 2 * c);
                    high |= KQuantIntegerKernel.FifthBit(qh, (2 * c) + 1);
                }

                ref float at = ref Unsafe.Add(ref y, (b * 256) + (64 * c));
                StoreAffine(low, d * KQuantIntegerKernel.Byte(scales, 2 * c), min * KQuantIntegerKernel.Byte(mins, 2 * c), ref at);
                StoreAffine(high, d * KQuantIntegerKernel.Byte(scales, (2 * c) + 1), min * KQuantIntegerKernel.Byte(mins, (2 * c) + 1), ref Unsafe.Add(ref at, 32));
            }
        }
    }

    /// <summary>32 unsigned codes as scale × q - offset, stored (a multiply, then a subtraction: as the reference).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreAffine(Vector256<byte> codes, float scale, float offset, ref float at)
    {
        var s = Vector256.Create(scale);
        var m = Vector256.Create(offset);
        (Vector256<ushort> lower, Vector256<ushort> upper) = Vector256.Widen(codes);
        ((Vector256.ConvertToSingle(Vector256.WidenLower(lower).AsInt32()) * s) - m).StoreUnsafe(ref at);
        ((Vector256.ConvertToSingle(Vector256.WidenUpper(lower).AsInt32()) * s) - m).StoreUnsafe(ref at, 8);
        ((Vector256.ConvertToSingle(Vector256.WidenLower(upper).AsInt32()) * s) - m).StoreUnsafe(ref at, 16);
        ((Vector256.ConvertToSingle(Vector256.WidenUpper(upper).AsInt32()) * s) - m).StoreUnsafe(ref at, 24);
    }

    /// <summary>
    /// (d × sc) × q - dmin × m per group of 16 (the reference's order, never fused): one 32-byte load of qs[32n..] shifted
    /// by 2t gives values 128n + 32t.. (groups 8n + 2t and 8n + 2t + 1).
    /// </summary>
    private static void Q2_K(ReadOnlySpan<byte> row, Span<float> values, int blocks)
    {
        ref float y = ref MemoryMarshal.GetReference(values);
        ref float half = ref MemoryMarshal.GetArrayDataReference(Q8_0Kernel.HalfToSingle);
        var low2 = Vector256.Create((byte)3);
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> block = row.Slice(b * KQuantBlocks.Q2_KBytes, KQuantBlocks.Q2_KBytes);
            float d = RowOperands.Half(ref half, ref Unsafe.AsRef(in block[80])), dmin = RowOperands.Half(ref half, ref Unsafe.AsRef(in block[82]));
            for (int n = 0; n < 2; n++)
            {
                Vector256<byte> qs = Vector256.Create(block.Slice(16 + (32 * n), 32));
                for (int t = 0; t < 4; t++)
                {
                    Vector256<byte> codes = Vector256.ShiftRightLogical(qs.AsUInt16(), 2 * t).AsByte() & low2;
                    int g = (8 * n) + (2 * t);
                    ref float at = ref Unsafe.Add(ref y, (b * KQuantBlocks.BlockValues) + (16 * g));
                    StoreQ2Group(codes.GetLower(), d, dmin, block[g], ref at);
                    StoreQ2Group(codes.GetUpper(), d, dmin, block[g + 1], ref Unsafe.Add(ref at, 16));
                }
            }
        }
    }

    /// <summary>
    /// (d × (sc - 32)) × q per group of 16 (the reference's order), q = the two low bits (as Q2_K's: qs[32n..] shifted by 2t
    /// gives values 128n + 32t..) | the high bit (bit 4n + t of hmask) × 4, less 4.
    /// </summary>
    private static void Q3_K(ReadOnlySpan<byte> row, Span<float> values, int blocks)
    {
        ref float y = ref MemoryMarshal.GetReference(values);
        ref float half = ref MemoryMarshal.GetArrayDataReference(Q8_0Kernel.HalfToSingle);
        var low2 = Vector256.Create((byte)3);
        Span<sbyte> scales = stackalloc sbyte[16];
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> block = row.Slice(b * WidenedBlocks.Q3_KBytes, WidenedBlocks.Q3_KBytes);
            float d = RowOperands.Half(ref half, ref Unsafe.AsRef(in block[108]));
            WidenedBlocks.Q3_KScales(block, scales);
            Vector256<byte> hmask = Vector256.Create(block[..32]);
            for (int n = 0; n < 2; n++)
            {
                Vector256<byte> qs = Vector256.Create(block.Slice(32 + (32 * n), 32));
                for (int t = 0; t < 4; t++)
                {
                    int k = (4 * n) + t, g = (8 * n) + (2 * t);
                    Vector256<byte> high = Vector256.ShiftRightLogical(hmask, k) & Vector256<byte>.One;
                    Vector256<sbyte> q = ((Vector256.ShiftRightLogical(qs.AsUInt16(), 2 * t).AsByte() & low2) | (high << 2)).AsSByte() - Vector256.Create((sbyte)4);
                    ref float at = ref Unsafe.Add(ref y, (b * KQuantBlocks.BlockValues) + (16 * g));
                    StoreScaledGroup(q.GetLower(), d * scales[g], ref at);
                    StoreScaledGroup(q.GetUpper(), d * scales[g + 1], ref Unsafe.Add(ref at, 16));
                }
            }
        }
    }

    /// <summary>A group's 16 signed codes times <paramref name="scale"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreScaledGroup(Vector128<sbyte> codes, float scale, ref float at)
    {
        var s = Vector256.Create(scale);
        Vector256<short> wide = Vector256.WidenLower(codes.ToVector256Unsafe());
        (Vector256.ConvertToSingle(Vector256.WidenLower(wide)) * s).StoreUnsafe(ref at);
        (Vector256.ConvertToSingle(Vector256.WidenUpper(wide)) * s).StoreUnsafe(ref at, 8);
    }

    /// <summary>A group's 16 codes as (d × sc) × q - dmin × m, sc and m the low and high nibbles of <paramref name="scaleAndMin"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreQ2Group(Vector128<byte> codes, float d, float dmin, byte scaleAndMin, ref float at)
    {
        var scale = Vector256.Create(d * (scaleAndMin & 0xF));
        var min = Vector256.Create(dmin * (scaleAndMin >> 4));
        Vector256<ushort> wide = Vector256.WidenLower(codes.ToVector256Unsafe());
        ((Vector256.ConvertToSingle(Vector256.WidenLower(wide).AsInt32()) * scale) - min).StoreUnsafe(ref at);
        ((Vector256.ConvertToSingle(Vector256.WidenUpper(wide).AsInt32()) * scale) - min).StoreUnsafe(ref at, 8);
    }

    /// <summary>(d × (ls - 32)) × table value per sub-block of 32 (the reference's order), the table looked up by byte shuffles.</summary>
    private static void Iq4_XS(ReadOnlySpan<byte> row, Span<float> values, int blocks)
    {
        ref float y = ref MemoryMarshal.GetReference(values);
        ref float half = ref MemoryMarshal.GetArrayDataReference(Q8_0Kernel.HalfToSingle);
        Vector128<sbyte> table = Vector128.Create(Iq4XsBlocks.NonLinearValues);
        var low4 = Vector128.Create((byte)0x0F);
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> block = row.Slice(b * Iq4XsBlocks.BlockBytes, Iq4XsBlocks.BlockBytes);
            float d = RowOperands.Half(ref half, ref MemoryMarshal.GetReference(block));
            for (int s = 0; s < 8; s++)
            {
                Vector128<byte> qs = Vector128.Create(block.Slice(8 + (16 * s), 16));
                Vector256<sbyte> codes = Vector256.Create(Vector128.Shuffle(table, (qs & low4).AsSByte()), Vector128.Shuffle(table, Vector128.ShiftRightLogical(qs, 4).AsSByte()));
                var scale = Vector256.Create(d * Iq4XsBlocks.SubBlockScale(block, s));
                (Vector256<short> lower, Vector256<short> upper) = Vector256.Widen(codes);
                ref float at = ref Unsafe.Add(ref y, (b * Iq4XsBlocks.BlockValues) + (32 * s));
                (Vector256.ConvertToSingle(Vector256.WidenLower(lower)) * scale).StoreUnsafe(ref at);
                (Vector256.ConvertToSingle(Vector256.WidenUpper(lower)) * scale).StoreUnsafe(ref at, 8);
                (Vector256.ConvertToSingle(Vector256.WidenLower(upper)) * scale).StoreUnsafe(ref at, 16);
                (Vector256.ConvertToSingle(Vector256.WidenUpper(upper)) * scale).StoreUnsafe(ref at, 24);
            }
        }
    }

    /// <summary>(d × scale) × (q - 32) per group of 16 (the reference's order).</summary>
    private static void Q6_K(ReadOnlySpan<byte> row, Span<float> values, int blocks)
    {
        ref byte w = ref MemoryMarshal.GetReference(row);
        ref float y = ref MemoryMarshal.GetReference(values);
        ref float half = ref MemoryMarshal.GetArrayDataReference(Q8_0Kernel.HalfToSingle);
        var offset = Vector256.Create((byte)32);
        for (int b = 0; b < blocks; b++)
        {
            ref byte block = ref Unsafe.Add(ref w, b * 210);
            float d = RowOperands.Half(ref half, ref Unsafe.Add(ref block, 208));
            for (int n = 0; n < 256; n += 128)
            {
                (Vector256<byte> q1, Vector256<byte> q2, Vector256<byte> q3, Vector256<byte> q4) = KQuantIntegerKernel.Q6Quarters(ref block, n);
                ref float at = ref Unsafe.Add(ref y, (b * 256) + n);
                int g = n / 16;
                StoreGroups((q1 - offset).AsSByte(), d, ref block, g, ref at);
                StoreGroups((q2 - offset).AsSByte(), d, ref block, g + 2, ref Unsafe.Add(ref at, 32));
                StoreGroups((q3 - offset).AsSByte(), d, ref block, g + 4, ref Unsafe.Add(ref at, 64));
                StoreGroups((q4 - offset).AsSByte(), d, ref block, g + 6, ref Unsafe.Add(ref at, 96));
            }
        }
    }

    /// <summary>32 signed codes, two groups of 16 with scales g and g + 1 (int8 at byte 192 + g), as (d × scale) × q.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreGroups(Vector256<sbyte> codes, float d, ref byte block, int g, ref float at)
    {
        var first = Vector256.Create(d * (sbyte)Unsafe.Add(ref block, 192 + g));
        var second = Vector256.Create(d * (sbyte)Unsafe.Add(ref block, 193 + g));
        (Vector256<short> lower, Vector256<short> upper) = Vector256.Widen(codes);
        (Vector256.ConvertToSingle(Vector256.WidenLower(lower)) * first).StoreUnsafe(ref at);
        (Vector256.ConvertToSingle(Vector256.WidenUpper(lower)) * first).StoreUnsafe(ref at, 8);
        (Vector256.ConvertToSingle(Vector256.WidenLower(upper)) * second).StoreUnsafe(ref at, 16);
        (Vector256.ConvertToSingle(Vector256.WidenUpper(upper)) * second).StoreUnsafe(ref at, 24);
    }
}
