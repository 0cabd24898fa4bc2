using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using QwenSharp.Formats;
using QwenSharp.Numerics;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Q4_K and Q6_K weights (<see cref="KQuantBlocks"/>) against f32 activations, read as stored (4.5 and 6.6 bits per
/// weight). The vector paths unpack 16 codes at a time to floats, turn them into weights with one multiply-add
/// (Q4_K: code × d·scale − dmin·min; Q6_K: code × d·scale − 32·d·scale) and multiply-add those with x. The scalar
/// path dequantizes each super-block with <see cref="KQuantBlocks"/>, the format's reference arithmetic, and dots it.
/// </summary>
internal static class KQuantKernel
{
    private const int Q4KBytes = 144, Q6KBytes = 210, Values = KQuantBlocks.BlockValues;

    /// <summary>Σ w[j] x[j] over a row of whole super-blocks of <paramref name="type"/> (Q4_K or Q6_K).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Dot(KernelPath path, DType type, ReadOnlySpan<byte> row, ReadOnlySpan<float> x)
    {
        if (path == KernelPath.Scalar || !Avx2.IsSupported)
        {
            return DotReference(type, row, x);
        }

        bool wide = path == KernelPath.Vector512 && Avx512F.IsSupported;
        return type switch
        {
            DType.Q4_K => wide ? DotQ4_K512(row, x) : DotQ4_K256(row, x),
            DType.Q6_K => wide ? DotQ6_K512(row, x) : DotQ6_K256(row, x),
            _ => throw new ArgumentOutOfRangeException(nameof(type), type, "not a k-quant type"),
        };
    }

    /// <summary>A row of super-blocks widened to f32 (the prefill panels, the embedding).</summary>
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

    /// <summary>The reference: each super-block dequantized as the format defines it, then dotted in order.</summary>
    private static float DotReference(DType type, ReadOnlySpan<byte> row, ReadOnlySpan<float> x)
    {
        int blockBytes = DTypes.BlockBytes(type);
        Span<float> w = stackalloc float[Values];
        float sum = 0;
        for (int b = 0; b < x.Length / Values; b++)
        {
            Dequantize(type, row.Slice(b * blockBytes, blockBytes), w);
            ReadOnlySpan<float> xb = x.Slice(b * Values, Values);
            for (int j = 0; j < Values; j++)
            {
                sum += w[j] * xb[j];
            }
        }

        return sum;
    }

    private static float Half(ref byte at) => HalfBits.ToSingle(Unsafe.ReadUnaligned<ushort>(ref at));

    /// <summary>ggml's get_scale_min_k4 for sub-block <paramref name="j"/> (see <see cref="KQuantBlocks"/>).</summary>
    private static (int Scale, int Min) ScaleMin(ref byte scales, int j)
    {
        if (j < 4)
        {
            return (Unsafe.Add(ref scales, j) & 63, Unsafe.Add(ref scales, j + 4) & 63);
        }

        return ((Unsafe.Add(ref scales, j + 4) & 0xF) | ((Unsafe.Add(ref scales, j - 4) >> 6) << 4),
            (Unsafe.Add(ref scales, j + 4) >> 4) | ((Unsafe.Add(ref scales, j) >> 6) << 4));
    }

    private static Vector128<byte> Low(Vector128<byte> b) => b & Vector128.Create((byte)0x0F);

    private static Vector128<byte> High(Vector128<byte> b) => Vector128.ShiftRightLogical(b.AsUInt16(), 4).AsByte() & Vector128.Create((byte)0x0F);

    /// <summary>16 bytes zero-extended to 16 floats.</summary>
    private static Vector512<float> Floats512(Vector128<byte> b) => Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(b));

    /// <summary>The low and high 8 of 16 bytes, zero-extended to floats.</summary>
    private static (Vector256<float> Low, Vector256<float> High) Floats256(Vector128<byte> b) =>
        (Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(b)),
         Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(b, 8))));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float DotQ4_K512(ReadOnlySpan<byte> row, ReadOnlySpan<float> x)
    {
        ref byte w = ref MemoryMarshal.GetReference(row);
        ref float xr = ref MemoryMarshal.GetReference(x);
        Vector512<float> acc0 = default, acc1 = default;
        for (int b = 0; b < x.Length / Values; b++)
        {
            ref byte block = ref Unsafe.Add(ref w, b * Q4KBytes);
            float d = Half(ref block), dmin = Half(ref Unsafe.Add(ref block, 2));
            ref byte scales = ref Unsafe.Add(ref block, 4);
            ref byte qs = ref Unsafe.Add(ref block, 16);
            ref float xb = ref Unsafe.Add(ref xr, b * Values);
            for (int c = 0; c < 4; c++)
            {
                // 64 values: the low nibbles of 32 bytes are sub-block 2c, the high nibbles sub-block 2c + 1.
                (int s1, int m1) = ScaleMin(ref scales, 2 * c);
                (int s2, int m2) = ScaleMin(ref scales, (2 * c) + 1);
                Vector512<float> d1 = Vector512.Create(d * s1), d2 = Vector512.Create(d * s2);
                Vector512<float> n1 = Vector512.Create(-dmin * m1), n2 = Vector512.Create(-dmin * m2);
                for (int h = 0; h < 2; h++)
                {
                    Vector128<byte> q = Vector128.LoadUnsafe(ref qs, (nuint)((32 * c) + (16 * h)));
                    nuint at = (nuint)((64 * c) + (16 * h));
                    acc0 = Vector512.FusedMultiplyAdd(Vector512.FusedMultiplyAdd(Floats512(Low(q)), d1, n1), Vector512.LoadUnsafe(ref xb, at), acc0);
                    acc1 = Vector512.FusedMultiplyAdd(Vector512.FusedMultiplyAdd(Floats512(High(q)), d2, n2), Vector512.LoadUnsafe(ref xb, at + 32), acc1);
                }
            }
        }

        return Vector512.Sum(acc0 + acc1);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float DotQ4_K256(ReadOnlySpan<byte> row, ReadOnlySpan<float> x)
    {
        ref byte w = ref MemoryMarshal.GetReference(row);
        ref float xr = ref MemoryMarshal.GetReference(x);
        Vector256<float> acc0 = default, acc1 = default;
        for (int b = 0; b < x.Length / Values; b++)
        {
            ref byte block = ref Unsafe.Add(ref w, b * Q4KBytes);
            float d = Half(ref block), dmin = Half(ref Unsafe.Add(ref block, 2));
            ref byte scales = ref Unsafe.Add(ref block, 4);
            ref byte qs = ref Unsafe.Add(ref block, 16);
            ref float xb = ref Unsafe.Add(ref xr, b * Values);
            for (int c = 0; c < 4; c++)
            {
                (int s1, int m1) = ScaleMin(ref scales, 2 * c);
                (int s2, int m2) = ScaleMin(ref scales, (2 * c) + 1);
                Vector256<float> d1 = Vector256.Create(d * s1), d2 = Vector256.Create(d * s2);
                Vector256<float> n1 = Vector256.Create(-dmin * m1), n2 = Vector256.Create(-dmin * m2);
                for (int h = 0; h < 2; h++)
                {
                    Vector128<byte> q = Vector128.LoadUnsafe(ref qs, (nuint)((32 * c) + (16 * h)));
                    nuint at = (nuint)((64 * c) + (16 * h));
                    (Vector256<float> l0, Vector256<float> l1) = Floats256(Low(q));
                    (Vector256<float> h0, Vector256<float> h1) = Floats256(High(q));
                    acc0 = Vector256.FusedMultiplyAdd(Vector256.FusedMultiplyAdd(l0, d1, n1), Vector256.LoadUnsafe(ref xb, at), acc0);
                    acc1 = Vector256.FusedMultiplyAdd(Vector256.FusedMultiplyAdd(l1, d1, n1), Vector256.LoadUnsafe(ref xb, at + 8), acc1);
                    acc0 = Vector256.FusedMultiplyAdd(Vector256.FusedMultiplyAdd(h0, d2, n2), Vector256.LoadUnsafe(ref xb, at + 32), acc0);
                    acc1 = Vector256.FusedMultiplyAdd(Vector256.FusedMultiplyAdd(h1, d2, n2), Vector256.LoadUnsafe(ref xb, at + 40), acc1);
                }
            }
        }

        return Vector256.Sum(acc0 + acc1);
    }

    /// <summary>
    /// Q6_K codes of 16 values at l..l+15 of a 128-value half: ql[l] and ql[l+32] give the low 4 bits of the four
    /// quarter-rows, qh[l] their top 2 bits (bits 0-1, 2-3, 4-5, 6-7), codes 0..63 with 32 subtracted later.
    /// </summary>
    private static (Vector128<byte> Q1, Vector128<byte> Q2, Vector128<byte> Q3, Vector128<byte> Q4) Q6Codes(ref byte ql, ref byte qh, int l)
    {
        Vector128<byte> a = Vector128.LoadUnsafe(ref ql, (nuint)l), b = Vector128.LoadUnsafe(ref ql, (nuint)(l + 32));
        Vector128<byte> h = Vector128.LoadUnsafe(ref qh, (nuint)l);
        Vector128<byte> three = Vector128.Create((byte)3);
        return (Low(a) | Vector128.ShiftLeft(h & three, 4),
                Low(b) | Vector128.ShiftLeft(Vector128.ShiftRightLogical(h, 2) & three, 4),
                High(a) | Vector128.ShiftLeft(Vector128.ShiftRightLogical(h, 4) & three, 4),
                High(b) | Vector128.ShiftLeft(Vector128.ShiftRightLogical(h, 6) & three, 4));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float DotQ6_K512(ReadOnlySpan<byte> row, ReadOnlySpan<float> x)
    {
        ref byte w = ref MemoryMarshal.GetReference(row);
        ref float xr = ref MemoryMarshal.GetReference(x);
        Vector512<float> acc0 = default, acc1 = default;
        for (int b = 0; b < x.Length / Values; b++)
        {
            ref byte block = ref Unsafe.Add(ref w, b * Q6KBytes);
            float d = Half(ref Unsafe.Add(ref block, 208));
            for (int n = 0; n < Values; n += 128)
            {
                ref byte ql = ref Unsafe.Add(ref block, n / 2);
                ref byte qh = ref Unsafe.Add(ref block, 128 + (n / 4));
                ref byte sc = ref Unsafe.Add(ref block, 192 + (n / 16));
                ref float xb = ref Unsafe.Add(ref xr, (b * Values) + n);
                for (int l = 0; l < 32; l += 16)
                {
                    (Vector128<byte> q1, Vector128<byte> q2, Vector128<byte> q3, Vector128<byte> q4) = Q6Codes(ref ql, ref qh, l);
                    int s = l / 16;
                    acc0 = Q6Term512(q1, d * (sbyte)Unsafe.Add(ref sc, s), ref xb, l, acc0);
                    acc1 = Q6Term512(q2, d * (sbyte)Unsafe.Add(ref sc, s + 2), ref xb, l + 32, acc1);
                    acc0 = Q6Term512(q3, d * (sbyte)Unsafe.Add(ref sc, s + 4), ref xb, l + 64, acc0);
                    acc1 = Q6Term512(q4, d * (sbyte)Unsafe.Add(ref sc, s + 6), ref xb, l + 96, acc1);
                }
            }
        }

        return Vector512.Sum(acc0 + acc1);
    }

    /// <summary>acc + ((code − 32) × scale) · x over 16 values.</summary>
    private static Vector512<float> Q6Term512(Vector128<byte> codes, float scale, ref float x, int at, Vector512<float> acc)
    {
        var vs = Vector512.Create(scale);
        return Vector512.FusedMultiplyAdd(Vector512.FusedMultiplyAdd(Floats512(codes), vs, Vector512.Create(-32f * scale)), Vector512.LoadUnsafe(ref x, (nuint)at), acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float DotQ6_K256(ReadOnlySpan<byte> row, ReadOnlySpan<float> x)
    {
        ref byte w = ref MemoryMarshal.GetReference(row);
        ref float xr = ref MemoryMarshal.GetReference(x);
        Vector256<float> acc0 = default, acc1 = default;
        for (int b = 0; b < x.Length / Values; b++)
        {
            ref byte block = ref Unsafe.Add(ref w, b * Q6KBytes);
            float d = Half(ref Unsafe.Add(ref block, 208));
            for (int n = 0; n < Values; n += 128)
            {
                ref byte ql = ref Unsafe.Add(ref block, n / 2);
                ref byte qh = ref Unsafe.Add(ref block, 128 + (n / 4));
                ref byte sc = ref Unsafe.Add(ref block, 192 + (n / 16));
                ref float xb = ref Unsafe.Add(ref xr, (b * Values) + n);
                for (int l = 0; l < 32; l += 16)
                {
                    (Vector128<byte> q1, Vector128<byte> q2, Vector128<byte> q3, Vector128<byte> q4) = Q6Codes(ref ql, ref qh, l);
                    int s = l / 16;
                    (acc0, acc1) = Q6Term256(q1, d * (sbyte)Unsafe.Add(ref sc, s), ref xb, l, acc0, acc1);
                    (acc0, acc1) = Q6Term256(q2, d * (sbyte)Unsafe.Add(ref sc, s + 2), ref xb, l + 32, acc0, acc1);
                    (acc0, acc1) = Q6Term256(q3, d * (sbyte)Unsafe.Add(ref sc, s + 4), ref xb, l + 64, acc0, acc1);
                    (acc0, acc1) = Q6Term256(q4, d * (sbyte)Unsafe.Add(ref sc, s + 6), ref xb, l + 96, acc0, acc1);
                }
            }
        }

        return Vector256.Sum(acc0 + acc1);
    }

    private static (Vector256<float>, Vector256<float>) Q6Term256(Vector128<byte> codes, float scale, ref float x, int at, Vector256<float> acc0, Vector256<float> acc1)
    {
        var vs = Vector256.Create(scale);
        var offset = Vector256.Create(-32f * scale);
        (Vector256<float> lo, Vector256<float> hi) = Floats256(codes);
        return (Vector256.FusedMultiplyAdd(Vector256.FusedMultiplyAdd(lo, vs, offset), Vector256.LoadUnsafe(ref x, (nuint)at), acc0),
                Vector256.FusedMultiplyAdd(Vector256.FusedMultiplyAdd(hi, vs, offset), Vector256.LoadUnsafe(ref x, (nuint)(at + 8)), acc1));
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
