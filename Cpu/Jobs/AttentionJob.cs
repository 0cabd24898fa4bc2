using System.Runtime.CompilerServices;
using QwenSharp.Backend;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;
using QwenSharp.Threading;

namespace QwenSharp.Cpu.Jobs;

/// <summary>
/// Attention for every (token, query head) pair of a step. Mostly a chunk is one token's key-value head: its query heads
/// together (<see cref="AttentionKernel{TK}.Block"/>), so one core reads those keys and values once, from memory, and every
/// head finds them in L1. When there are too few of those to keep the threads evenly busy, a chunk is one pair
/// (<see cref="AttentionKernel{TK}.Head"/>); small steps run in one chunk.
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

    /// <summary>Whether chunks are groups (a block of tokens' key-value head) rather than single pairs.</summary>
    private bool _grouped;

    /// <summary>
    /// Blocks of consecutive tokens of one sequence (a prompt's), up to <see cref="_blockRows"/> each; a decode step's
    /// tokens are blocks of one. Block b is rows _blockStarts[b] up to _blockStarts[b + 1].
    /// </summary>
    private int[] _blockStarts = [];
    private int _blocks;
    private int _blockRows;

    /// <summary>Scores a worker's scratch holds for a block: tokens × query heads of a group × positions.</summary>
    private const int ScoreBudget = 1 << 20;

    /// <summary>
    /// Most tokens in a block: eight share each tile of keys and values. The last 512 tokens of a 2048-token prompt, 24
    /// layers of Qwen2.5-0.5B's shape: 1262 → 973-981 ms on one thread, 686 → 527-588 on two (4 and 16 measured alike).
    /// </summary>
    private const int MostBlockRows = 8;

    /// <summary>Groups (or pairs) a chunk holds.</summary>
    private int _perChunk = 1;

    /// <summary>Whether the cache holds rotated keys and values (<see cref="KvRotation"/>): queries and outputs rotate too.</summary>
    private bool _rotates;

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
        _blockRows = Math.Clamp(ScoreBudget / (shape.GroupSize * cache.Capacity), 1, MostBlockRows);
        scratch.EnsureScores(_blockRows * shape.GroupSize * cache.Capacity);
        _rotates = KvCacheRotation.Applies(cache.ElementType, shape.HeadDim);
        if (_rotates)
        {
            scratch.EnsureQueries(2 * _blockRows * shape.GroupSize * shape.HeadDim);
        }

        if (_blockStarts.Length < slots.Length + 1)
        {
            _blockStarts = new int[slots.Length + 1];
        }

        _blocks = 0;
        for (int row = 0; row < slots.Length; row++)
        {
            int start = _blocks == 0 ? -1 : _blockStarts[_blocks - 1];
            bool continues = start >= 0 && row - start < _blockRows && slots[row] == slots[row - 1] && positions[row] == positions[row - 1] + 1;
            if (!continues)
            {
                _blockStarts[_blocks++] = row;
            }
        }

        _blockStarts[_blocks] = slots.Length;

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
        int groups = _blocks * shape.NumKvHeads;
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
            // The cache's element type picks the kernel once per unit: the loads inside are specialized for it.
            switch (_cache.ElementType, _grouped)
            {
                case (DType.F32, true): Group<F32Load>(unit, worker); break;
                case (DType.F32, false): Pair<F32Load>(unit, worker); break;
                case (DType.F16, true): Group<F16Load>(unit, worker); break;
                case (DType.F16, false): Pair<F16Load>(unit, worker); break;
                case (DType.BF16, true): Group<Bf16Load>(unit, worker); break;
                case (DType.BF16, false): Pair<Bf16Load>(unit, worker); break;
                case (DType.Q8_0, true): Group<Q8_0KvLoad>(unit, worker); break;
                case (DType.Q8_0, false): Pair<Q8_0KvLoad>(unit, worker); break;
                case (DType.Q4_0, true): Group<Q4_0KvLoad>(unit, worker); break;
                case (DType.Q4_0, false): Pair<Q4_0KvLoad>(unit, worker); break;
                default: throw new InvalidOperationException($"no attention kernel reads a {_cache.ElementType} KV cache");
            }
        }
    }

    private void Group<TK>(int group, int worker)
        where TK : struct, IWeightLoad
    {
        int block = group / _shape.NumKvHeads, kvHead = group % _shape.NumKvHeads;
        int row = _blockStarts[block], rows = _blockStarts[block + 1] - row;
        int d = _shape.HeadDim, heads = _shape.GroupSize, qDim = _shape.NumHeads * d;
        int slot = _slots[row];
        int at = (row * qDim) + (kvHead * heads * d), span = ((rows - 1) * qDim) + (heads * d);
        if (!_rotates)
        {
            AttentionKernel<TK>.Block(path, _q.AsSpan(at, span), qDim, rows, _cache.Keys(_layer, slot), _cache.Values(_layer, slot), _cache.PositionStride, kvHead * d,
                _positions[row] + 1, _scale, heads, d, scratch.Scores(worker), _output.AsSpan(at, span));
            return;
        }

        // The group's queries rotated into scratch, a row's heads one after another, and its outputs there too (the kernel
        // strides queries and outputs alike), rotated back as they are copied out.
        int groupDim = heads * d;
        Span<float> queries = scratch.Queries(worker)[..(rows * groupDim)], outputs = scratch.Queries(worker).Slice(rows * groupDim, rows * groupDim);
        for (int r = 0; r < rows; r++)
        {
            _q.AsSpan(at + (r * qDim), groupDim).CopyTo(queries[(r * groupDim)..]);
        }

        KvRotation.Rotate(queries, KvCacheRotation.KeyBlock(d));
        AttentionKernel<TK>.Block(path, queries, groupDim, rows, _cache.Keys(_layer, slot), _cache.Values(_layer, slot), _cache.PositionStride, kvHead * d,
            _positions[row] + 1, _scale, heads, d, scratch.Scores(worker), outputs);
        KvRotation.Rotate(outputs, KvCacheRotation.ValueBlock);
        for (int r = 0; r < rows; r++)
        {
            outputs.Slice(r * groupDim, groupDim).CopyTo(_output.AsSpan(at + (r * qDim), groupDim));
        }
    }

    private void Pair<TK>(int pair, int worker)
        where TK : struct, IWeightLoad
    {
        int row = pair / _shape.NumHeads, head = pair % _shape.NumHeads;
        int d = _shape.HeadDim, qDim = _shape.NumHeads * d;
        int kvHead = head / _shape.GroupSize;
        int slot = _slots[row];
        Span<float> query = _q.AsSpan((row * qDim) + (head * d), d), output = _output.AsSpan((row * qDim) + (head * d), d);
        if (_rotates)
        {
            query.CopyTo(scratch.Queries(worker));
            query = scratch.Queries(worker)[..d];
            KvRotation.Rotate(query, KvCacheRotation.KeyBlock(d));
        }

        AttentionKernel<TK>.Head(path, query, _cache.Keys(_layer, slot), _cache.Values(_layer, slot), _cache.PositionStride, kvHead * d,
            _positions[row] + 1, _scale, scratch.Scores(worker), output);
        if (_rotates)
        {
            KvRotation.Rotate(output, KvCacheRotation.ValueBlock);
        }
    }
}
