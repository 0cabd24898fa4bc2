using BenchmarkDotNet.Attributes;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;
using QwenSharp.Numerics;

namespace QwenSharp.Bench;

/// <summary>
/// A prefill matrix product on one thread, Y = X Wᵀ for many tokens with bf16 W: panels of W converted to
/// f32 once and reused by every block of tokens through outer-product tiles. Compute-bound, so "GFLOP/s" is the figure.
/// </summary>
[Config(typeof(BenchConfig))]
public class MatMulBenchmarks
{
    private byte[] _weights = [];
    private float[] _x = [];
    private float[] _y = [];
    private float[] _panel = [];
    private float[] _blocks = [];

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
        _panel = new float[MatMul.PanelScratchFloats(Shape.Cols)];
        _blocks = new float[KernelPaths.All.Max(path => TokenBlocks.Count(path, Tokens) * TokenBlocks.BlockFloats(path, Shape.Cols))];
    }

    [Benchmark(Baseline = true)]
    public void Scalar() => Run(KernelPath.Scalar);

    [Benchmark]
    public void Vector256() => Run(KernelPath.Vector256);

    [Benchmark]
    public void Vector512() => Run(KernelPath.Vector512);

    private void Run(KernelPath path)
    {
        // The activations as the linear job hands them to the f32 panels: transposed into blocks of tokens once per product.
        TokenBlocks.ClearPadding(path, Shape.Cols, Tokens, _blocks);
        TokenBlocks.Write(path, _x, Shape.Cols, 0, Tokens, _blocks);
        MatMul.Rows<Bf16Load>(path, _weights, Shape.Cols, Shape.Rows, _x, _blocks, Tokens, default, _y, 0, Shape.Rows, _panel);
    }
}
