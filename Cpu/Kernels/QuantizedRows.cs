using QwenSharp.Formats;
using QwenSharp.Numerics;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Rows of block-quantized weights widened to f32, with the format's reference arithmetic: the prefill panels and the
/// embedding. Decode multiplies integers instead (<see cref="Q8IntegerKernel"/>, <see cref="KQuantIntegerKernel"/>).
/// </summary>
internal static class QuantizedRows
{
    /// <summary>A row of whole blocks of <paramref name="type"/> widened to f32.</summary>
    public static void Dequantize(KernelPath path, DType type, ReadOnlySpan<byte> row, Span<float> values)
    {
        switch (type)
        {
            case DType.Q8_0: Q8_0Kernel.Dequantize(path, row, values); break;
            case DType.Q4_0: LegacyQuantBlocks.DequantizeQ4_0(row, values); break;
            case DType.Q4_K: KQuantBlocks.DequantizeQ4_K(row, values); break;
            case DType.Q6_K: KQuantBlocks.DequantizeQ6_K(row, values); break;
            default: throw new ArgumentOutOfRangeException(nameof(type), type, "not a block-quantized type");
        }
    }
}
