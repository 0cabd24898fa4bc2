using BenchmarkDotNet.Attributes;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;
using QwenSharp.Numerics;

namespace QwenSharp.Bench;

/// <summary>
/// A prefill matrix product on one thread, Y = X Wᵀ for many tokens with bf16 W: panels of W converted to
/// f32 once and reused by every token through 4 × 4 tiles. Compute-bound, so "GFLOP/s" is the figure.
/// </summary>
[Config(typeof(BenchConfig))]
public class MatMulBenchmarks
{
    private byte[] _weights = [];
    private float[] _x = [];
    private float[] _y = [];
    private float[] _panel = [];

    public static IEnumerable<WeightShape> Shapes => WeightShape.Qwen25HalfB.Where(s => s.Name != "lm_head");

    [ParamsSource(nameof(Shapes))]
    public WeightShape Shape { get; set; } = null!;

    [Params(DType.BF16)]
    public DType DType { get; set; }

    [Params(64, 512)]
    public int Tokens { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(42);
        ushort[] bits = [.. Enumerable.Range(0, Shape.Rows * Shape.Cols).Select(_ => BFloat16Bits.FromSingle((float)(random.NextDouble() - 0.5) * 0.04f))];
        _weights = System.Runtime.InteropServices.MemoryMarshal.AsBytes(bits.AsSpan()).ToArray();
        _x = [.. Enumerable.Range(0, Tokens * Shape.Cols).Select(_ => (float)random.NextDouble())];
        _y = new float[Tokens * Shape.Rows];
        _panel = new float[MatMul.PanelRows * Shape.Cols];
    }

    [Benchmark(Baseline = true)]
    public void Scalar() => Run(KernelPath.Scalar);

    [Benchmark]
    public void Vector256() => Run(KernelPath.Vector256);

    [Benchmark]
    public void Vector512() => Run(KernelPath.Vector512);

    private void Run(KernelPath path) =>
        MatMul.Rows<Bf16Load>(path, _weights, Shape.Cols, Shape.Rows, _x, Tokens, default, _y, 0, Shape.Rows, _panel);
}
