using QwenSharp.Cpu.Threading;

namespace QwenSharp.Cpu.Jobs;

/// <summary>
/// Items of host work (<see cref="Backend.IBackend.ForEachOnHost"/>: each sequence's token choice) on the kernels' threads,
/// one item a chunk: those threads are spinning between steps anyway, and a second pool beside them would fight them
/// for the cores.
/// </summary>
internal sealed class HostLoopJob : ParallelJob
{
    /// <summary>What runs for each item; set for one <see cref="WorkerPool.Run"/>.</summary>
    public Action<int>? Body { get; set; }

    public override void Execute(int chunk, int worker) => Body!(chunk);
}
