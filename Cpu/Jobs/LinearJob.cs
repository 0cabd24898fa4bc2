using System.Runtime.CompilerServices;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;
using QwenSharp.Threading;

namespace QwenSharp.Cpu.Jobs;

/// <summary>
/// y = x · Wᵀ + bias for up to three weights of the same input x (q, k and v; gate and up), split over threads by
/// blocks of output rows (each thread reads its own weights once). The products of one input run as one job: x is
/// quantized once for all of them, and the threads are handed work once, not once per product. At decode the 128-row
/// k and v products of Qwen2.5-0.5B were each mostly hand-off (7 µs for 0.12 MB).
/// </summary>
internal sealed class LinearJob(KernelPath path, WorkerScratch scratch) : ParallelJob
{
    /// <summary>Work below which a chunk is not worth a thread hand-off: about 2 µs of SIMD multiply-adds.</summary>
    public const long MinMultiplyAddsPerChunk = 1 << 16;

    /// <summary>
    /// Weight bytes below which a decode chunk (a few tokens) is not worth a thread hand-off. A chunk starts cold: its first
    /// rows wait on memory before the prefetches run ahead. With the multiply-add rule alone, Q4_0's 896 × 896 product
    /// (Qwen2.5-0.5B's q and o) ran in 56 KB chunks and streamed no faster on two threads than on one (15 GB/s), and a
    /// 128 × 896 one (k, v) slower (9 against 20); with this floor 18 and 15-20 GB/s, and the q/k/v job 15-20% faster.
    /// </summary>
    public const long MinWeightBytesPerChunk = 128 << 10;

    /// <summary>Products of one input a job holds.</summary>
    public const int MaxProducts = 3;

    private readonly Product[] _products = new Product[MaxProducts];
    private readonly int[] _firstChunk = new int[MaxProducts + 1];
    private int _count;
    private float[] _x = [];
    private int _tokens;
    private int _threads;
    private readonly Q8KActivations _q8k = new();
    private readonly Q8Activations _q8 = new();
    private bool _q8kReady, _q8Ready, _quantizeQ8First, _quantizeQ8KFirst, _f16Scaled, _f16ScaleTried, _blocksFirst;

    /// <summary>
    /// The activations' block sums (<c>[token][block]</c>, per 32 values) for the minimums of matrices that have them (Q4_1 and
    /// Q5_1, multiplied as Q8_0: <see cref="BlockMinimums"/>).
    /// </summary>
    private readonly MinimumSums _sums = new();
    private float[] _xBlocks = [];
    private int _cols;
    private float[] _xScaled = [];
    private QuantizeJob? _quantize;

    /// <summary>One weight's share of the job: its output and how its rows are cut into chunks.</summary>
    private struct Product
    {
        public CpuWeight Weight;
        public float[]? Bias;
        public float[] Y;
        public int RowsPerChunk;

        /// <summary>Whether the product reads the weight's repacked panels, not its stored rows (<see cref="ReadsPanels"/>).</summary>
        public bool Panels;
    }

    /// <summary>
    /// Each token must get the bits it gets alone (<see cref="CpuBackendOptions.BatchInvariant"/>): repacked matrices are then
    /// multiplied through their rows at any number of tokens up to <see cref="MatMul.RowDotTokens"/>, whose kernels give every
    /// token its one-token sums; their panels, from <see cref="MatMul.RepackedPanelTokens"/> tokens on, do not (each block enters
    /// their sums whole, as ggml defines it). Where one token reads the panels as well (<see cref="PanelDecode"/>), every step
    /// reads them, and each token's sums are its own there too.
    /// </summary>
    public bool RowsAsAlone { get; init; }

