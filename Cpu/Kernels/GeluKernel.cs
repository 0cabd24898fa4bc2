using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using QwenSharp.Backend;
using QwenSharp.Numerics;

namespace QwenSharp.Cpu.Kernels;

/// <summary>The GELU activations of the vision tower, in place.</summary>
internal static class GeluKernel
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Apply(Span<float> x, Span<float> scratch, ActivationFunction function)
    {
        switch (function)
        {
            case ActivationFunction.QuickGelu:
                // x · sigmoid(1.702 x), with TensorPrimitives' vectorized sigmoid.
                TensorPrimitives.Multiply(x, 1.702f, scratch);
                TensorPrimitives.Sigmoid(scratch, scratch);
                TensorPrimitives.Multiply(x, scratch, x);
                break;
            case ActivationFunction.Gelu:
                for (int i = 0; i < x.Length; i++)
                {
                    x[i] = Gelu(x[i]);
                }

                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(function), function, "unknown activation function");
        }
    }

    /// <summary>x/2 · (1 + erf(x/√2)), in double.</summary>
    public static float Gelu(float x) => (float)(0.5 * x * Erf.Complement(-x / Math.Sqrt(2.0)));

    public static float QuickGelu(float x) => (float)(x / (1.0 + Math.Exp(-1.702 * x)));
}
