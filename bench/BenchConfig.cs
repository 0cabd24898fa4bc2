using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;

namespace QwenSharp.Bench;

/// <summary>Short runs (kernels are steady after a few iterations), allocations shown, throughput columns added.</summary>
public sealed class BenchConfig : ManualConfig
{
    public BenchConfig()
    {
        AddJob(Job.Default.WithLaunchCount(1).WithWarmupCount(3).WithIterationCount(8));
        AddDiagnoser(MemoryDiagnoser.Default);
        AddColumn(new ThroughputColumn(gigabytes: true), new ThroughputColumn(gigabytes: false));
    }
}