    /// <summary>Starts a job over <paramref name="tokens"/> rows of <paramref name="x"/>; <see cref="Add"/> its products.</summary>
    public void Begin(float[] x, int tokens, int threads)
    {
        _x = x;
        _tokens = tokens;
        _threads = threads;
        _count = 0;
        _q8kReady = _q8Ready = _quantizeQ8First = _quantizeQ8KFirst = _f16Scaled = _f16ScaleTried = _blocksFirst = _sums.Ready = _sums.First = false;
    }

    /// <summary>
    /// The job to run before this one when the activations of many tokens are to be quantized (a Q4_0 or k-quant prefill) or
    /// transposed into blocks (f32 panels): their rows split over the threads. Null when there is none.
    /// </summary>
    public ParallelJob? QuantizeFirst(out int chunks)
    {
        chunks = QuantizeChunks;
        return _quantizeQ8First || _quantizeQ8KFirst || _blocksFirst || _sums.First ? _quantize ??= new QuantizeJob(this) : null;
    }

    private KernelPath Path => path;

    /// <summary>Shares of the tokens' rows the quantization is cut into: about four per thread.</summary>
    private int QuantizeChunks => Math.Min(_tokens, _threads * 4);

    /// <summary>
    /// The first token of share <paramref name="chunk"/> of <paramref name="chunks"/>; with blocks to write, at a block's start,
    /// so each share writes whole blocks (<see cref="TokenBlocks.Write"/>'s fast path) and no two share a cache line.
    /// </summary>
    private int ShareStart(int chunk, int chunks)
    {
        int start = (int)((long)_tokens * chunk / chunks);
        if (!_blocksFirst || chunk == chunks)
        {
            return start;
        }

        int lanes = TokenBlocks.Lanes(path);
        return Math.Min(_tokens, (start + lanes - 1) / lanes * lanes);
    }

    /// <summary>Quantizes or transposes a share of the tokens' rows (see <see cref="QuantizeFirst"/>).</summary>
    private sealed class QuantizeJob(LinearJob job) : ParallelJob
    {
        public override void Execute(int chunk, int worker)
        {
            int chunks = job.QuantizeChunks;
            int first = job.ShareStart(chunk, chunks), end = job.ShareStart(chunk + 1, chunks);
            if (job._quantizeQ8First)
            {
                job._q8.QuantizeRows(job._x, first, end - first, job.Path);
            }

            if (job._quantizeQ8KFirst)
            {
                job._q8k.QuantizeRows(job._x, first, end - first, job.Path);
            }

            if (job._blocksFirst)
            {
                TokenBlocks.Write(job.Path, job._x, job._cols, first, end, job._xBlocks);
            }

            if (job._sums.First)
            {
                job.BlockSums(first, end);
            }
        }
    }

