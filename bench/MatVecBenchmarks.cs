using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;
using QwenSharp.Numerics;

namespace QwenSharp.Bench;

/// <summary>
/// One decode step's matrix-vector product on one thread, y = W x, with W in its stored type: memory-bound,
/// so "Weights GB/s" against the machine's bandwidth is the figure that matters. Scalar is the baseline.
/// </summary>
[Config(typeof(BenchConfig))]
public class MatVecBenchmarks
{
    private byte[] _weights = [];
    private float[] _x = [];
    private float[] _y = [];

    public static IEnumerable<WeightShape> Shapes => WeightShape.Qwen25HalfB;

    [ParamsSource(nameof(Shapes))]
    public WeightShape Shape { get; set; } = null!;

    [Params(DType.BF16, DType.F16, DType.F32)]
    public DType DType { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(42);
        long count = (long)Shape.Rows * Shape.Cols;
        _weights = new byte[count * DTypes.SizeOf(DType)];
        for (long i = 0; i < count; i++)
        {
            float value = (float)(random.NextDouble() - 0.5) * 0.04f;
            switch (DType)
            {
                case DType.BF16: MemoryMarshal.Write(_weights.AsSpan((int)(i * 2)), BFloat16Bits.FromSingle(value)); break;
                case DType.F16: MemoryMarshal.Write(_weights.AsSpan((int)(i * 2)), HalfBits.FromSingle(value)); break;
                default: MemoryMarshal.Write(_weights.AsSpan((int)(i * 4)), value); break;
            }
        }

        _x = [.. Enumerable.Range(0, Shape.Cols).Select(_ => (float)random.NextDouble())];
        _y = new float[Shape.Rows];
    }

    [Benchmark(Baseline = true)]
    public void Scalar() => Run(KernelPath.Scalar);

    [Benchmark]
    public void Vector256() => Run(KernelPath.Vector256);

    [Benchmark]
    public void Vector512() => Run(KernelPath.Vector512);

    private void Run(KernelPath path)
    {
        switch (DType)
        {
            case DType.BF16: MatMul.Rows<Bf16Load>(path, _weights, Shape.Cols, Shape.Rows, _x, default, 1, default, _y, 0, Shape.Rows, default); break;
            case DType.F16: MatMul.Rows<F16Load>(path, _weights, Shape.Cols, Shape.Rows, _x, default, 1, default, _y, 0, Shape.Rows, default); break;
            default: MatMul.Rows<F32Load>(path, _weights, Shape.Cols, Shape.Rows, _x, default, 1, default, _y, 0, Shape.Rows, default); break;
        }
    }
}
