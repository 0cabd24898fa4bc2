using System.Runtime.CompilerServices;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Cpu.Threading;
using QwenSharp.Formats;

namespace QwenSharp.Cpu.Jobs;

/// <summary>y = x · Wᵀ + bias, split over threads by blocks of output rows (each thread reads its own weights once).</summary>
internal sealed class LinearJob(KernelPath path, WorkerScratch scratch) : ParallelJob
{
    /// <summary>Work below which a chunk is not worth a thread hand-off: about 2 µs of SIMD multiply-adds.</summary>
    public const long MinMultiplyAddsPerChunk = 1 << 16;

    private CpuWeight _weight = null!;
    private float[]? _bias;
    private float[] _x = [];
    private float[] _y = [];
    private int _tokens;
    private int _rowsPerChunk;
    private readonly Q8KActivations _q8k = new();
    private readonly Q8Activations _q8 = new();
    private Q8KActivations? _quantizedK;
    private Q8Activations? _quantized;

    /// <summary>Sets up one product and returns its number of chunks.</summary>
    public int Prepare(CpuWeight weight, float[]? bias, float[] x, float[] y, int tokens, int threads)
    {
        _weight = weight;
        _bias = bias;
        _x = x;
        _y = y;
        _tokens = tokens;

        // About four chunks per thread evens out uneven progress; a chunk is a whole number of panels, at least
        // 32 rows and at least MinMultiplyAddsPerChunk of work, so that handing it to another thread (a
        // microsecond or so) costs little next to computing it. Small products (a 260K-parameter model's) run
        // on the calling thread alone.
        int rows = weight.Rows;
        int target = Math.Max(1, rows / (threads * 4));
        long minRows = (MinMultiplyAddsPerChunk / Math.Max(1L, (long)tokens * weight.Cols)) + 1;
        target = (int)Math.Max(target, Math.Min(minRows, rows));
        _rowsPerChunk = Math.Max(32, (target + MatMul.PanelRows - 1) / MatMul.PanelRows * MatMul.PanelRows);
        if (tokens > 1)
        {
            scratch.EnsurePanel(MatMul.PanelRows * weight.Cols);
        }

        // Block-quantized weights at decode: the activations quantized once here (Q8_K for the k-quants, Q8_0 for Q8_0
        // and Q4_0), for every thread's integer dots.
        (_quantizedK, _quantized) = (null, null);
        if (tokens <= MatMul.RowDotTokens)
        {
            if (weight.StoredType is DType.Q4_K or DType.Q6_K)
            {
                _q8k.Quantize(x.AsSpan(0, tokens * weight.Cols), tokens, weight.Cols, path);
                _quantizedK = _q8k;
            }
            else if (weight.StoredType is DType.Q8_0 or DType.Q4_0)
            {
                _q8.Quantize(x.AsSpan(0, tokens * weight.Cols), tokens, weight.Cols, path);
                _quantized = _q8;
            }
        }

        return (rows + _rowsPerChunk - 1) / _rowsPerChunk;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Execute(int chunk, int worker)
    {
        int start = chunk * _rowsPerChunk;
        int end = Math.Min(start + _rowsPerChunk, _weight.Rows);
        int k = _weight.Cols, n = _weight.Rows;
        ReadOnlySpan<byte> rows = _weight.RowBytesOf(start, end - start);
        ReadOnlySpan<float> x = _x.AsSpan(0, _tokens * k);
        Span<float> y = _y.AsSpan(0, _tokens * n);
        ReadOnlySpan<float> bias = _bias;
        Span<float> panel = scratch.Panel(worker);
        switch (_weight.StoredType)
        {
            case DType.BF16: MatMul.Rows<Bf16Load>(path, rows, k, n, x, _tokens, bias, y, start, end, panel); break;
            case DType.F16: MatMul.Rows<F16Load>(path, rows, k, n, x, _tokens, bias, y, start, end, panel); break;
            case DType.Q8_0 or DType.Q4_0: MatMul.Q8Rows(path, _weight.StoredType, rows, k, n, x, _quantized, _tokens, bias, y, start, end, panel); break;
            case DType.Q4_K or DType.Q6_K: MatMul.KQuantRows(path, _weight.StoredType, rows, k, n, x, _quantizedK, _tokens, bias, y, start, end, panel); break;
            default: MatMul.Rows<F32Load>(path, rows, k, n, x, _tokens, bias, y, start, end, panel); break;
        }
    }
}