    /// <summary>Adds the product with <paramref name="weight"/> (whose columns are x's) and returns the job's chunk count so far.</summary>
    public int Add(CpuWeight weight, float[]? bias, float[] y)
    {
        if (_count == MaxProducts)
        {
            throw new InvalidOperationException($"a linear job holds at most {MaxProducts} products");
        }

        // About four chunks per thread evens out uneven progress; a chunk is a whole number of panels, at least
        // 32 rows and at least MinMultiplyAddsPerChunk of work (at decode also MinWeightBytesPerChunk of weights), so
        // that handing it to another thread costs little next to computing it, and the rows are shared evenly among
        // that many chunks. Small products (a 260K-parameter model's) run on the calling thread alone.
        int rows = weight.Rows;
        int target = Math.Max(1, rows / (_threads * 4));
        long minRows = (MinMultiplyAddsPerChunk / Math.Max(1L, (long)_tokens * weight.Cols)) + 1;
        if (_tokens <= MatMul.RowDotTokens)
        {
            minRows = Math.Max(minRows, (MinWeightBytesPerChunk / weight.RowBytes) + 1);
        }

        target = (int)Math.Max(target, Math.Min(minRows, rows));
        int chunks = (rows + target - 1) / target;
        int rowsPerChunk = Math.Max(32, ((rows + chunks - 1) / chunks + MatMul.PanelRows - 1) / MatMul.PanelRows * MatMul.PanelRows);
        if (_tokens > 1)
        {
            scratch.EnsurePanel(MatMul.PanelScratchFloats(weight.Cols));
        }

        // Block-quantized weights: the activations quantized once per job (Q8_K for the k-quants, Q8_0 for Q8_0, Q4_0, Q5_0,
        // IQ4_NL, and IQ4_XS's prefill where it packs Q8_0 panels), for every thread's integer products: at decode for every
        // type, at any number of tokens for Q4_0, the k-quants and, with AVX-VNNI, Q8_0 (their products stay integer at
        // prefill; Q8_0 without it widens panels of rows to f32).
        if ((weight.StoredType is DType.Q3_K or DType.Q4_K or DType.Q5_K or DType.Q6_K || (weight.StoredType is DType.Q2_K or DType.IQ4_XS && _tokens <= MatMul.RowDotTokens)) && !_q8kReady)
        {
            // Q8_K for the k-quants at any number of tokens (QuantPanel at prefill); a long prompt's rows on all threads.
            _q8k.Prepare(_tokens, weight.Cols, QuantPanel.PanelTokens(path, _tokens));
            _quantizeQ8KFirst = _tokens > MatMul.RowDotTokens;
            if (!_quantizeQ8KFirst)
            {
                _q8k.QuantizeRows(_x, 0, _tokens, path);
            }

            _q8kReady = true;
        }

        if (weight.HasPairedRows && _tokens <= MatMul.RowDotTokens && !_q8k.Paired)
        {
            // Paired rows (Q4_K, Q5_K) meet the activations' codes rearranged to match, once for every product of the job.
            _q8k.PairCodes();
        }

        bool iq4XsPanels = weight.StoredType == DType.IQ4_XS && MatMul.Iq4XsInIntegerPanels(path, _tokens);
        if (_tokens <= MatMul.RowDotTokens || QuantPanel.MultipliesInIntegers(path, weight.PanelType) || iq4XsPanels)
        {
            if ((weight.StoredType is DType.Q8_0 or DType.Q4_0 or DType.Q5_0 or DType.IQ4_NL || iq4XsPanels) && !_q8Ready)
            {
                // A long prompt's rows are quantized by all threads (QuantizeFirst) before the products; a few here.
                _q8.Prepare(_tokens, weight.Cols, QuantPanel.PanelTokens(path, _tokens));
                _quantizeQ8First = _tokens > MatMul.RowDotTokens;
                if (!_quantizeQ8First)
                {
                    _q8.QuantizeRows(_x, 0, _tokens, path);
                }

                _q8Ready = true;
            }
        }

        if (weight.StoredType == DType.F16 && weight.FiniteF16 && _tokens <= MatMul.FloatRowDotTokens && !_f16ScaleTried)
        {
            // Finite F16 at decode: the activations × 2^112 once per job, so each weight needs no multiply (F16ScaledLoad).
            int length = _tokens * weight.Cols;
            if (_xScaled.Length < length)
            {
                _xScaled = new float[length];
            }

            _f16Scaled = F16Scaling.TryScale(_x.AsSpan(0, length), _xScaled.AsSpan(0, length));
            _f16ScaleTried = true;
        }

        if (!_blocksFirst && MatMul.ReadsTokenBlocks(path, weight.StoredType, _tokens))
        {
            // Many tokens against f32 panels: the activations transposed into blocks once per job, on all threads (QuantizeFirst).
            int floats = TokenBlocks.Count(path, _tokens) * TokenBlocks.BlockFloats(path, weight.Cols);
            if (_xBlocks.Length < floats)
            {
                _xBlocks = new float[floats];
            }

            _cols = weight.Cols;
            TokenBlocks.ClearPadding(path, weight.Cols, _tokens, _xBlocks);
            _blocksFirst = true;
        }

        if (weight.HasBlockMinimums && !_sums.Ready)
        {
            // The activations' block sums once per job, for every thread's minimums; a long prompt's on all threads. Of the 8-bit
            // activations the codes are multiplied with where Q8_0's product quantizes them, else of the f32 values.
            _sums.Cols = weight.Cols;
            int count = _tokens * (weight.Cols / BlockMinimums.BlockValues);
            if (_sums.Values.Length < count)
            {
                _sums.Values = new float[count];
            }

            _sums.FromCodes = !MatMul.ReadsTokenBlocks(path, DType.Q8_0, _tokens);
            _sums.First = _tokens > MatMul.RowDotTokens;
            if (!_sums.First)
            {
                BlockSums(0, _tokens);
            }

            _sums.Ready = true;
        }

        _products[_count] = new Product { Weight = weight, Bias = bias, Y = y, RowsPerChunk = rowsPerChunk, Panels = ReadsPanels(weight) };
        _firstChunk[_count + 1] = _firstChunk[_count] + ((rows + rowsPerChunk - 1) / rowsPerChunk);
        _count++;
        return _firstChunk[_count];
    }

