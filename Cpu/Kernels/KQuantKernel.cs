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
