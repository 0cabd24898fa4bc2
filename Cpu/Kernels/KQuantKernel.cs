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
