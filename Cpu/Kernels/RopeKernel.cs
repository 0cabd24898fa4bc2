using System.Runtime.CompilerServices;
namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Rotary position embedding in the NeoX / HF <c>rotate_half</c> form: element i of a head is paired with
/// element i + head_dim/2 (not with its neighbour i + 1, as in the original RoPE paper and llama2.c):
/// <code>
///   out[i]        = x[i] * cos(p θᵢ) - x[i + d/2] * sin(p θᵢ)
///   out[i + d/2]  = x[i + d/2] * cos(p θᵢ) + x[i] * sin(p θᵢ),    θᵢ = rope_theta^(-2i/d)
/// </code>
/// The angles come from <see cref="QwenSharp.Backend.RopeAngles"/> (in double), shared with the GPU backend.
/// </summary>
internal static class RopeKernel
{
    /// <summary>Rotates each of the heads packed in <paramref name="row"/> by the same angles.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RotateHeads(Span<float> row, int headDim, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
    {
        int half = headDim / 2;
        for (int h = 0; h + headDim <= row.Length; h += headDim)
        {
            Span<float> first = row.Slice(h, half), second = row.Slice(h + half, half);
            for (int i = 0; i < half; i++)
            {
                float a = first[i], b = second[i];
                first[i] = (a * cos[i]) - (b * sin[i]);
                second[i] = (b * cos[i]) + (a * sin[i]);
            }
        }
    }
}
