using System.Runtime.CompilerServices;
using QwenSharp.Backend;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Threading;

namespace QwenSharp.Cpu.Jobs;

/// <summary>RoPE on the q and k heads of a block of tokens per chunk.</summary>
internal sealed class RopeJob(int threads) : ParallelJob
{
    public const int TokensPerChunk = 16;

    private readonly float[][] _cos = new float[threads][];
    private readonly float[][] _sin = new float[threads][];
    private double[] _inverseFrequencies = [];
    private AttentionShape _frequencyShape;
    private float[] _q = [];
    private float[] _k = [];
    private int[] _positions = [];
    private int _tokens;
    private AttentionShape _shape;

    public int Prepare(float[] q, float[] k, ReadOnlySpan<int> positions, AttentionShape shape)
    {
        if (_inverseFrequencies.Length == 0 || _frequencyShape != shape)
        {
            _inverseFrequencies = shape.InverseFrequencies();
            _frequencyShape = shape;
            for (int i = 0; i < _cos.Length; i++)
            {
                _cos[i] = new float[shape.HeadDim / 2];
                _sin[i] = new float[shape.HeadDim / 2];
            }
        }

        _q = q;
        _k = k;
        _shape = shape;
        _tokens = positions.Length;
        if (_positions.Length < positions.Length)
        {
            _positions = new int[positions.Length];
        }

        positions.CopyTo(_positions);
        return (_tokens + TokensPerChunk - 1) / TokensPerChunk;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Execute(int chunk, int worker)
    {
        int qDim = _shape.NumHeads * _shape.HeadDim, kvDim = _shape.NumKvHeads * _shape.HeadDim;
        float[] cos = _cos[worker], sin = _sin[worker];
        int end = Math.Min((chunk + 1) * TokensPerChunk, _tokens);
        for (int t = chunk * TokensPerChunk; t < end; t++)
        {
            RopeAngles.Compute(_positions[t], _inverseFrequencies, cos, sin, _shape.RopeMagnitude);
            RopeKernel.RotateHeads(_q.AsSpan(t * qDim, qDim), _shape.HeadDim, cos, sin);
            RopeKernel.RotateHeads(_k.AsSpan(t * kvDim, kvDim), _shape.HeadDim, cos, sin);
        }
    }
}
