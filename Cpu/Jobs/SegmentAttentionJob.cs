using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using QwenSharp.Backend;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Cpu.Threading;

namespace QwenSharp.Cpu.Jobs;

/// <summary>
/// Bidirectional attention within segments (the vision tower: each picture's patches attend to each other),
/// one chunk per (query row, head): scores against every key of the row's segment, a stable softmax, and the
/// weighted sum of the segment's values.
/// </summary>
internal sealed class SegmentAttentionJob(WorkerScratch scratch) : ParallelJob
{
    private float[] _q = [], _k = [], _v = [], _output = [];
    private int[] _segmentOfRow = [];
    private int[] _starts = [];
    private AttentionShape _shape;
    private float _scale;

    public int Prepare(float[] q, float[] k, float[] v, float[] output, ReadOnlySpan<int> segmentStarts, AttentionShape shape)
    {
        int rows = segmentStarts[^1];
        (_q, _k, _v, _output, _shape) = (q, k, v, output, shape);
        _scale = 1f / MathF.Sqrt(shape.HeadDim);
        _starts = segmentStarts.ToArray();
        if (_segmentOfRow.Length < rows)
        {
            _segmentOfRow = new int[rows];
        }

        int longest = 0;
        for (int s = 0; s + 1 < _starts.Length; s++)
        {
            _segmentOfRow.AsSpan(_starts[s], _starts[s + 1] - _starts[s]).Fill(s);
            longest = Math.Max(longest, _starts[s + 1] - _starts[s]);
        }

        scratch.EnsureScores(longest);
        return rows * shape.NumHeads;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Execute(int chunk, int worker)
    {
        int heads = _shape.NumHeads, d = _shape.HeadDim, width = heads * d;
        int row = chunk / heads, head = chunk % heads;
        int segment = _segmentOfRow[row], start = _starts[segment], length = _starts[segment + 1] - start;
        ReadOnlySpan<float> q = _q.AsSpan((row * width) + (head * d), d);
        Span<float> scores = scratch.Scores(worker)[..length];
        for (int j = 0; j < length; j++)
        {
            scores[j] = TensorPrimitives.Dot(q, _k.AsSpan(((start + j) * width) + (head * d), d)) * _scale;
        }

        SoftmaxKernel.InPlace(scores);
        Span<float> output = _output.AsSpan((row * width) + (head * d), d);
        output.Clear();
        for (int j = 0; j < length; j++)
        {
            TensorPrimitives.MultiplyAdd(_v.AsSpan(((start + j) * width) + (head * d), d), scores[j], output, output);
        }
    }
}
