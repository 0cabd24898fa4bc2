namespace QwenSharp.Sampling;

/// <summary>DRY's buffers, grown as the text grows and kept by a sampler from step to step.</summary>
public sealed class DryScratch
{
    private int[] _reversed = [];
    private int[] _z = [];

    internal Dictionary<int, int> Longest { get; } = [];

    internal int[] Reversed(int n) => _reversed.Length >= n ? _reversed : _reversed = new int[Math.Max(n, _reversed.Length * 2)];

    internal int[] Z(int n) => _z.Length >= n ? _z : _z = new int[Math.Max(n, _z.Length * 2)];
}
