using System.Runtime.CompilerServices;
using QwenSharp.Backend;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Cpu.Threading;

namespace QwenSharp.Cpu.Jobs;

/// <summary>
/// Attention for every (token, query head) pair of a step: one chunk per token and key-value head (the query heads that
/// share it, so one core reads those keys and values once, from memory, and the other heads find them in its cache), or
/// one per pair when there are too few of those to keep every thread busy.
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
    private int _pairsPerChunk = 1;

    /// <summary>Sets up one step and returns its number of chunks (tokens × heads).</summary>
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
        scratch.EnsureScores(cache.Capacity);

        // Short contexts of small models are cheaper on one thread than handed out (see LinearJob).
        long work = 0;
        foreach (int position in positions)
        {
            work += (long)(position + 1) * shape.HeadDim * 2 * shape.NumHeads;
        }

        // A 16-sequence decode step of Qwen2.5-0.5B's shape at ~100 positions spent 7.7 ms in attention with a chunk per
        // pair: the two threads took alternate heads of the same key-value head, each reading its keys and values into
        // its own cache. (Per key-value head: 4.0 ms.)
        int kvGroups = slots.Length * (shape.NumHeads / shape.GroupSize);
        _pairsPerChunk = work < LinearJob.MinMultiplyAddsPerChunk ? slots.Length * shape.NumHeads
            : kvGroups >= 2 * threads ? shape.GroupSize
            : 1;
        return (slots.Length * shape.NumHeads) / _pairsPerChunk;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Execute(int chunk, int worker)
    {
        for (int pair = chunk * _pairsPerChunk; pair < (chunk + 1) * _pairsPerChunk; pair++)
        {
            Pair(pair, worker);
        }
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
