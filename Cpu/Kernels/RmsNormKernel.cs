using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace QwenSharp.Cpu.Kernels;

/// <summary>RMSNorm of one row: y = x / sqrt(mean(x²) + eps) * weight, as HF's Qwen2RMSNorm (scale first, then weight).</summary>
internal static class RmsNormKernel
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Row(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> y)
    {
        float meanSquare = TensorPrimitives.SumOfSquares(x) / x.Length;
        float scale = 1f / MathF.Sqrt(meanSquare + eps);
        TensorPrimitives.Multiply(x, scale, y);
        TensorPrimitives.Multiply(y, weight, y);
    }
}
