using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// LayerNorm of one row, as torch.nn.LayerNorm: y = (x - mean) / sqrt(var + eps) * weight + bias with the
/// biased variance. The variance is taken around the mean (two passes), not as E[x²] - mean², which cancels badly;
/// <see cref="Reference"/> is the same in double.
/// </summary>
internal static class LayerNormKernel
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Row(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, float eps, Span<float> y)
    {
        // The f32 sum of values far from zero loses the mean's last digits; the deviations' own mean puts them back.
        float mean = TensorPrimitives.Sum(x) / x.Length;
        TensorPrimitives.Subtract(x, mean, y);
        TensorPrimitives.Subtract(y, TensorPrimitives.Sum(y) / x.Length, y);
        float variance = TensorPrimitives.SumOfSquares(y) / x.Length;
        TensorPrimitives.Multiply(y, 1f / MathF.Sqrt(variance + eps), y);
        TensorPrimitives.FusedMultiplyAdd(y, weight, bias, y);
    }

    /// <summary>The scalar reference, in double.</summary>
    public static void Reference(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, float eps, Span<float> y)
    {
        double mean = 0, variance = 0;
        foreach (float v in x)
        {
            mean += v;
        }

        mean /= x.Length;
        foreach (float v in x)
        {
            variance += (v - mean) * (v - mean);
        }

        double scale = 1.0 / Math.Sqrt((variance / x.Length) + eps);
        for (int i = 0; i < x.Length; i++)
        {
            y[i] = (float)(((x[i] - mean) * scale * weight[i]) + bias[i]);
        }
    }
}