    /// <summary>
    /// Whether this job's product with <paramref name="weight"/> reads its repacked panels: from
    /// <see cref="MatMul.RepackedPanelTokens"/> tokens on, unless each token must get its bits alone (<see cref="RowsAsAlone"/>)
    /// and alone it reads the rows; at any number of tokens where one token reads the panels too (<see cref="PanelDecode"/>).
    /// Decided here, on the thread that builds the job, so that a test's <see cref="PanelDecode.Assume"/> holds for the workers.
    /// </summary>
    private bool ReadsPanels(CpuWeight weight) =>
        weight.Repacked && weight.StoredType is DType.Q4_0 or DType.Q4_K or DType.Q8_0 or DType.Q5_0 or DType.IQ4_NL
        && (PanelDecode.Pays(path, weight.StoredType) || (_tokens >= MatMul.RepackedPanelTokens && !(RowsAsAlone && _tokens <= MatMul.RowDotTokens)));

    /// <summary>Tokens [first, end)'s block sums (<see cref="_sums"/>), their activations already quantized where they come from codes.</summary>
    private void BlockSums(int first, int end)
    {
        int blocks = _sums.Cols / BlockMinimums.BlockValues;
        for (int t = first; t < end; t++)
        {
            if (_sums.FromCodes)
            {
                BlockMinimums.BlockSums(_q8.Row(t), _sums.Values.AsSpan(t * blocks, blocks));
            }
            else
            {
                BlockMinimums.BlockSums(_x, _sums.Cols, t, t + 1, _sums.Values);
            }
        }
    }

    /// <summary>A job's block sums of its activations, made once for all its products with minimums.</summary>
    private sealed class MinimumSums
    {
        public float[] Values = [];
        public bool Ready, First;
        public int Cols;

