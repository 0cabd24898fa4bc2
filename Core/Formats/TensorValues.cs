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
        ReadOnlySpan<byte> bytes = tensor.Bytes;
        switch (tensor.DType)
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
            case DType.Q4_K:
                KQuantBlocks.DequantizeQ4_K(bytes, values);
                break;
            case DType.Q6_K:
                KQuantBlocks.DequantizeQ6_K(bytes, values);
                break;
            default:
                throw new NotSupportedException($"tensor '{tensor.Name}': no conversion from {DTypes.Name(tensor.DType)}");
        }

        return values;
    }

    /// <summary>Stores f32 values as <paramref name="type"/> (rounded to nearest even for F16/BF16, llama.cpp's quantizer for Q8_0).</summary>
    public static byte[] FromSingle(ReadOnlySpan<float> values, DType type)
    {
        var bytes = new byte[DTypes.ByteLength(type, values.Length)];
        switch (type)
        {
            case DType.F32:
                MemoryMarshal.AsBytes(values).CopyTo(bytes);
                break;
            case DType.F16:
                Span<ushort> halves = MemoryMarshal.Cast<byte, ushort>(bytes.AsSpan());
                for (int i = 0; i < values.Length; i++)
                {
                    halves[i] = HalfBits.FromSingle(values[i]);
                }

                break;
            case DType.BF16:
                Span<ushort> bf16 = MemoryMarshal.Cast<byte, ushort>(bytes.AsSpan());
                for (int i = 0; i < values.Length; i++)
                {
                    bf16[i] = BFloat16Bits.FromSingle(values[i]);
                }

                break;
            case DType.Q8_0:
                Q8_0Blocks.Quantize(values, bytes);
                break;
            default:
                throw new NotSupportedException($"no conversion to {DTypes.Name(type)}");
        }

        return bytes;
    }
}
