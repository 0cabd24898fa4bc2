using System.Runtime.CompilerServices;
using QwenSharp.Backend;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Cpu.Threading;

namespace QwenSharp.Cpu.Jobs;

/// <summary>
/// Attention for every (token, query head) pair of a step. Mostly a chunk is one token's key-value head: its query heads
/// together (<see cref="AttentionKernel.Group"/>), so one core reads those keys and values once, from memory, and every
/// head finds them in L1. When there are too few of those to keep the threads evenly busy, a chunk is one pair
/// (<see cref="AttentionKernel.Head"/>); small steps run in one chunk.
/// </summary>
internal sealed class AttentionJob(KernelPath path, WorkerScratch scratch, int threads) : ParallelJob
{
    private float[] _q = [];
    private float[] _output = [];
    private CpuKvCache _cache = null!;
    private int _layer;
    private int[] _slots = [];
    private int[] _positions = [];
    private AttentionShape _shape;
    private float _scale;

    /// <summary>Whether chunks are groups (a token's key-value head) rather than single pairs.</summary>
    private bool _grouped;

    /// <summary>Groups (or pairs) a chunk holds.</summary>
    private int _perChunk = 1;

    /// <summary>Sets up one step and returns its number of chunks.</summary>
    public int Prepare(float[] q, float[] output, CpuKvCache cache, int layer, ReadOnlySpan<int> slots,
        ReadOnlySpan<int> positions, AttentionShape shape)
    {
        _q = q;
        _output = output;
        _cache = cache;
        _layer = layer;
        _shape = shape;
        _scale = 1f / MathF.Sqrt(shape.HeadDim);
        if (_slots.Length < slots.Length)
        {
            _slots = new int[slots.Length];
            _positions = new int[slots.Length];
        }

        slots.CopyTo(_slots);
        positions.CopyTo(_positions);
        scratch.EnsureScores(shape.GroupSize * cache.Capacity);

        // Short contexts of small models are cheaper on one thread than handed out (see LinearJob).
        long work = 0;
        foreach (int position in positions)
        {
            work += (long)(position + 1) * shape.HeadDim * 2 * shape.NumHeads;
        }

        // A 16-sequence decode step of Qwen2.5-0.5B's shape at 96 positions took 4.6 ms (24 layers, 2 threads) with a
        // chunk per pair: the two threads took alternate heads of the same key-value head, each reading its keys and
        // values into its own cache; with a chunk per key-value head, 3.2 ms; with its heads going over a tile of
        // positions at a time, 2.3 ms. One sequence at 2048 positions: 5.7 ms a pair at a time, 3.2 ms by groups.
        int groups = slots.Length * shape.NumKvHeads;
        _grouped = work < LinearJob.MinMultiplyAddsPerChunk || groups % threads == 0 || groups >= 2 * threads;
        int units = _grouped ? groups : slots.Length * shape.NumHeads;
        _perChunk = work < LinearJob.MinMultiplyAddsPerChunk ? units : 1;
        return units / _perChunk;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Execute(int chunk, int worker)
    {
        for (int unit = chunk * _perChunk; unit < (chunk + 1) * _perChunk; unit++)
        {
            if (_grouped)
            {
                Group(unit, worker);
            }
            else
            {
                Pair(unit, worker);
            }
        }
    }

    private void Group(int group, int worker)
    {
        int row = group / _shape.NumKvHeads, kvHead = group % _shape.NumKvHeads;
        int d = _shape.HeadDim, heads = _shape.GroupSize, qDim = _shape.NumHeads * d;
        int slot = _slots[row];
        int at = (row * qDim) + (kvHead * heads * d);
        AttentionKernel.Group(path, _q.AsSpan(at, heads * d), _cache.Keys(_layer, slot), _cache.Values(_layer, slot), _cache.KvDim, kvHead * d,
            _positions[row] + 1, _scale, heads, scratch.Scores(worker), _output.AsSpan(at, heads * d));
    }

    private void Pair(int pair, int worker)
    {
        int row = pair / _shape.NumHeads, head = pair % _shape.NumHeads;
        int d = _shape.HeadDim, qDim = _shape.NumHeads * d;
        int kvHead = head / _shape.GroupSize;
        int slot = _slots[row];
        AttentionKernel.Head(path,
            _q.AsSpan((row * qDim) + (head * d), d),
            _cache.Keys(_layer, slot), _cache.Values(_layer, slot), _cache.KvDim, kvHead * d,
            _positions[row] + 1, _scale, scratch.Scores(worker),
            _output.AsSpan((row * qDim) + (head * d), d));
    }
}
