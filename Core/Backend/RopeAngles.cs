namespace QwenSharp.Backend;

/// <summary>
/// The angles of rotary position embedding, shared by every backend: θᵢ = rope_theta^(-2i/d) for i &lt; d/2 (HF's
/// <c>inv_freq</c>), and cos/sin of position × θᵢ. Computed in double: with rope_theta 1e6 and positions in the
/// tens of thousands an f32 angle is off by whole hundredths of a radian.
/// </summary>
public static class RopeAngles
{
    /// <summary>θᵢ = theta^(-2i/d) for i &lt; d/2.</summary>
    public static double[] InverseFrequencies(int headDim, double theta)
    {
        var inverse = new double[headDim / 2];
        for (int i = 0; i < inverse.Length; i++)
        {
            inverse[i] = 1.0 / Math.Pow(theta, 2.0 * i / headDim);
        }

        return inverse;
    }

    /// <summary>
    /// cos and sin of position × θᵢ, one per rotated pair, times <paramref name="magnitude"/> (YaRN's attention factor,
    /// which transformers and llama.cpp fold into cos and sin).
    /// </summary>
    public static void Compute(int position, ReadOnlySpan<double> inverseFrequencies, Span<float> cos, Span<float> sin, double magnitude = 1.0)
    {
        for (int i = 0; i < inverseFrequencies.Length; i++)
        {
            (double s, double c) = Math.SinCos(position * inverseFrequencies[i]);
            cos[i] = (float)(c * magnitude);
            sin[i] = (float)(s * magnitude);
        }
    }
}
