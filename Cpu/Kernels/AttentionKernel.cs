using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Scaled dot-product attention of one query head over the cached keys and values of its sequence:
/// out = softmax(q · Kᵀ / sqrt(d)) · V over positions 0..position (the causal mask is the range itself).
/// </summary>
internal static class AttentionKernel
{
    /// <param name="query">[head_dim]</param>
    /// <param name="keys">The cache rows of one slot, [positions, kvDim]; the head's keys start at <paramref name="headOffset"/>.</param>
    /// <param name="values">Same layout as keys.</param>
    /// <param name="scores">Scratch of at least <paramref name="length"/> floats.</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Head(ReadOnlySpan<float> query, ReadOnlySpan<float> keys, ReadOnlySpan<float> values, int kvDim, int headOffset,
        int length, float scale, Span<float> scores, Span<float> output)
    {
        int d = query.Length;
        scores = scores[..length];
        for (int j = 0; j < length; j++)
        {
            scores[j] = TensorPrimitives.Dot(query, keys.Slice((j * kvDim) + headOffset, d)) * scale;
        }

        SoftmaxKernel.InPlace(scores);
        output.Clear();
        for (int j = 0; j < length; j++)
        {
            TensorPrimitives.MultiplyAdd(values.Slice((j * kvDim) + headOffset, d), scores[j], output, output);
        }
    }
}
