using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using QwenSharp.Numerics;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Q8_0 rows (<see cref="Q8_0Blocks"/>) widened to f32 for the prefill panels, and the f16 table every block kernel reads
/// its scales from. The vector path widens each block's 32 int8 to four vectors of 8 floats and scales them by the block's
/// d; the scalar path is <see cref="Q8_0Blocks.Dequantize"/>'s arithmetic. Decode dots integers (<see cref="Q8IntegerKernel"/>).
/// </summary>
internal static class Q8_0Kernel
{
    /// <summary>Every f16 bit pattern as f32 (256 KiB, stays in L2): a block's scale in one load, as ggml's table.</summary>
    internal static readonly float[] HalfToSingle = BuildHalfTable();

    private static float[] BuildHalfTable()
    {
        // Pinned: QuantPanel reads it through a pointer.
        float[] table = GC.AllocateUninitializedArray<float>(65536, pinned: true);
        for (int i = 0; i < table.Length; i++)
        {
            table[i] = HalfBits.ToSingle((ushort)i);
        }

        return table;
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
