using System.Diagnostics;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Memory;

namespace QwenSharp.Cpu;

/// <summary>
/// The machine's read bandwidth, the bound on decode speed: a SIMD sum over a buffer far larger than the caches,
/// on one thread and on several, the best of a few passes (the buffer is touched first, so page faults are not
/// counted). What the weights of one decode step are read at can be set against it.
/// </summary>
internal static unsafe class MemoryBandwidth
{
    /// <summary>512 MiB: many times any L3 this runs on.</summary>
    public const long DefaultBytes = 512L << 20;

    /// <summary>Read GB/s (1e9 bytes) with <paramref name="threads"/> threads each summing its own part of the buffer.</summary>
    public static double Measure(int threads, long bytes = DefaultBytes, int passes = 3)
    {
        float* buffer = (float*)HugePages.Allocate(bytes);
        try
        {
            long count = bytes / sizeof(float);
            new Span<byte>(buffer, (int)Math.Min(bytes, int.MaxValue)).Fill(1);
            for (long offset = int.MaxValue; offset < bytes; offset += int.MaxValue)
            {
                new Span<byte>((byte*)buffer + offset, (int)Math.Min(bytes - offset, int.MaxValue)).Fill(1);
            }

            double best = 0;
            var sums = new float[threads];
            for (int pass = 0; pass < passes; pass++)
            {
                long start = Stopwatch.GetTimestamp();
                Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
                {
                    long begin = count * t / threads, end = count * (t + 1) / threads;
                    sums[t] = StreamSum.Sum(buffer + begin, end - begin);
                });
                double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
                best = Math.Max(best, bytes / seconds / 1e9);
            }

            GC.KeepAlive(sums);
            return best;
        }
        finally
        {
            HugePages.Free(buffer);
        }
    }
}
