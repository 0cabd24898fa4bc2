using System.Diagnostics;
using System.Runtime.ExceptionServices;

namespace QwenSharp.Cpu.Threading;

/// <summary>A unit of parallel work, split into numbered chunks; one preallocated instance per kernel, reused every call.</summary>
internal abstract class ParallelJob
{
    /// <param name="chunk">Which part of the work, 0 ≤ chunk &lt; the count given to <see cref="WorkerPool.Run"/>.</param>
    /// <param name="worker">Which thread runs it (0 is the caller), to pick that thread's scratch.</param>
    public abstract void Execute(int chunk, int worker);
}

/// <summary>
/// Persistent worker threads for the kernels, as ggml's thread pool: a forward pass hands out hundreds of
/// short jobs per token, so workers spin briefly between jobs instead of sleeping (a wake-up costs tens of
/// microseconds), then block once idle. Chunks are claimed from a shared counter, so faster threads take
/// more. Nothing is allocated per job.
/// </summary>
internal sealed class WorkerPool : IDisposable
{
    /// <summary>How long an idle worker spins before it blocks: longer than the gaps between kernels of one token.</summary>
    private static readonly long s_spinTicks = Stopwatch.Frequency / 2000; // 0.5 ms

    private readonly Thread[] _threads;
    private readonly object _sleepLock = new(); // a plain monitor: Monitor.Wait and PulseAll need one
    private ParallelJob? _job;
    private int _chunkCount;
    private int _nextChunk;
    private int _busyWorkers;
    private int _generation;
    private int _sleepers;
    private volatile bool _stopping;
    private ExceptionDispatchInfo? _failure;

    public WorkerPool(int threadCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(threadCount);
        _threads = new Thread[threadCount - 1];
        for (int i = 0; i < _threads.Length; i++)
        {
            int worker = i + 1;
            _threads[i] = new Thread(() => WorkerLoop(worker)) { IsBackground = true, Name = $"qwensharp-{worker}" };
            _threads[i].Start();
        }
    }

    /// <summary>Threads that run chunks, the caller included.</summary>
    public int ThreadCount => _threads.Length + 1;

    /// <summary>Runs chunks 0..chunkCount-1 of <paramref name="job"/> on all threads and returns when all are done.</summary>
    public void Run(ParallelJob job, int chunkCount)
    {
        if (_threads.Length == 0 || chunkCount <= 1)
        {
            for (int c = 0; c < chunkCount; c++)
            {
                job.Execute(c, 0);
            }

            return;
        }

        _job = job;
        _chunkCount = chunkCount;
        _nextChunk = 0;
        _busyWorkers = _threads.Length;
        Interlocked.Increment(ref _generation); // a full fence: workers see the fields above once they see the new generation
        if (Volatile.Read(ref _sleepers) > 0)
        {
            lock (_sleepLock)
            {
                Monitor.PulseAll(_sleepLock);
            }
        }

        RunChunks(0);
        SpinWait spin = default;
        while (Volatile.Read(ref _busyWorkers) > 0)
        {
            spin.SpinOnce(sleep1Threshold: -1);
        }

        _job = null;
        if (_failure is { } failure)
        {
            _failure = null;
            failure.Throw();
        }
    }

    private void RunChunks(int worker)
    {
        ParallelJob job = _job!;
        int count = _chunkCount;
        try
        {
            for (int c = Interlocked.Increment(ref _nextChunk) - 1; c < count; c = Interlocked.Increment(ref _nextChunk) - 1)
            {
                job.Execute(c, worker);
            }
        }
        catch (Exception e)
        {
            Interlocked.CompareExchange(ref _failure, ExceptionDispatchInfo.Capture(e), null);
            Volatile.Write(ref _nextChunk, count); // let the other threads stop early
        }
    }

    private void WorkerLoop(int worker)
    {
        int seen = 0;
        while (true)
        {
            WaitForGeneration(seen);
            if (_stopping)
            {
                return;
            }

            seen = Volatile.Read(ref _generation);
            RunChunks(worker);
            Interlocked.Decrement(ref _busyWorkers);
        }
    }

    private void WaitForGeneration(int seen)
    {
        long spinUntil = Stopwatch.GetTimestamp() + s_spinTicks;
        while (Volatile.Read(ref _generation) == seen && !_stopping)
        {
            if (Stopwatch.GetTimestamp() < spinUntil)
            {
                Thread.SpinWait(16);
                continue;
            }

            lock (_sleepLock)
            {
                // Announce the sleep with a full fence before the last look, so Run either sees the sleeper or the
                // sleeper sees the new generation (Run bumps the generation, then reads _sleepers).
                Interlocked.Increment(ref _sleepers);
                while (Volatile.Read(ref _generation) == seen && !_stopping)
                {
                    Monitor.Wait(_sleepLock);
                }

                Interlocked.Decrement(ref _sleepers);
            }
        }
    }

    public void Dispose()
    {
        _stopping = true;
        lock (_sleepLock)
        {
            Monitor.PulseAll(_sleepLock);
        }

        foreach (Thread thread in _threads)
        {
            thread.Join();
        }
    }
}
