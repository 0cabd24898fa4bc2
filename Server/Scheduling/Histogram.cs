namespace QwenSharp.Server.Scheduling;

/// <summary>
/// A Prometheus histogram: how many observations fell at or below each upper bound, and their sum and count; observed
/// from the scheduler's thread and read by <c>/metrics</c> from any other.
/// </summary>
internal sealed class Histogram(params double[] bounds)
{
    private readonly Lock _lock = new();
    private readonly long[] _counts = new long[bounds.Length];
    private double _sum;
    private long _count;

    /// <summary>The buckets' upper bounds, ascending (the +Inf bucket is the count).</summary>
    public IReadOnlyList<double> Bounds { get; } = bounds;

    public void Observe(double value)
    {
        int bucket = Array.BinarySearch(bounds, value);
        bucket = bucket >= 0 ? bucket : ~bucket;
        lock (_lock)
        {
            if (bucket < _counts.Length)
            {
                _counts[bucket]++;
            }

            _sum += value;
            _count++;
        }
    }

    /// <summary>The cumulative count at each bound, the sum and the count, read together.</summary>
    public (long[] Cumulative, double Sum, long Count) Read()
    {
        lock (_lock)
        {
            long[] cumulative = new long[_counts.Length];
            long running = 0;
            for (int i = 0; i < _counts.Length; i++)
            {
                running += _counts[i];
                cumulative[i] = running;
            }

            return (cumulative, _sum, _count);
        }
    }
}