        /// <summary>
        /// Whether the sums are of the Q8_0 activations' codes × their scale (where the codes meet them rounded to 8 bits),
        /// else of the f32 activations (Q8_0's float panels).
        /// </summary>
        public bool FromCodes;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Execute(int chunk, int worker)
    {
        int p = 0;
        while (chunk >= _firstChunk[p + 1])
        {
            p++;
        }

        ref readonly Product product = ref _products[p];
        CpuWeight weight = product.Weight;
        int start = (chunk - _firstChunk[p]) * product.RowsPerChunk;
        int end = Math.Min(start + product.RowsPerChunk, weight.Rows);
        int k = weight.Cols, n = weight.Rows;
        ReadOnlySpan<byte> rows = weight.RowBytesOf(start, end - start);
        ReadOnlySpan<float> x = _x.AsSpan(0, _tokens * k);
        ReadOnlySpan<float> blocks = _blocksFirst ? _xBlocks : default;
        Span<float> y = product.Y.AsSpan(0, _tokens * n);
        ReadOnlySpan<float> bias = product.Bias;
        Span<float> panel = scratch.Panel(worker);
        switch (weight.StoredType)
        {
            case DType.BF16: MatMul.Rows<Bf16Load>(path, rows, k, n, x, blocks, _tokens, bias, y, start, end, panel); break;
            case DType.F16 when weight.FiniteF16 && _f16Scaled:
                MatMul.Rows<F16ScaledLoad>(path, rows, k, n, _xScaled.AsSpan(0, _tokens * k), blocks, _tokens, bias, y, start, end, panel,
                    weight.ExactGroupsOf(start, end - start));
                break;
            case DType.F16 when weight.FiniteF16: MatMul.Rows<F16FiniteLoad>(path, rows, k, n, x, blocks, _tokens, bias, y, start, end, panel); break;
            case DType.F16: MatMul.Rows<F16Load>(path, rows, k, n, x, blocks, _tokens, bias, y, start, end, panel); break;
            case DType.Q4_0 or DType.Q4_K or DType.Q8_0 or DType.Q5_0 or DType.IQ4_NL when product.Panels:
                MatMul.RepackedRows(path, weight.PanelType, weight.PanelBytesOf(start, end - start), k, n,
                    weight.StoredType != DType.Q4_K ? _q8 : null, weight.StoredType == DType.Q4_K ? _q8k : null, _tokens, bias, y, start, end, weight.PanelScales);
                break;
            case DType.Q5_0: MatMul.Q5_0PairRows(path, rows, n, _q8, _tokens, bias, y, start, end, offset: weight.PairCodeOffset != 0); break;
            case DType.Q4_0 or DType.IQ4_NL: MatMul.Q8Rows(path, weight.StoredType, rows, k, n, blocks, _q8, _tokens, bias, y, start, end, panel); break;
            case DType.Q8_0:
                MatMul.Q8Rows(path, weight.StoredType, rows, k, n, blocks, MatMul.ReadsTokenBlocks(path, DType.Q8_0, _tokens) ? null : _q8,
                    _tokens, bias, y, start, end, panel);
                break;
            case DType.Q4_K or DType.Q5_K when weight.HasPairedRows && _tokens <= MatMul.RowDotTokens:
                MatMul.KQuantRows(path, weight.StoredType, weight.PairedRowBytesOf(start, end - start), k, n, blocks, _q8k, _tokens, bias, y, start, end, panel, weight.PairedLayout);
                break;
            case DType.Q3_K or DType.Q4_K or DType.Q5_K or DType.Q6_K: MatMul.KQuantRows(path, weight.StoredType, rows, k, n, blocks, _q8kReady ? _q8k : null, _tokens, bias, y, start, end, panel); break;

            // IQ4_XS at prefill where Q8_0's panels multiply in integers: Q8_0 panels packed from its rows at every step.
            case DType.IQ4_XS when MatMul.Iq4XsInIntegerPanels(path, _tokens):
                MatMul.Iq4XsPanels(path, rows, k, n, _q8, _tokens, bias, y, start, end, panel);
                break;

            // Q2_K and IQ4_XS: integer rows at decode; a prefill's f32 panels (their integer panels are not built).
            case DType.Q2_K or DType.IQ4_XS:
                MatMul.KQuantRows(path, weight.StoredType, rows, k, n, blocks, _tokens <= MatMul.RowDotTokens ? _q8k : null, _tokens, bias, y, start, end, panel);
                break;
            default: MatMul.Rows<F32Load>(path, rows, k, n, x, blocks, _tokens, bias, y, start, end, panel); break;
        }

        if (weight.HasBlockMinimums)
        {
            unsafe
            {
                BlockMinimums.Add(path, weight.BlockMinimums, n, k / BlockMinimums.BlockValues, _sums.Values, _tokens, y, start, end);
            }
        }
    }
}
