using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using QwenSharp.Formats;
using QwenSharp.Numerics;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Q4_K and Q6_K rows widened to f32 (<see cref="KQuantBlocks"/>, the format's reference arithmetic): the prefill
/// panels and the embedding. Decode multiplies integers instead (<see cref="KQuantIntegerKernel"/>).
/// </summary>
internal static class KQuantKernel
{
    /// <summary>A row of super-blocks widened to f32.</summary>
    public static void Dequantize(DType type, ReadOnlySpan<byte> row, Span<float> values)
    {
        if (type == DType.Q4_K)
        {
            KQuantBlocks.DequantizeQ4_K(row, values);
        }
        else
        {
            KQuantBlocks.DequantizeQ6_K(row, values);
        }
    }
}

/// <summary>
/// Q4_K and Q6_K weights against activations quantized as Q8_K (<see cref="Q8KActivations"/>): integer products per
/// super-block (unsigned 4- or 6-bit codes times signed 8-bit codes, pairs summed to 16 bits with vpmaddubsw, then
/// weighted by the sub-block scales and summed to 32 bits with vpmaddwd), the mins and Q6_K's offset of 32 from the
/// activations' sums of 16, and one float multiply-add per super-block into float vectors summed once per row (as
/// ggml's vec_dot_q4_K_q8_K). The integers are exact on every path; only the float additions' order differs from
/// the scalar reference.
/// </summary>
internal static class KQuantIntegerKernel
{
    private const int Values = KQuantBlocks.BlockValues;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Dot(KernelPath path, DType type, ReadOnlySpan<byte> row, ReadOnlySpan<sbyte> codes, ReadOnlySpan<float> scales, ReadOnlySpan<int> sums)
    {
        bool wide = path == KernelPath.Vector512 && Avx512BW.IsSupported;
        bool avx2 = path != KernelPath.Scalar && Avx2.IsSupported;
        float[] half = Q8_0Kernel.HalfToSingle;
        ref byte w = ref MemoryMarshal.GetReference(row);
        ref sbyte x = ref MemoryMarshal.GetReference(codes);
        ref int bsums = ref MemoryMarshal.GetReference(sums);
        ref float xd = ref MemoryMarshal.GetReference(scales);
        int blocks = codes.Length / Values;

        // Vector paths keep float vectors across super-blocks (a block's integer sums converted and scaled in place,
        // one horizontal sum per row); the scalar path adds each block's total in order.
        Vector256<float> acc = default, mins = default;
        float total = 0;
        if (type == DType.Q4_K)
        {
            for (int b = 0; b < blocks; b++)
            {
                ref byte block = ref Unsafe.Add(ref w, b * 144);
                ref sbyte q8 = ref Unsafe.Add(ref x, b * Values);
                ref int blockSums = ref Unsafe.Add(ref bsums, b * 16);
                (ulong subScales, ulong subMins) = UnpackScalesAndMins(ref Unsafe.Add(ref block, 4));
                float dx = Unsafe.Add(ref xd, b);
                float d = dx * half[Unsafe.ReadUnaligned<ushort>(ref block)], dmin = dx * half[Unsafe.ReadUnaligned<ushort>(ref Unsafe.Add(ref block, 2))];
                if (avx2)
                {
                    Vector256<int> sumi = wide ? Q4K512(ref block, ref q8, subScales) : Q4K256(ref block, ref q8, subScales);
                    acc = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(sumi), Vector256.Create(d), acc);
                    mins = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(MinsTimesSums(subMins, ref blockSums)), Vector256.Create(dmin), mins);
                }
                else
                {
                    total += (d * Q4KScalar(ref block, ref q8, subScales)) - (dmin * MinsTimesSumsScalar(subMins, ref blockSums));
                }
            }
        }
        else
        {
            for (int b = 0; b < blocks; b++)
            {
                ref byte block = ref Unsafe.Add(ref w, b * 210);
                ref sbyte q8 = ref Unsafe.Add(ref x, b * Values);
                ref int blockSums = ref Unsafe.Add(ref bsums, b * 16);
                float d = Unsafe.Add(ref xd, b) * half[Unsafe.ReadUnaligned<ushort>(ref Unsafe.Add(ref block, 208))];

                // The codes are stored + 32: 32 × scale × Σ activation codes per 16 values comes back out.
                if (avx2)
                {
                    Vector256<int> sumi = (wide ? Q6K512(ref block, ref q8) : Q6K256(ref block, ref q8)) - (ScalesTimesSums(ref Unsafe.Add(ref block, 192), ref blockSums) * 32);
                    acc = Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(sumi), Vector256.Create(d), acc);
                }
                else
                {
                    total += d * (Q6KScalar(ref block, ref q8) - (32 * ScalesTimesSumsScalar(ref Unsafe.Add(ref block, 192), ref blockSums)));
                }
            }
        }

        return avx2 ? Vector256.Sum(acc) - Vector256.Sum(mins) : total;
    }

    /// <summary>min_j × (activation codes summed over sub-block j's 32 values), per sub-block: the Q4_K mins' share.</summary>
    private static Vector256<int> MinsTimesSums(ulong subMins, ref int sums)
    {
        // Sums of 16 added in pairs (vphaddd pairs within 128-bit lanes, then the lanes put back in order).
        Vector256<int> pairs = Avx2.Permute4x64(Avx2.HorizontalAdd(Vector256.LoadUnsafe(ref sums), Vector256.LoadUnsafe(ref sums, 8)).AsInt64(), 0b11_01_10_00).AsInt32();
        return Avx2.MultiplyLow(Avx2.ConvertToVector256Int32(Vector128.CreateScalar(subMins).AsByte()), pairs);
    }

    private static int MinsTimesSumsScalar(ulong subMins, ref int sums)
    {
        int total = 0;
        for (int j = 0; j < 8; j++)
        {
            total += (int)((subMins >> (8 * j)) & 0xFF) * (Unsafe.Add(ref sums, 2 * j) + Unsafe.Add(ref sums, (2 * j) + 1));
        }

        return total;
    }

    /// <summary>scale_g × (activation codes summed over group g's 16 values), two groups per lane: Q6_K's offset of 32.</summary>
    private static Vector256<int> ScalesTimesSums(ref byte scales, ref int sums)
    {
        ref sbyte signed = ref Unsafe.As<byte, sbyte>(ref scales);
        Vector256<int> low = Avx2.ConvertToVector256Int32(Vector128.LoadUnsafe(ref signed));
        Vector256<int> high = Avx2.ConvertToVector256Int32(Vector128.LoadUnsafe(ref Unsafe.Add(ref signed, 8)));
        return Avx2.MultiplyLow(low, Vector256.LoadUnsafe(ref sums)) + Avx2.MultiplyLow(high, Vector256.LoadUnsafe(ref sums, 8));
    }

    private static int ScalesTimesSumsScalar(ref byte scales, ref int sums)
    {
        int total = 0;
        for (int g = 0; g < 16; g++)
        {
            total += (sbyte)Unsafe.Add(ref scales, g) * Unsafe.Add(ref sums, g);
        }

        return total;
    }

    /// <summary>
    /// The 8 six-bit scales and the 8 mins (a byte each, sub-block j in byte j) of a Q4_K super-block from its 12 packed bytes, with
    /// ggml's 32-bit masks (as its vec_dot_q4_K): sub-blocks 0-3 in the low 6 bits of bytes 0-3 (scales) and 4-7
    /// (mins); 4-7 from the nibbles of bytes 8-11 and the top 2 bits of bytes 0-7.
    /// </summary>
    private static (ulong Scales, ulong Mins) UnpackScalesAndMins(ref byte packed)
    {
        const uint Six = 0x3f3f3f3f, Four = 0x0f0f0f0f, Two = 0x03030303;
        uint a = Unsafe.ReadUnaligned<uint>(ref packed), b = Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref packed, 4)), c = Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref packed, 8));
        ulong scales = (a & Six) | ((ulong)((c & Four) | (((a >> 6) & Two) << 4)) << 32);
        ulong mins = (b & Six) | ((ulong)(((c >> 4) & Four) | (((b >> 6) & Two) << 4)) << 32);
        return (scales, mins);
    }

    /// <summary>Byte <paramref name="j"/> of unpacked scales or mins.</summary>
    private static short Byte(ulong packed, int j) => (short)((packed >> (8 * j)) & 0xFF);

    /// <summary>Σ_j scale_j Σ code × activation over a Q4_K super-block (codes 0..15).</summary>
    private static int Q4KScalar(ref byte block, ref sbyte q8, ulong subScales)
    {
        int sumi = 0;
        for (int c = 0; c < 4; c++)
        {
            int low = 0, high = 0;
            for (int l = 0; l < 32; l++)
            {
                byte packed = Unsafe.Add(ref block, 16 + (32 * c) + l);
                low += (packed & 0xF) * Unsafe.Add(ref q8, (64 * c) + l);
                high += (packed >> 4) * Unsafe.Add(ref q8, (64 * c) + 32 + l);
            }

            sumi += (Byte(subScales, 2 * c) * low) + (Byte(subScales, (2 * c) + 1) * high);
        }

        return sumi;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static Vector256<int> Q4K512(ref byte block, ref sbyte x, ulong subScales)
    {
        ref byte qs = ref Unsafe.Add(ref block, 16);
        var mask = Vector256.Create((byte)0x0F);
        Vector512<int> acc = default;
        for (int c = 0; c < 4; c++)
        {
            // 32 bytes: low nibbles are the 32 values of sub-block 2c, high nibbles those of 2c + 1, which the
            // activations hold right after: one 64-byte product.
            Vector256<byte> packed = Vector256.LoadUnsafe(ref qs, (nuint)(32 * c));
            Vector512<byte> codes = Vector512.Create(packed & mask, Vector256.ShiftRightLogical(packed.AsUInt16(), 4).AsByte() & mask);
            Vector512<short> pairs = Avx512BW.MultiplyAddAdjacent(codes, Vector512.LoadUnsafe(ref x, (nuint)(64 * c)));
            var weights = Vector512.Create(Vector256.Create(Byte(subScales, 2 * c)), Vector256.Create(Byte(subScales, (2 * c) + 1)));
            acc += Avx512BW.MultiplyAddAdjacent(pairs, weights);
        }

        return acc.GetLower() + acc.GetUpper();
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static Vector256<int> Q4K256(ref byte block, ref sbyte x, ulong subScales)
    {
        ref byte qs = ref Unsafe.Add(ref block, 16);
        var mask = Vector256.Create((byte)0x0F);
        Vector256<int> acc = default;
        for (int c = 0; c < 4; c++)
        {
            Vector256<byte> packed = Vector256.LoadUnsafe(ref qs, (nuint)(32 * c));
            Vector256<short> low = Avx2.MultiplyAddAdjacent(packed & mask, Vector256.LoadUnsafe(ref x, (nuint)(64 * c)));
            Vector256<short> high = Avx2.MultiplyAddAdjacent(Vector256.ShiftRightLogical(packed.AsUInt16(), 4).AsByte() & mask, Vector256.LoadUnsafe(ref x, (nuint)((64 * c) + 32)));
            acc += Avx2.MultiplyAddAdjacent(low, Vector256.Create(Byte(subScales, 2 * c)));
            acc += Avx2.MultiplyAddAdjacent(high, Vector256.Create(Byte(subScales, (2 * c) + 1)));
        }

        return acc;
    }

    /// <summary>Σ_g scale_g Σ code × activation over a Q6_K super-block, codes as stored (0..63, the offset of 32 not yet taken out).</summary>
    private static int Q6KScalar(ref byte blockStart, ref sbyte q8Start)
    {
        ReadOnlySpan<byte> block = MemoryMarshal.CreateReadOnlySpan(ref blockStart, 210);
        ReadOnlySpan<sbyte> q8 = MemoryMarshal.CreateReadOnlySpan(ref q8Start, Values);
        int sumi = 0;
        for (int n = 0; n < Values; n += 128)
        {
            ReadOnlySpan<byte> ql = block.Slice(n / 2, 64), qh = block.Slice(128 + (n / 4), 32);
            for (int quarter = 0; quarter < 4; quarter++)
            {
                for (int half = 0; half < 2; half++)
                {
                    int group = 0;
                    for (int l = 16 * half; l < (16 * half) + 16; l++)
                    {
                        byte low = ql[l + (32 * (quarter & 1))];
                        int code = (quarter < 2 ? low & 0xF : low >> 4) | (((qh[l] >> (2 * quarter)) & 3) << 4);
                        group += code * q8[n + (32 * quarter) + l];
                    }

                    sumi += (sbyte)block[192 + ((n + (32 * quarter) + (16 * half)) / 16)] * group;
                }
            }
        }

        return sumi;
    }

    /// <summary>The four quarters' codes (0..63) of one 128-value half: values n..n+31, n+32.., n+64.., n+96...</summary>
    private static (Vector256<byte>, Vector256<byte>, Vector256<byte>, Vector256<byte>) Q6Quarters(ref byte block, int n)
    {
        ref byte ql = ref Unsafe.Add(ref block, n / 2);
        Vector256<byte> a = Vector256.LoadUnsafe(ref ql), b = Vector256.LoadUnsafe(ref ql, 32);
        Vector256<ushort> h = Vector256.LoadUnsafe(ref Unsafe.Add(ref block, 128 + (n / 4))).AsUInt16();
        var low4 = Vector256.Create((byte)0x0F);
        var two = Vector256.Create((byte)3);
        Vector256<byte> High(int shift) => (Vector256.ShiftLeft((Vector256.ShiftRightLogical(h, shift).AsByte() & two).AsUInt16(), 4)).AsByte();
        return ((a & low4) | High(0), (b & low4) | High(2),
                (Vector256.ShiftRightLogical(a.AsUInt16(), 4).AsByte() & low4) | High(4),
                (Vector256.ShiftRightLogical(b.AsUInt16(), 4).AsByte() & low4) | High(6));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static Vector256<int> Q6K512(ref byte w, ref sbyte x)
    {
        // The 16 scales sign-extended to shorts once, then spread so each covers the 8 pair sums of its 16 values.
        Vector256<short> scales = Avx2.ConvertToVector256Int16(Vector128.LoadUnsafe(ref Unsafe.As<byte, sbyte>(ref Unsafe.Add(ref w, 192))));
        Vector512<short> table = Vector512.Create(scales, scales);
        Vector512<int> acc = default;
        for (int n = 0, g = 0; n < Values; n += 128, g += 8)
        {
            (Vector256<byte> q1, Vector256<byte> q2, Vector256<byte> q3, Vector256<byte> q4) = Q6Quarters(ref w, n);
            acc += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(Vector512.Create(q1, q2), Vector512.LoadUnsafe(ref x, (nuint)n)),
                Avx512BW.PermuteVar32x16(table, s_spread[g / 4]));
            acc += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(Vector512.Create(q3, q4), Vector512.LoadUnsafe(ref x, (nuint)(n + 64))),
                Avx512BW.PermuteVar32x16(table, s_spread[(g / 4) + 1]));
        }

        return acc.GetLower() + acc.GetUpper();
    }

    private static readonly Vector512<short>[] s_spread = [SpreadIndex(0), SpreadIndex(4), SpreadIndex(8), SpreadIndex(12)];

    /// <summary>Indexes g, g+1, g+2, g+3 each repeated 8 times: four 16-value scales over 32 pair sums.</summary>
    private static Vector512<short> SpreadIndex(int g) => Vector512.Create(
        Vector256.Create(Vector128.Create((short)g), Vector128.Create((short)(g + 1))),
        Vector256.Create(Vector128.Create((short)(g + 2)), Vector128.Create((short)(g + 3))));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static Vector256<int> Q6K256(ref byte w, ref sbyte x)
    {
        ReadOnlySpan<byte> block = MemoryMarshal.CreateReadOnlySpan(ref w, 210);
        Vector256<int> acc = default;
        for (int n = 0; n < Values; n += 128)
        {
            (Vector256<byte> q1, Vector256<byte> q2, Vector256<byte> q3, Vector256<byte> q4) = Q6Quarters(ref w, n);
            int g = n / 16;
            acc += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q1, Vector256.LoadUnsafe(ref x, (nuint)n)), Scales256(block, g));
            acc += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q2, Vector256.LoadUnsafe(ref x, (nuint)(n + 32))), Scales256(block, g + 2));
            acc += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q3, Vector256.LoadUnsafe(ref x, (nuint)(n + 64))), Scales256(block, g + 4));
            acc += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q4, Vector256.LoadUnsafe(ref x, (nuint)(n + 96))), Scales256(block, g + 6));
        }

        return acc;
    }

    private static Vector256<short> Scales256(ReadOnlySpan<byte> block, int group) =>
        Vector256.Create(Vector128.Create((short)(sbyte)block[192 + group]), Vector128.Create((short)(sbyte)block[193 + group]));
}
