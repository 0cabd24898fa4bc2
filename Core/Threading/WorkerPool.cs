using System.Diagnostics;
using System.Runtime.ExceptionServices;

namespace QwenSharp.Threading;

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
/// microseconds), then block once idle. Each thread owns a contiguous stretch of a job's chunks and claims them
/// front to back; a thread done with its own steals from the far end of the stretch with the most left, so faster
/// threads take more. (A shared counter handed the threads alternate chunks: each chunk of a product's rows started
/// cold, its prefetches not yet ahead; in stretches, decode of Q4_0 0.5B on two threads went from 114.3 to 121.6
/// tokens/s and Q4_K_M 1.5B from 36.8 to 37.8, medians of 4 alternating runs.) Nothing is allocated per job. The CPU
/// backend's kernels run on it; the GPU backend keeps one for a step's host work (<see cref="HostLoopJob"/>).
/// </summary>
internal sealed class WorkerPool : IDisposable
{
    /// <summary>How long an idle worker spins before it blocks: longer than the gaps between kernels of one token.</summary>
    private static readonly long s_spinTicks = Stopwatch.Frequency / 2000; // 0.5 ms

    /// <summary>How long the caller spins on pause instructions for the workers to finish before it yields its core.</summary>
    private static readonly long s_callerSpinTicks = Stopwatch.Frequency / 20000; // 50 µs

    private readonly Thread[] _threads;
    private readonly object _sleepLock = new(); // a plain monitor: Monitor.Wait and PulseAll need one
    /// <summary>Longs per worker's range: a cache line each, so that one thread's claims do not evict the other's.</summary>
    private const int RangeStride = 8;

    private ParallelJob? _job;

    /// <summary>
    /// Each worker's chunks still unclaimed, as front | back &lt;&lt; 32 at <c>worker × RangeStride</c>: the worker claims
    /// from the front, the others steal from the back once their own are done.
    /// </summary>
    private readonly long[] _ranges;
    private int _busyWorkers;
    private int _generation;
    private int _sleepers;
    private volatile bool _stopping;
    private ExceptionDispatchInfo? _failure;

    public WorkerPool(int threadCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(threadCount);
        _threads = new Thread[threadCount - 1];
        _ranges = new long[threadCount * RangeStride];
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
        int threads = ThreadCount;
        for (int w = 0; w < threads; w++)
        {
            long first = (long)chunkCount * w / threads, end = (long)chunkCount * (w + 1) / threads;
            _ranges[w * RangeStride] = first | (end << 32);
        }

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
        WaitForWorkers();

        _job = null;
        if (_failure is { } failure)
        {
            _failure = null;
            failure.Throw();
        }
    }

    /// <summary>
    /// Runs <paramref name="body"/> for each of 0 .. <paramref name="count"/> − 1 on all threads, one item a chunk
    /// (<see cref="HostLoopJob"/>: a step's host work, <see cref="Backend.IBackend.ForEachOnHost"/>), and returns when all
    /// have run. Nothing is allocated.
    /// </summary>
    public void ForEach(int count, Action<int> body)
    {
        ArgumentNullException.ThrowIfNull(body);
        _hostLoop.Body = body;
        try
        {
            Run(_hostLoop, count);
        }
        finally
        {
            _hostLoop.Body = null;
        }
    }

    /// <summary>The job <see cref="ForEach"/> runs, reused.</summary>
    private readonly HostLoopJob _hostLoop = new();

    /// <summary>
    /// Waits for the workers' last chunks: with pause instructions for up to <see cref="s_callerSpinTicks"/>, then yielding.
    /// The wait is usually one chunk's tail. SpinWait.SpinOnce alone turned to sched_yield within a few microseconds: in a
    /// two-thread Q4_0 decode on the 2-core Xeon, the scheduler's functions took 12% of the samples and the kernel 54%;
    /// with this spin first, 2% and 67%. Tokens/s moved within that machine's noise (medians of 6 alternating runs: 53.0
    /// against 50.3, 44.0 against 42.9; BF16 16.2 against 15.9). After the spin it still yields, for a pool with more
    /// threads than free cores.
    /// </summary>
    private void WaitForWorkers()
    {
        long spinUntil = Stopwatch.GetTimestamp() + s_callerSpinTicks;
        while (Volatile.Read(ref _busyWorkers) > 0 && Stopwatch.GetTimestamp() < spinUntil)
        {
            Thread.SpinWait(16);
        }

        SpinWait spin = default;
        while (Volatile.Read(ref _busyWorkers) > 0)
        {
            spin.SpinOnce(sleep1Threshold: -1);
        }
    }

    private void RunChunks(int worker)
    {
        ParallelJob job = _job!;
        try
        {
            while (TryClaim(worker, out int chunk))
            {
                job.Execute(chunk, worker);
            }
        }
        catch (Exception e)
        {
            Interlocked.CompareExchange(ref _failure, ExceptionDispatchInfo.Capture(e), null);
            for (int w = 0; w < ThreadCount; w++)
            {
                Interlocked.Exchange(ref _ranges[w * RangeStride], 0);    // let the other threads stop early
            }
        }
    }

    /// <summary>
    /// The next chunk for <paramref name="worker"/>: the front of its own range, else the back of the range with the most
    /// left. Each thread so walks one stretch of chunks in order (a product's rows, which its prefetches run ahead through,
    /// with no cold start at each chunk), and a slow thread's last chunks go to a fast one.
    /// </summary>
    private bool TryClaim(int worker, out int chunk)
    {
        ref long own = ref _ranges[worker * RangeStride];
        for (long range = Volatile.Read(ref own); (int)range < (int)(range >> 32); range = Volatile.Read(ref own))
        {
            if (Interlocked.CompareExchange(ref own, range + 1, range) == range)
            {
                chunk = (int)range;
                return true;
            }
        }

        while (true)
        {
            int victim = -1, most = 0;
            for (int w = 0; w < ThreadCount; w++)
            {
                long range = Volatile.Read(ref _ranges[w * RangeStride]);
                int left = (int)(range >> 32) - (int)range;
                if (left > most)
                {
                    most = left;
                    victim = w;
                }
            }

            if (victim < 0)
            {
                chunk = -1;
                return false;
            }

            ref long other = ref _ranges[victim * RangeStride];
            long seen = Volatile.Read(ref other);
            int front = (int)seen, back = (int)(seen >> 32);
            if (front < back && Interlocked.CompareExchange(ref other, (uint)front | ((long)(back - 1) << 32), seen) == seen)
            {
                chunk = back - 1;
                return true;
            }
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
