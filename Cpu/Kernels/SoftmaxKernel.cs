using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Numerically stable softmax: subtract the maximum before exponentiating, so large scores cannot overflow
/// (<c>TensorPrimitives.SoftMax</c> does not subtract it and returns NaN for scores around 100 and more).
/// </summary>
internal static class SoftmaxKernel
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void InPlace(Span<float> x)
    {
        float max = TensorPrimitives.Max(x);
        TensorPrimitives.Subtract(x, max, x);
        TensorPrimitives.Exp(x, x);
        float sum = TensorPrimitives.Sum(x);
        TensorPrimitives.Multiply(x, 1f / sum, x);
    }
}
