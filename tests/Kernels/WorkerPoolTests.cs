using System.Collections.Concurrent;
using QwenSharp.Threading;

namespace QwenSharp.Tests.Kernels;

/// <summary>
/// The CPU backend's thread pool: every chunk of a job runs exactly once, whatever the thread and chunk counts and however
/// slow one thread is; each thread takes its own stretch of chunks in order and the others steal from its far end; a
/// failing chunk fails the run and leaves the pool usable.
/// </summary>
public sealed class WorkerPoolTests
{
    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void Every_chunk_runs_exactly_once(int threads)
    {
        using var pool = new WorkerPool(threads);
        foreach (int chunks in new[] { 1, 2, 3, 5, 8, 17, 64, 1000 })
        {
            for (int slow = -1; slow < threads; slow++)
            {
                var job = new RecordingJob(chunks, slowWorker: slow, delayMs: 0);
                pool.Run(job, chunks);
                for (int c = 0; c < chunks; c++)
                {
                    Assert.True(job.Runs[c] == 1, $"{threads} threads, {chunks} chunks, slow worker {slow}: chunk {c} ran {job.Runs[c]} times");
                }
            }
        }
    }

    [Fact]
    public void A_thread_takes_its_own_chunks_in_order_and_a_fast_one_takes_a_slow_ones_last()
    {
        // Two threads, 16 chunks: the caller (worker 0) owns 0-7, the pool's thread (worker 1) 8-15. Worker 1 is held inside
        // each chunk it takes until the caller has run nine, so the caller must steal (whatever the scheduler does).
        using var pool = new WorkerPool(2);
        var job = new RecordingJob(16, slowWorker: 1, delayMs: 0, holdUntilCallerRan: 9);
        pool.Run(job, 16);

        int[] caller = job.Order(worker: 0);
        int[] own = [.. caller.Where(c => c < 8)];
        Assert.Equal(Enumerable.Range(0, 8), own);                   // its own stretch, front to back
        Assert.True(caller.Length > 8, $"the caller ran only {string.Join(",", caller)}: it stole none of the slow thread's chunks");
        int[] stolen = [.. caller.Where(c => c >= 8)];
        Assert.Equal(stolen.OrderByDescending(c => c), stolen);       // stolen from the far end, last first
    }

    [Fact]
    public void A_failing_chunk_fails_the_run_and_the_pool_runs_the_next_job()
    {
        using var pool = new WorkerPool(2);
        var failing = new RecordingJob(16, slowWorker: -1, delayMs: 0, failAt: 5);
        InvalidOperationException e = Assert.Throws<InvalidOperationException>(() => pool.Run(failing, 16));
        Assert.Contains("chunk 5", e.Message);

        var next = new RecordingJob(16, slowWorker: -1, delayMs: 0);
        pool.Run(next, 16);
        Assert.All(next.Runs, runs => Assert.Equal(1, runs));
    }

    private sealed class RecordingJob(int chunks, int slowWorker, int delayMs, int failAt = -1, int holdUntilCallerRan = 0) : ParallelJob
    {
        private readonly ConcurrentQueue<(int Worker, int Chunk)> _claims = new();
        private readonly ManualResetEventSlim _release = new(holdUntilCallerRan == 0);
        private int _callerRan;

        public int[] Runs { get; } = new int[chunks];

        public int[] Order(int worker) => [.. _claims.Where(c => c.Worker == worker).Select(c => c.Chunk)];

        public override void Execute(int chunk, int worker)
        {
            _claims.Enqueue((worker, chunk));
            if (chunk == failAt)
            {
                throw new InvalidOperationException($"chunk {chunk} failed on purpose");
            }

            if (worker == 0 && Interlocked.Increment(ref _callerRan) == holdUntilCallerRan)
            {
                _release.Set();
            }

            if (worker == slowWorker)
            {
                Thread.Sleep(delayMs);
                _release.Wait(TimeSpan.FromSeconds(10));    // a bound, so that a broken pool fails the test instead of hanging it
            }

            Interlocked.Increment(ref Runs[chunk]);
        }
    }
}
