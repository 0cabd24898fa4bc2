using System.Runtime.InteropServices;
using QwenSharp.Numerics;

namespace QwenSharp.Formats;

/// <summary>A stored tensor's values as f32 (for conversion and quantization at load or export, not for kernels).</summary>
public static class TensorValues
{
    public static float[] ToSingle(TensorView tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        var values = new float[tensor.ElementCount];
        ToSingle(tensor.DType, tensor.Bytes, values, tensor.Name);
        return values;
    }

    /// <summary>
    /// A matrix stored again as <paramref name="type"/>, row by row (no f32 copy of the whole matrix; rows in parallel
    /// chunks): rows of whole blocks convert on their own, so the bytes equal those of converting the matrix at once.
    /// Q4_0, Q5_0 and IQ4_NL to Q8_0 and Q3_K to Q6_K are exact (<see cref="LegacyQuantBlocks.WidenQ4_0ToQ8_0"/>,
    /// <see cref="LegacyQuantBlocks.WidenQ5_0ToQ8_0"/>, <see cref="WidenedBlocks"/>).
    /// </summary>
    /// <param name="importance">One weight per column (an importance matrix's, <see cref="ImportanceMatrix.ImportanceOf"/>):
    /// each row quantized by <see cref="ImportanceQuantizer"/> where <paramref name="type"/> has a weighted form; null for none.</param>
    public static unsafe void RowsAs(TensorView matrix, DType type, Span<byte> destination, float[]? importance = null)
    {
        ArgumentNullException.ThrowIfNull(matrix);
        long rows = matrix.Shape[0];
        int cols = checked((int)matrix.Shape[1]);
        int rowIn = checked((int)DTypes.ByteLength(matrix.DType, cols)), rowOut = checked((int)DTypes.ByteLength(type, cols));
        if (rows == 0)
        {
            return;
        }

        if (destination.Length < rows * rowOut)
        {
            throw new ArgumentException($"tensor '{matrix.Name}': {rows} rows of {DTypes.Name(type)} need {rows * rowOut} bytes, the destination has {destination.Length}", nameof(destination));
        }

        bool weighted = importance is not null && ImportanceQuantizer.Weighs(type);
        if (weighted && importance!.Length != cols)
        {
            throw new ArgumentException($"tensor '{matrix.Name}': {importance.Length} importances for rows of {cols}", nameof(importance));
        }

        // Row 0 first on this thread, so an unsupported type fails here with its own exception; then the rest in chunks
        // on all cores (the k-quant quantizers search 20 candidate scales per 16 or 32 values: a 1.5B model took a
        // minute on one core).
        byte* source = (byte*)matrix.Data;
        fixed (byte* target = destination)
        {
            Row(source, target, 0, new float[cols]);
            nint targetAddress = (nint)target;
            const int ChunkRows = 64;
            long chunks = (rows - 1 + ChunkRows - 1) / ChunkRows;
            Parallel.For(0L, chunks, () => new float[cols], (chunk, _, values) =>
            {
                for (long r = 1 + (chunk * ChunkRows); r < Math.Min(rows, 1 + ((chunk + 1) * ChunkRows)); r++)
                {
                    Row(source, (byte*)targetAddress, r, values);
                }

                return values;
            }, _ => { });
        }

        void Row(byte* from, byte* to, long r, float[] values)
        {
            // Each row from the pointer: the whole matrix may be larger than a span can cover.
            if (!weighted && Widen(matrix.DType, type, new ReadOnlySpan<byte>(from + (r * rowIn), rowIn), new Span<byte>(to + (r * rowOut), rowOut)))
            {
                return;
            }

            ToSingle(matrix.DType, new ReadOnlySpan<byte>(from + (r * rowIn), rowIn), values, matrix.Name);
            if (weighted)
            {
                ImportanceQuantizer.QuantizeRow(type, values, importance, new Span<byte>(to + (r * rowOut), rowOut));
            }
            else
            {
                FromSingle(values, type, new Span<byte>(to + (r * rowOut), rowOut));
            }
        }
    }

    /// <summary>A row stored again in a type that holds every value of the stored one (see <see cref="Widening"/>, and Q4_0 as Q8_0); false for other pairs.</summary>
    private static bool Widen(DType stored, DType wider, ReadOnlySpan<byte> row, Span<byte> wide)
    {
        switch ((stored, wider))
        {
            case (DType.Q4_0, DType.Q8_0): LegacyQuantBlocks.WidenQ4_0ToQ8_0(row, wide); return true;
            case (DType.Q5_0, DType.Q8_0): LegacyQuantBlocks.WidenQ5_0ToQ8_0(row, wide); return true;
            case (DType.IQ4_NL, DType.Q8_0): WidenedBlocks.WidenIq4_NLToQ8_0(row, wide); return true;
            default: return false;
        }
    }

