namespace QwenSharp.Tests.Support;

/// <summary>Logits of several positions compared with another engine's, relative to each position's largest logit.</summary>
internal static class LogitComparison
{
    /// <summary>The largest difference of any position, over that position's largest logit (at least 1).</summary>
    public static double LargestRelativeError(float[][] expected, float[][] actual) =>
        expected.Zip(actual, (e, a) => e.Zip(a, (x, y) => (double)Math.Abs(x - y)).Max() / Math.Max(1, e.Max(Math.Abs))).Max();

    /// <summary>Every position of <paramref name="ours"/> within <paramref name="relative"/> of its largest logit (at least 1) of <paramref name="theirs"/>.</summary>
    public static void AssertClose(float[][] ours, float[][] theirs, double relative, string what)
    {
        for (int p = 0; p < ours.Length; p++)
        {
            double scale = ours[p].Max(Math.Abs), error = ours[p].Zip(theirs[p], (a, b) => (double)Math.Abs(a - b)).Max();
            Assert.True(error <= relative * Math.Max(1, scale), $"{what}: position {p} differs by {error:E3} (logits up to {scale:F3})");
        }
    }
}
