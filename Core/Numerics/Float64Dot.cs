namespace QwenSharp.Numerics;

/// <summary>
/// A dot product of f32 vectors summed in float64, in order: the host-side heads over one pooled vector a text (a
/// sentence-transformers Dense module, a classifier's score head), where exactness costs nothing.
/// </summary>
public static class Float64Dot
{
    /// <summary><paramref name="start"/> + Σ a[i] b[i], each product and sum in float64, i from 0 up.</summary>
    public static double Of(ReadOnlySpan<float> a, ReadOnlySpan<float> b, double start = 0)
    {
        if (a.Length != b.Length)
        {
            throw new ArgumentException($"a dot product of {a.Length} and {b.Length} values", nameof(b));
        }

        double sum = start;
        for (int i = 0; i < a.Length; i++)
        {
            sum += (double)a[i] * b[i];
        }

        return sum;
    }
}
