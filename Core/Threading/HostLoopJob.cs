namespace QwenSharp.Threading;

/// <summary>
/// Items of host work (<see cref="Backend.IBackend.ForEachOnHost"/>: each sequence's token choice) on a
/// <see cref="WorkerPool"/> (<see cref="WorkerPool.ForEach"/>), one item a chunk: the CPU backend's kernel threads
/// (spinning between steps anyway; a second pool beside them would fight them for the cores), or the GPU backend's host
/// threads.
/// </summary>
internal sealed class HostLoopJob : ParallelJob
{
    /// <summary>What runs for each item; set for one <see cref="WorkerPool.Run"/>.</summary>
    public Action<int>? Body { get; set; }

    public override void Execute(int chunk, int worker) => Body!(chunk);
}