    internal static void ToSingle(DType type, ReadOnlySpan<byte> bytes, Span<float> values, string name)
    {
        switch (type)
        {
            case DType.F32:
                MemoryMarshal.Cast<byte, float>(bytes).CopyTo(values);
                break;
            case DType.F16:
                ReadOnlySpan<ushort> halves = MemoryMarshal.Cast<byte, ushort>(bytes);
                for (int i = 0; i < values.Length; i++)
                {
                    values[i] = HalfBits.ToSingle(halves[i]);
                }

                break;
            case DType.BF16:
                ReadOnlySpan<ushort> bf16 = MemoryMarshal.Cast<byte, ushort>(bytes);
                for (int i = 0; i < values.Length; i++)
                {
                    values[i] = BFloat16Bits.ToSingle(bf16[i]);
                }

                break;
            case DType.Q8_0:
                Q8_0Blocks.Dequantize(bytes, values);
                break;
            case DType.Q4_0:
                LegacyQuantBlocks.DequantizeQ4_0(bytes, values);
                break;
            case DType.Q5_0:
                LegacyQuantBlocks.DequantizeQ5_0(bytes, values);
                break;
            case DType.Q4_1:
                LegacyQuantBlocks.DequantizeQ4_1(bytes, values);
                break;
            case DType.Q5_1:
                LegacyQuantBlocks.DequantizeQ5_1(bytes, values);
                break;
            case DType.Q2_K:
                KQuantBlocks.DequantizeQ2_K(bytes, values);
                break;
            case DType.Q3_K:
                WidenedBlocks.DequantizeQ3_K(bytes, values);
                break;
            case DType.IQ4_NL:
                WidenedBlocks.DequantizeIq4_NL(bytes, values);
                break;
            case DType.IQ4_XS:
                Iq4XsBlocks.Dequantize(bytes, values);
                break;
            case DType.Q4_K:
                KQuantBlocks.DequantizeQ4_K(bytes, values);
                break;
            case DType.Q5_K:
                KQuantBlocks.DequantizeQ5_K(bytes, values);
                break;
            case DType.Q6_K:
                KQuantBlocks.DequantizeQ6_K(bytes, values);
                break;
            case var _ when DTypes.IqTypeOf(type) is IqType lattice:
                IqBlocks.Dequantize(lattice, bytes, values);
                break;
            default:
                throw new NotSupportedException($"tensor '{name}': no conversion from {DTypes.Name(type)}");
        }
    }

    /// <summary>Stores f32 values as <paramref name="type"/> (rounded to nearest even for F16/BF16, llama.cpp's quantizers for the block types).</summary>
    public static byte[] FromSingle(ReadOnlySpan<float> values, DType type)
    {
        var bytes = new byte[DTypes.ByteLength(type, values.Length)];
        FromSingle(values, type, bytes);
        return bytes;
    }

    private static void FromSingle(ReadOnlySpan<float> values, DType type, Span<byte> bytes)
    {
        switch (type)
        {
            case DType.F32:
                MemoryMarshal.AsBytes(values).CopyTo(bytes);
                break;
            case DType.F16:
                Span<ushort> halves = MemoryMarshal.Cast<byte, ushort>(bytes);
                for (int i = 0; i < values.Length; i++)
                {
                    halves[i] = HalfBits.FromSingle(values[i]);
                }

                break;
            case DType.BF16:
                Span<ushort> bf16 = MemoryMarshal.Cast<byte, ushort>(bytes);
                for (int i = 0; i < values.Length; i++)
                {
                    bf16[i] = BFloat16Bits.FromSingle(values[i]);
                }

                break;
            case DType.Q8_0:
                Q8_0Blocks.Quantize(values, bytes);
                break;
            case DType.Q4_0:
                LegacyQuantBlocks.QuantizeQ4_0(values, bytes);
                break;
            case DType.Q5_0:
                LegacyQuantBlocks.QuantizeQ5_0(values, bytes);
                break;
            case DType.Q4_1:
                LegacyQuantBlocks.QuantizeQ4_1(values, bytes);
                break;
            case DType.Q5_1:
                LegacyQuantBlocks.QuantizeQ5_1(values, bytes);
                break;
            case DType.Q2_K:
                KQuantQuantizer.QuantizeQ2_K(values, bytes);
                break;
            case DType.Q3_K:
                KQuantQuantizer.QuantizeQ3_K(values, bytes);
                break;
            case DType.Q4_K:
                KQuantQuantizer.QuantizeQ4_K(values, bytes);
                break;
            case DType.Q5_K:
                KQuantQuantizer.QuantizeQ5_K(values, bytes);
                break;
            case DType.Q6_K:
                KQuantQuantizer.QuantizeQ6_K(values, bytes);
                break;
            case DType.IQ4_NL:
                Iq4Quantizer.QuantizeIq4_NL(values, bytes);
                break;
            case DType.IQ4_XS:
                Iq4Quantizer.QuantizeIq4_XS(values, bytes);
                break;
            case DType.IQ3_XXS:
                Iq3Quantizer.QuantizeIq3_XXS(values, bytes);
                break;
            case DType.IQ3_S:
                Iq3Quantizer.QuantizeIq3_S(values, bytes);
                break;
            case DType.IQ2_S:
                Iq2Quantizer.QuantizeIq2_S(values, bytes);
                break;
            case DType.IQ2_XS:
                Iq2Quantizer.QuantizeIq2_XS(values, bytes, default);
                break;
            case DType.IQ2_XXS:
                Iq2Quantizer.QuantizeIq2_XXS(values, bytes, default);
                break;
            case DType.IQ1_S:
                Iq1Quantizer.QuantizeIq1_S(values, bytes, default);
                break;
            case DType.IQ1_M:
                Iq1Quantizer.QuantizeIq1_M(values, bytes, default);
                break;
            default:
                throw new NotSupportedException($"no conversion to {DTypes.Name(type)}");
        }
    }
}
