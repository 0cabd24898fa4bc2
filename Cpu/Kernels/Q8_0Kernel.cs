using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using QwenSharp.Numerics;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Q8_0 weights (<see cref="Q8_0Blocks"/>) against f32 activations: a row's dot product, and a row widened to f32
/// for the prefill panels. The vector path widens each block's 32 int8 to four vectors of 8 floats, scales them by
/// the block's d and multiply-adds them with x; the scalar path is <see cref="Q8_0Blocks.Dequantize"/>'s arithmetic.
/// </summary>
internal static class Q8_0Kernel
{
    /// <summary>Σ w[j] x[j] over a row of whole blocks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Dot(KernelPath path, ReadOnlySpan<byte> row, ReadOnlySpan<float> x)
    {
        int blocks = x.Length / Q8_0Blocks.BlockValues;
        if (path == KernelPath.Scalar)
        {
            float sum = 0;
            for (int b = 0; b < blocks; b++)
            {
                ReadOnlySpan<byte> block = row.Slice(b * Q8_0Blocks.BlockBytes, Q8_0Blocks.BlockBytes);
                float d = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block));
                float blockSum = 0;
                for (int j = 0; j < Q8_0Blocks.BlockValues; j++)
                {
                    blockSum += (sbyte)block[2 + j] * x[(b * Q8_0Blocks.BlockValues) + j];
                }

                sum += d * blockSum;
            }

            return sum;
        }

        ref byte w = ref MemoryMarshal.GetReference(row);
        ref float xr = ref MemoryMarshal.GetReference(x);
        Vector256<float> acc0 = default, acc1 = default;
        for (int b = 0; b < blocks; b++)
        {
            ref byte block = ref Unsafe.Add(ref w, b * Q8_0Blocks.BlockBytes);
            var d = Vector256.Create(HalfBits.ToSingle(Unsafe.ReadUnaligned<ushort>(ref block)));
            (Vector256<float> q0, Vector256<float> q1, Vector256<float> q2, Vector256<float> q3) = Widen(ref Unsafe.Add(ref block, 2));
            nuint at = (nuint)(b * Q8_0Blocks.BlockValues);
            acc0 = Vector256.FusedMultiplyAdd(q0 * d, Vector256.LoadUnsafe(ref xr, at), acc0);
            acc1 = Vector256.FusedMultiplyAdd(q1 * d, Vector256.LoadUnsafe(ref xr, at + 8), acc1);
            acc0 = Vector256.FusedMultiplyAdd(q2 * d, Vector256.LoadUnsafe(ref xr, at + 16), acc0);
            acc1 = Vector256.FusedMultiplyAdd(q3 * d, Vector256.LoadUnsafe(ref xr, at + 24), acc1);
        }

        return Vector256.Sum(acc0 + acc1);
    }

    /// <summary>A row of whole blocks as f32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Dequantize(KernelPath path, ReadOnlySpan<byte> row, Span<float> values)
    {
        if (path == KernelPath.Scalar)
        {
            Q8_0Blocks.Dequantize(row, values);
            return;
        }

        int blocks = values.Length / Q8_0Blocks.BlockValues;
        ref byte w = ref MemoryMarshal.GetReference(row);
        ref float y = ref MemoryMarshal.GetReference(values);
        for (int b = 0; b < blocks; b++)
        {
            ref byte block = ref Unsafe.Add(ref w, b * Q8_0Blocks.BlockBytes);
            var d = Vector256.Create(HalfBits.ToSingle(Unsafe.ReadUnaligned<ushort>(ref block)));
            (Vector256<float> q0, Vector256<float> q1, Vector256<float> q2, Vector256<float> q3) = Widen(ref Unsafe.Add(ref block, 2));
            nuint at = (nuint)(b * Q8_0Blocks.BlockValues);
            (q0 * d).StoreUnsafe(ref y, at);
            (q1 * d).StoreUnsafe(ref y, at + 8);
            (q2 * d).StoreUnsafe(ref y, at + 16);
            (q3 * d).StoreUnsafe(ref y, at + 24);
        }
    }

    /// <summary>32 int8 as four vectors of 8 floats (sbyte → short → int → float, each exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<float>, Vector256<float>, Vector256<float>, Vector256<float>) Widen(ref byte q)
    {
        Vector256<sbyte> bytes = Vector256.LoadUnsafe(ref Unsafe.As<byte, sbyte>(ref q));
        Vector256<short> low = Vector256.WidenLower(bytes), high = Vector256.WidenUpper(bytes);
        return (Vector256.ConvertToSingle(Vector256.WidenLower(low)), Vector256.ConvertToSingle(Vector256.WidenUpper(low)),
            Vector256.ConvertToSingle(Vector256.WidenLower(high)), Vector256.ConvertToSingle(Vector256.WidenUpper(high)));
    }
}
