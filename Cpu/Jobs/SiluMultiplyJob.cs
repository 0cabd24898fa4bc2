using System.Numerics.Tensors;
using QwenSharp.Threading;

namespace QwenSharp.Cpu.Jobs;

/// <summary>
/// SwiGLU's gate: g ← silu(g) · u elementwise, with silu(g) = g · sigmoid(g) (Swish with beta 1), in chunks over the
/// threads. A decode step's few thousand values run on the calling thread; a 512-token prompt's 2.5 million per layer
/// took 2.6 ms on one thread (3% of a Q4_0 prefill of Qwen2.5-0.5B).
/// </summary>
internal sealed class SiluMultiplyJob : ParallelJob
{
    /// <summary>Values per chunk: a few tens of microseconds of work, so a hand-off costs little next to it.</summary>
    private const int ChunkValues = 1 << 16;

    private float[] _gate = [];
    private float[] _up = [];
    private int _length;

    /// <summary>Sets up the first <paramref name="length"/> values of both buffers; returns the chunk count.</summary>
    public int Prepare(float[] gate, float[] up, int length)
    {
        _gate = gate;
        _up = up;
        _length = length;
        return (length + ChunkValues - 1) / ChunkValues;
    }

    public override void Execute(int chunk, int worker)
    {
        int start = chunk * ChunkValues;
        Span<float> g = _gate.AsSpan(start, Math.Min(ChunkValues, _length - start));
        Span<float> u = _up.AsSpan(start, g.Length);

        // u ← g·u, then g ← sigmoid(g)·u: silu(g)·u without a third buffer.
        TensorPrimitives.Multiply(g, u, u);
        TensorPrimitives.Sigmoid(g, g);
        TensorPrimitives.Multiply(g, u, g);
    }
}
