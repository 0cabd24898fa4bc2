using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using QwenSharp.Backend;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Threading;

namespace QwenSharp.Cpu.Jobs;

/// <summary>
/// Bidirectional attention within segments (the vision tower: each picture's patches attend to each other), as
/// two small matrix products per chunk of 4 query rows of one head: scores = Q·Kᵀ over the segment's keys, a stable
/// softmax per row, then output = P·V with V transposed once per call so both products run on
/// <see cref="GemmTile"/> (each key or value vector loaded serves 4 queries); the scalar path runs its reference loops.
/// Query heads share key-value heads in groups (GQA, as the language model's bidirectional embeddings need).
/// </summary>
internal sealed class SegmentAttentionJob(KernelPath path, WorkerScratch scratch) : ParallelJob
{
    private const int Block = GemmTile.Tokens;

    private float[] _q = [], _k = [], _output = [];
    private float[] _valuesTransposed = [];   // [kv heads, head_dim, rows]
    private int[] _chunks = [];               // (segment, head, first row) per chunk
    private int[] _starts = [];
    private int _rows, _stride;
    private AttentionShape _shape;
    private float _scale;

    public int Prepare(float[] q, float[] k, float[] v, float[] output, ReadOnlySpan<int> segmentStarts, AttentionShape shape)
    {
        (_q, _k, _output, _shape) = (q, k, output, shape);
        _scale = 1f / MathF.Sqrt(shape.HeadDim);
        _starts = segmentStarts.ToArray();
        _rows = segmentStarts[^1];
        int heads = shape.NumHeads, d = shape.HeadDim, kvWidth = shape.NumKvHeads * d;
        if (shape.NumKvHeads < 1 || heads % shape.NumKvHeads != 0)
        {
            throw new ArgumentException($"{heads} query heads cannot share {shape.NumKvHeads} key/value heads in equal groups");
        }

        // V transposed per key-value head, so P·V reads each head dimension's values contiguously along the keys.
        if (_valuesTransposed.Length < _rows * kvWidth)
        {
            _valuesTransposed = GC.AllocateUninitializedArray<float>(_rows * kvWidth);
        }

        for (int r = 0; r < _rows; r++)
        {
            for (int h = 0; h < shape.NumKvHeads; h++)
            {
                for (int i = 0; i < d; i++)
                {
                    _valuesTransposed[(((h * d) + i) * _rows) + r] = v[(r * kvWidth) + (h * d) + i];
                }
            }
        }

        var chunks = new List<int>();
        int longest = 0;
        for (int s = 0; s + 1 < _starts.Length; s++)
        {
            longest = Math.Max(longest, _starts[s + 1] - _starts[s]);
            for (int h = 0; h < heads; h++)
            {
                for (int r = _starts[s]; r < _starts[s + 1]; r += Block)
                {
                    chunks.AddRange([s, h, r]);
                }
            }
        }

        _chunks = [.. chunks];
        _stride = (longest + Block - 1) / Block * Block;
        scratch.EnsureScores(Block * _stride);
        return _chunks.Length / 3;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Execute(int chunk, int worker)
    {
        int segment = _chunks[3 * chunk], head = _chunks[(3 * chunk) + 1], first = _chunks[(3 * chunk) + 2];
        int d = _shape.HeadDim, width = _shape.NumHeads * d, kvWidth = _shape.NumKvHeads * d;
        int kvHead = head / (_shape.NumHeads / _shape.NumKvHeads);
        int start = _starts[segment], length = _starts[segment + 1] - start, queries = Math.Min(Block, _starts[segment + 1] - first);
        Span<float> scores = scratch.Scores(worker)[..(Block * _stride)];
        ref float s0 = ref MemoryMarshal.GetReference(scores);

        // scores[t, j] = q_t · k_j over the segment, 4 queries by 4 keys at a time.
        ref float q = ref _q[(first * width) + (head * d)];
        for (int j = 0; j < length; j += Block)
        {
            int keys = Math.Min(Block, length - j);
            Tile(ref q, width, ref _k[((start + j) * kvWidth) + (kvHead * d)], kvWidth, d, ref Unsafe.Add(ref s0, j), _stride, queries, keys);
        }

        for (int t = 0; t < queries; t++)
        {
            Span<float> row = scores.Slice(t * _stride, length);
            System.Numerics.Tensors.TensorPrimitives.Multiply(row, _scale, row);
            SoftmaxKernel.InPlace(row);
        }

        // output[t, i] = Σ_j p[t, j] v_j[i]: the rows of Vᵀ for this head, 4 dimensions at a time.
        ref float vt = ref _valuesTransposed[(kvHead * d * _rows) + start];
        ref float y = ref _output[(first * width) + (head * d)];
        for (int i = 0; i < d; i += Block)
        {
            int dims = Math.Min(Block, d - i);
            Tile(ref s0, _stride, ref Unsafe.Add(ref vt, i * _rows), _rows, length, ref Unsafe.Add(ref y, i), width, queries, dims);
        }
    }

    /// <summary>A full 4 × 4 tile on the SIMD path, a partial one on the reference loops.</summary>
    private void Tile(ref float x, nint xStride, ref float w, nint wStride, int k, ref float y, nint yStride, int tokens, int rows)
    {
        if (tokens == Block && rows == GemmTile.Rows)
        {
            GemmTile.Run(path, ref x, xStride, ref w, wStride, k, ref y, yStride);
        }
        else
        {
            GemmTile.Reference(ref x, xStride, ref w, wStride, k, ref y, yStride, tokens, rows);
        }
    }
}
