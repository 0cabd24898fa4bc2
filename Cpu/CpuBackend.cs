using System.Numerics.Tensors;
using QwenSharp.Backend;
using QwenSharp.Cpu.Jobs;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;
using QwenSharp.Memory;
using QwenSharp.Numerics;
using QwenSharp.Threading;

namespace QwenSharp.Cpu;

/// <summary>
/// Runs the model on the CPU: f32 activations, weights read in their stored type (BF16, F16, F32) straight
/// from the memory-mapped checkpoint, SIMD kernels (<see cref="Kernels.KernelPath"/>) and all cores for the
/// matrix products and attention.
/// </summary>
public sealed class CpuBackend : IBackend
{
    private readonly WorkerPool _pool;
    private readonly WorkerScratch _scratch;
    private readonly LinearJob _linear;
    private readonly AttentionJob _attention;
    private readonly RopeJob _rope;
    private readonly SegmentAttentionJob _segmentAttention;
    private readonly SiluMultiplyJob _siluMultiply = new();

    /// <summary>One row of keys and of values rotated before a q8_0 cache stores them (<see cref="KvRotation"/>).</summary>
    private float[] _rotatedKeys = [], _rotatedValues = [];
    private readonly bool _repack;

    /// <summary>The repacked panels of every matrix uploaded here, and the matrices stored again (widened, split), together on huge pages (see <see cref="WeightArena"/>).</summary>
    private readonly WeightArena _panels = new();

    public CpuBackend(CpuBackendOptions? options = null)
    {
        options ??= new CpuBackendOptions();
        if (options.Threads < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.Threads, "threads must be at least 1");
        }

        KernelPath = options.KernelPath;
        _repack = options.RepackPanels;
        _pool = new WorkerPool(options.Threads);
        _scratch = new WorkerScratch(options.Threads);
        _linear = new LinearJob(KernelPath, _scratch) { RowsAsAlone = options.BatchInvariant };
        _attention = new AttentionJob(KernelPath, _scratch, _pool.ThreadCount);
        _rope = new RopeJob(options.Threads);
        _segmentAttention = new SegmentAttentionJob(KernelPath, _scratch);
    }

    public KernelPath KernelPath { get; }

    /// <summary>
    /// Bytes of the panels matrices were repacked into at load (<see cref="CpuBackendOptions.RepackPanels"/>), and of Q4_K's and
    /// Q5_K's rows paired for decode where the CPU reads them so (<see cref="PairedNibbleRows"/>), besides their stored rows.
    /// </summary>
    public long RepackedBytes { get; private set; }

    public int Threads => _pool.ThreadCount;

    public string Description => $"cpu, {KernelPath}, {Threads} thread{(Threads == 1 ? "" : "s")}{(_linear.RowsAsAlone ? ", batch-invariant" : "")}";

    public DeviceWeight Upload(TensorView tensor) => Upload(tensor, _repack);

    /// <summary>An embedding only gathered from stays as stored: its panels would serve no product (615 MiB for Qwen2.5-7B in Q8_0).</summary>
    public DeviceWeight UploadTable(TensorView tensor) => Upload(tensor, repack: false);

    /// <param name="dataArena">Where <paramref name="tensor"/>'s bytes came from when the weight is to own them (given back when it is disposed).</param>
    private DeviceWeight Upload(TensorView tensor, bool repack, WeightArena? dataArena = null)
    {
        switch (tensor.Shape.Length)
        {
            case 1 when DTypes.IsQuantized(tensor.DType):
                throw new NotSupportedException($"tensor '{tensor.Name}' is a {DTypes.Name(tensor.DType)} vector; norms and biases are F32, F16 or BF16");
            case 1:
                int length = checked((int)tensor.Shape[0]);
                var vector = new float[length];
                WidenRow(tensor.DType, tensor.Bytes, vector);
                return new CpuWeight(tensor, 1, length, vector);
            case 2 when tensor.DType == DType.Q5_0 && repack && PairsFit(tensor):
                return UploadPaired(tensor);
            case 2 when Widening.Target(tensor.DType) is DType wider && MultipliesAs(tensor.DType, tensor.Shape[0], tensor.Shape[1]) != DType.IQ4_NL:
                return Upload(Widened(tensor, wider), repack, _panels);
            case 2 when tensor.DType is DType.Q4_1 or DType.Q5_1:
                return UploadWithMinimums(tensor, repack && tensor.DType == DType.Q5_1 && PairsFit(tensor), repack);
            case 2:
                int rows = checked((int)tensor.Shape[0]), cols = checked((int)tensor.Shape[1]);
                var matrix = new CpuWeight(tensor, rows, cols, null, dataArena)
                {
                    ExactGroups = tensor.DType == DType.F16 ? FiniteF16Map(tensor, rows, cols) : null,
                };
                if (repack)
                {
                    matrix.Repack(_panels, KernelPath);
                    RepackedBytes += matrix.PanelBytesTotal + matrix.PairedBytesTotal;
                }

                return matrix;
            default:
                throw new ArgumentException($"tensor '{tensor.Name}' has shape {tensor.ShapeText}; weights are vectors or matrices");
        }
    }

    /// <summary>
    /// A matrix of a type multiplied as a wider one (<see cref="Widening"/>: Q5_0 and IQ4_NL as Q8_0, where
    /// <see cref="MultipliesAs"/> keeps neither as stored) stored
    /// again in it without loss, in memory from the weight arena (the weight gives it back when disposed). Q5_0 (a k-quant
    /// GGUF's rows that are not whole super-blocks: Qwen2.5-0.5B's 896-wide ones in Q4_K_M) comes here only where the CPU
    /// has no pairs' kernel (<see cref="UploadPaired"/>): multiplied as stored, with each block's 32 fifth bits spread to
    /// its bytes as llama.cpp does (a shuffle, a mask, a compare and two logic operations a block per row), it decoded
    /// slower than as Q8_0 on Zen 5, bound by its instructions: 58-62 tokens/s on two threads against 91-106 widened
    /// (alternating runs), for 324 MiB a step against 458.
    /// </summary>
    private unsafe TensorView Widened(TensorView tensor, DType wider)
    {
        long bytes = DTypes.ByteLength(wider, tensor.ElementCount);
        byte* widened = (byte*)_panels.Allocate(bytes);
        try
        {
            TensorValues.RowsAs(tensor, wider, new Span<byte>(widened, checked((int)bytes)));
        }
        catch
        {
            _panels.Free(widened);
            throw;
        }

        return new TensorView(tensor.Name, tensor.Source, wider, tensor.Shape, (nint)widened);
    }

    /// <summary>
    /// Q5_0 in pairs of blocks where they fit (<see cref="PairsFit"/>), and IQ4_NL as stored where it pays
    /// (<see cref="Iq4NlRows"/>, rows of whole Q8_0 panels for several tokens, unless panels are off); else a wider type
    /// where <see cref="Widening"/> names one. Upload stores the matrix so.
    /// </summary>
    public DType MultipliesAs(DType stored, long rows, long cols) => stored switch
    {
        DType.Q5_0 when _repack && Q5_0PairsFit(rows, cols) => DType.Q5_0,
        DType.IQ4_NL when _repack && Iq4NlRows.Pays(KernelPath) && Q8_0Panels.Fits(checked((int)rows), checked((int)cols)) => DType.IQ4_NL,
        _ => Widening.Target(stored) ?? stored,
    };

    /// <summary>Whether a Q5_0 or Q5_1 matrix of <paramref name="tensor"/>'s shape is stored in pairs of blocks here (<see cref="Q5_0Pairs"/>).</summary>
    private bool PairsFit(TensorView tensor) => Q5_0PairsFit(tensor.Shape[0], tensor.Shape[1]);

    private bool Q5_0PairsFit(long rows, long cols) =>
        Q5_0Pairs.Pays(KernelPath) && Q5_0Pairs.Fits(checked((int)cols)) && Q8_0Panels.Fits(checked((int)rows), checked((int)cols));

    /// <summary>
    /// A Q5_0 matrix stored again in pairs of blocks (<see cref="Q5_0Pairs"/>: the file's bytes, rearranged), which one token
    /// multiplies through <see cref="Q5_0PairKernel"/>, and repacked into Q8_0's panels (<see cref="Q8_0Panels"/>, its values
    /// as Q8_0 without loss) for several tokens; both in memory from the weight arena. Where the CPU has no such kernel,
    /// or several tokens' Q8_0 panels no integer one, the matrix is widened to Q8_0 instead (<see cref="Widening"/>).
    /// </summary>
    private unsafe CpuWeight UploadPaired(TensorView tensor)
    {
        int rows = checked((int)tensor.Shape[0]), cols = checked((int)tensor.Shape[1]);
        long rowBytes = DTypes.ByteLength(DType.Q5_0, cols);
        byte* pairs = (byte*)_panels.Allocate(rows * rowBytes);
        try
        {
            byte* source = (byte*)tensor.Data;
            Parallel.For(0, rows, r => Q5_0Pairs.Repack(new ReadOnlySpan<byte>(source + (r * rowBytes), checked((int)rowBytes)),
                new Span<byte>(pairs + (r * rowBytes), checked((int)rowBytes))));
        }
        catch
        {
            _panels.Free(pairs);
            throw;
        }

        var matrix = new CpuWeight(new TensorView(tensor.Name, tensor.Source, DType.Q5_0, tensor.Shape, (nint)pairs), rows, cols, null, _panels);
        matrix.Repack(_panels, KernelPath);
        RepackedBytes += matrix.PanelBytesTotal;
        return matrix;
    }

    /// <summary>
    /// A Q4_1 or Q5_1 matrix (a Q5_K_M GGUF's rows that are not whole super-blocks, Qwen2.5-0.5B's 896-wide ones; Q4_1 and
    /// Q5_1 files) as the Q8_0 matrix of its codes and scales and its minimums as f32 (<see cref="BlockMinimums"/>: one per
    /// 32 values): every value as stored (q × d + m), multiplied by the Q8_0 kernels with each block's minimum × the
    /// activations' block sum added. 38 bytes a block against the file's 20 or 24, at Q8_0's speed. A Q5_1 matrix
    /// <paramref name="paired"/> (where the CPU multiplies Q5_0 in pairs) is instead its codes and scales in Q5_0's pairs
    /// (<see cref="Q5_0Pairs.RepackQ5_1"/>: 22 bytes a block, the codes taken without Q5_0's offset) and the same minimums:
    /// 26 bytes a block. Both parts in memory from the weight arena, given back with the weight.
    /// </summary>
    private unsafe CpuWeight UploadWithMinimums(TensorView tensor, bool paired, bool repack)
    {
        int rows = checked((int)tensor.Shape[0]), cols = checked((int)tensor.Shape[1]);
        DType codesType = paired ? DType.Q5_0 : DType.Q8_0;
        const int blockValues = BlockMinimums.BlockValues;
        if (cols % DTypes.BlockValues(tensor.DType) != 0)
        {
            throw new ArgumentException($"tensor '{tensor.Name}' has shape {tensor.ShapeText}; {DTypes.Name(tensor.DType)} rows are whole blocks of {DTypes.BlockValues(tensor.DType)} values");
        }

        int blocks = cols / blockValues;
        long rowIn = DTypes.ByteLength(tensor.DType, cols), rowOut = DTypes.ByteLength(codesType, cols);
        byte* codes = (byte*)_panels.Allocate(rows * rowOut);
        float* minimums = (float*)_panels.Allocate(BlockMinimums.Floats(rows, blocks) * sizeof(float));
        try
        {
            byte* source = (byte*)tensor.Data;
            const int ChunkRows = 64;
            Parallel.For(0, (rows + ChunkRows - 1) / ChunkRows, chunk =>
            {
                for (int r = chunk * ChunkRows; r < Math.Min(rows, (chunk + 1) * ChunkRows); r++)
                {
                    var stored = new ReadOnlySpan<byte>(source + (r * rowIn), checked((int)rowIn));
                    var rowCodes = new Span<byte>(codes + (r * rowOut), checked((int)rowOut));
                    var rowMinimums = new Span<float>(minimums + BlockMinimums.Index(r, 0, blocks), ((blocks - 1) * BlockMinimums.GroupRows) + 1);
                    if (paired)
                    {
                        Q5_0Pairs.RepackQ5_1(stored, rowCodes, rowMinimums, BlockMinimums.GroupRows);
                    }
                    else
                    {
                        LegacyQuantBlocks.SplitMinimums(tensor.DType, stored, rowCodes, rowMinimums, BlockMinimums.GroupRows);
                    }
                }
            });
        }
        catch
        {
            _panels.Free(codes);
            _panels.Free(minimums);
            throw;
        }

        var view = new TensorView(tensor.Name, tensor.Source, codesType, tensor.Shape, (nint)codes);
        var matrix = new CpuWeight(view, rows, cols, null, _panels) { BlockMinimums = minimums };
        if (repack)
        {
            matrix.Repack(_panels, KernelPath);
            RepackedBytes += matrix.PanelBytesTotal + matrix.PairedBytesTotal;
        }

        return matrix;
    }

    public DeviceBuffer Allocate(int rows, int cols) => new CpuBuffer(rows, cols);

    public KvCache CreateKvCache(int layers, int slots, int capacity, int kvDim, DType elementType = DType.F32) =>
        new CpuKvCache(layers, slots, capacity, kvDim, elementType);

    public bool StoresKvCacheAs(DType elementType) => KvCache.Holds(elementType);

    public unsafe void Embed(DeviceWeight table, ReadOnlySpan<int> tokens, Activation x)
    {
        CpuWeight weights = CpuWeight.Of(table);
        CheckCols(x, weights.Cols, "embedding");
        for (int i = 0; i < tokens.Length; i++)
        {
            if (weights.StoredType == DType.Q5_0)
            {
                // Pairs of blocks (UploadPaired), their codes less PairCodeOffset (0 for a Q5_1 matrix's, whose minimums come apart).
                Q5_0Pairs.Dequantize(weights.RowBytesOf(tokens[i], 1), x.Row(i), weights.PairCodeOffset);
            }
            else
            {
                WidenRow(weights.StoredType, weights.RowBytesOf(tokens[i], 1), x.Row(i));
            }

            if (weights.BlockMinimums != null)
            {
                // The codes' part is the value ggml computes before adding m (q × d), so adding m rounds as ggml's does.
                Span<float> row = x.Row(i);
                for (int j = 0; j < row.Length; j++)
                {
                    row[j] += weights.BlockMinimum(tokens[i], j / BlockMinimums.BlockValues);
                }
            }
        }
    }

    public void RmsNorm(Activation x, DeviceWeight weight, float eps, Activation y)
    {
        float[] w = VectorOf(weight);
        CheckCols(x, w.Length, weight.Name);
        for (int i = 0; i < x.Rows; i++)
        {
            RmsNormKernel.Row(x.Row(i), w, eps, y.Row(i));
        }
    }

    public void Linear(Activation x, DeviceWeight weight, DeviceWeight? bias, Activation y)
    {
        _linear.Begin(CpuBuffer.Of(x).Data, x.Rows, Threads);
        RunLinear(AddProduct(x, weight, bias, y));
    }

    /// <summary>The three projections as one job: x quantized once, one hand-out to the threads.</summary>
    public void QkvProjection(Activation x, DeviceWeight wq, DeviceWeight? bq, Activation q, DeviceWeight wk, DeviceWeight? bk, Activation k,
        DeviceWeight wv, DeviceWeight? bv, Activation v)
    {
        _linear.Begin(CpuBuffer.Of(x).Data, x.Rows, Threads);
        AddProduct(x, wq, bq, q);
        AddProduct(x, wk, bk, k);
        RunLinear(AddProduct(x, wv, bv, v));
    }

    public void Rope(Activation q, Activation k, ReadOnlySpan<int> positions, AttentionShape shape)
    {
        int chunks = _rope.Prepare(CpuBuffer.Of(q).Data, CpuBuffer.Of(k).Data, positions[..q.Rows], shape);
        _pool.Run(_rope, chunks);
    }

    public void Attention(Activation q, Activation k, Activation v, KvCache cache, int layer,
        ReadOnlySpan<int> slots, ReadOnlySpan<int> positions, AttentionShape shape, Activation output)
    {
        CpuKvCache kv = CpuKvCache.Of(cache);
        bool rotates = KvCacheRotation.Applies(kv.ElementType, shape.HeadDim);
        if (rotates && _rotatedKeys.Length < kv.KvDim)
        {
            _rotatedKeys = new float[kv.KvDim];
            _rotatedValues = new float[kv.KvDim];
        }

        // Append this step's keys and values first, so each token also sees the earlier tokens of its own step.
        for (int i = 0; i < k.Rows; i++)
        {
            if (rotates)
            {
                // A q8_0 cache holds keys and values rotated (the attention job rotates the queries and outputs to match).
                Span<float> keys = _rotatedKeys.AsSpan(0, kv.KvDim), values = _rotatedValues.AsSpan(0, kv.KvDim);
                k.Row(i).CopyTo(keys);
                v.Row(i).CopyTo(values);
                KvRotation.Rotate(keys, KvCacheRotation.KeyBlock(shape.HeadDim));
                KvRotation.Rotate(values, KvCacheRotation.ValueBlock);
                kv.Store(layer, slots[i], positions[i], keys, values);
            }
            else
            {
                kv.Store(layer, slots[i], positions[i], k.Row(i), v.Row(i));
            }

            kv.Filled(layer, slots[i], positions[i] + 1);
        }

        int chunks = _attention.Prepare(CpuBuffer.Of(q).Data, CpuBuffer.Of(output).Data, kv, layer, slots[..q.Rows], positions[..q.Rows], shape);
        _pool.Run(_attention, chunks);
    }

    public void SwiGlu(Activation x, DeviceWeight gate, DeviceWeight up, DeviceWeight down,
        Activation gateScratch, Activation upScratch, Activation y)
    {
        // gate and up read the same x: one job.
        _linear.Begin(CpuBuffer.Of(x).Data, x.Rows, Threads);
        AddProduct(x, gate, null, gateScratch);
        RunLinear(AddProduct(x, up, null, upScratch));

        SiluMultiply(gateScratch, upScratch);
        Linear(gateScratch, down, null, y);
    }

    public void SiluMultiply(Activation gate, Activation up)
    {
        SameShape(gate, up, "gate", "up");
        _pool.Run(_siluMultiply, _siluMultiply.Prepare(CpuBuffer.Of(gate).Data, CpuBuffer.Of(up).Data, gate.Rows * gate.Cols));
    }

    public void Add(Activation x, Activation y)
    {
        SameShape(x, y, "x", "y");
        TensorPrimitives.Add(x.Span(), y.Span(), x.Span());
    }

    public void Multiply(Activation x, Activation factors)
    {
        SameShape(x, factors, "x", "factors");
        TensorPrimitives.Multiply(x.Span(), factors.Span(), x.Span());
    }

    public void GatherRows(Activation source, ReadOnlySpan<int> rows, Activation destination)
    {
        for (int i = 0; i < rows.Length; i++)
        {
            source.Row(rows[i]).CopyTo(destination.Row(i));
        }
    }

    public void Write(ReadOnlySpan<float> source, Activation destination) => source.CopyTo(destination.Span());

    public void WriteRows(ReadOnlySpan<float> source, Activation destination, int firstRow)
    {
        if (source.Length % destination.Cols != 0 || firstRow < 0 || firstRow + (source.Length / destination.Cols) > destination.Rows)
        {
            throw new ArgumentException($"{source.Length} values are not whole rows of {destination.Cols} within rows {firstRow}..{destination.Rows - 1}");
        }

        source.CopyTo(destination.Span()[(firstRow * destination.Cols)..]);
    }

    public void RopeTable(Activation q, Activation k, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin, AttentionShape shape)
    {
        int half = shape.HeadDim / 2;
        if (cos.Length < q.Rows * half || sin.Length < q.Rows * half)
        {
            throw new ArgumentException($"the rotary tables hold {cos.Length / half} rows for {q.Rows} rows of queries");
        }

        for (int i = 0; i < q.Rows; i++)
        {
            RopeKernel.RotateHeads(q.Row(i), shape.HeadDim, cos.Slice(i * half, half), sin.Slice(i * half, half));
            RopeKernel.RotateHeads(k.Row(i), shape.HeadDim, cos.Slice(i * half, half), sin.Slice(i * half, half));
        }
    }

    public void LayerNorm(Activation x, DeviceWeight weight, DeviceWeight bias, float eps, Activation y)
    {
        float[] w = VectorOf(weight), b = VectorOf(bias);
        CheckCols(x, w.Length, weight.Name);
        CheckCols(x, b.Length, bias.Name);
        for (int i = 0; i < x.Rows; i++)
        {
            LayerNormKernel.Row(x.Row(i), w, b, eps, y.Row(i));
        }
    }

    public void Activate(Activation x, ActivationFunction function)
    {
        float[] scratch = new float[x.Cols];
        for (int i = 0; i < x.Rows; i++)
        {
            GeluKernel.Apply(x.Row(i), scratch, function);
        }
    }

    public void SegmentAttention(Activation q, Activation k, Activation v, ReadOnlySpan<int> segmentStarts, AttentionShape shape, Activation output)
    {
        if (segmentStarts.Length < 2 || segmentStarts[0] != 0 || segmentStarts[^1] != q.Rows)
        {
            throw new ArgumentException($"segment starts must run from 0 to the {q.Rows} rows");
        }

        int chunks = _segmentAttention.Prepare(CpuBuffer.Of(q).Data, CpuBuffer.Of(k).Data, CpuBuffer.Of(v).Data, CpuBuffer.Of(output).Data, segmentStarts, shape);
        _pool.Run(_segmentAttention, chunks);
    }

    public void Download(Activation source, Span<float> destination) => source.Span().CopyTo(destination);

    /// <summary>On the kernels' threads (<see cref="WorkerPool.ForEach"/>), each item a chunk, claimed and stolen as the kernels' are.</summary>
    public void ForEachOnHost(int count, Action<int> body) => _pool.ForEach(count, body);

    public void Dispose()
    {
        // Twice does no harm: the pool's threads are joined once and the panels freed once.
        _pool.Dispose();
        _panels.Dispose();
    }

    private void WidenRow(DType type, ReadOnlySpan<byte> source, Span<float> destination)
    {
        switch (type)
        {
            case DType.BF16: Widen<Bf16Load>.Run(KernelPath, source, destination); break;
            case DType.F16: Widen<F16Load>.Run(KernelPath, source, destination); break;
            case DType.Q8_0 or DType.Q4_0 or DType.Q2_K or DType.Q3_K or DType.Q4_K or DType.Q5_K or DType.Q6_K or DType.IQ4_XS: QuantizedRows.Dequantize(KernelPath, type, source, destination); break;
            case DType.IQ4_NL: WidenedBlocks.DequantizeIq4_NL(source, destination); break;
            default: Widen<F32Load>.Run(KernelPath, source, destination); break;
        }
    }

    /// <summary>Runs the linear job begun and filled, after quantizing its activations on all threads where it asks to.</summary>
    private void RunLinear(int chunks)
    {
        if (_linear.QuantizeFirst(out int quantizeChunks) is { } quantize)
        {
            _pool.Run(quantize, quantizeChunks);
        }

        _pool.Run(_linear, chunks);
    }

    /// <summary>Checks one product's shapes and adds it to the linear job begun on <paramref name="x"/>; returns the job's chunks.</summary>
    private int AddProduct(Activation x, DeviceWeight weight, DeviceWeight? bias, Activation y)
    {
        CpuWeight w = CpuWeight.Of(weight);
        CheckCols(x, w.Cols, weight.Name);
        CheckCols(y, w.Rows, weight.Name);
        if (y.Rows < x.Rows)
        {
            throw new ArgumentException($"{weight.Name}: {x.Rows} input rows but room for {y.Rows} output rows");
        }

        return _linear.Add(w, bias is null ? null : VectorOf(bias), CpuBuffer.Of(y).Data);
    }

    /// <summary>
    /// An F16 matrix's map of exact groups (<see cref="F16ExactGroups.MapRow"/>) when it holds no infinity or NaN, else null:
    /// read once at load, in parallel slices of rows, each row checked and then mapped while it is in cache.
    /// </summary>
    private static unsafe ulong[]? FiniteF16Map(TensorView tensor, int rows, int cols)
    {
        long rowBytes = (long)cols * 2;
        int rowsPerSlice = (int)Math.Max(1, (1 << 24) / rowBytes), words = F16ExactGroups.MapWords(cols);
        var map = new ulong[(long)rows * words];
        int found = 0;
        Parallel.For(0, (rows + rowsPerSlice - 1) / rowsPerSlice, (slice, state) =>
        {
            for (int r = slice * rowsPerSlice; r < Math.Min(rows, (slice + 1) * rowsPerSlice); r++)
            {
                var row = new ReadOnlySpan<byte>((byte*)tensor.Data + (r * rowBytes), (int)rowBytes);
                if (!F16Values.AllFinite(row))
                {
                    Volatile.Write(ref found, 1);
                    state.Stop();
                    return;
                }

                F16ExactGroups.MapRow(row, cols, map.AsSpan(r * words, words));
            }
        });
        return found == 0 ? map : null;
    }

    private static float[] VectorOf(DeviceWeight weight) =>
        CpuWeight.Of(weight).Vector ?? throw new ArgumentException($"weight '{weight.Name}' is a matrix where a vector was expected");

    /// <summary>Refuses two activations of different shapes for an elementwise operation, naming both.</summary>
    private static void SameShape(Activation a, Activation b, string aName, string bName)
    {
        if (a.Rows != b.Rows || a.Cols != b.Cols)
        {
            throw new ArgumentException($"{aName} is [{a.Rows}, {a.Cols}] and {bName} [{b.Rows}, {b.Cols}]; they must be the same shape");
        }
    }

    private static void CheckCols(Activation a, int expected, string what)
    {
        if (a.Cols != expected)
        {
            throw new ArgumentException($"{what}: activations have {a.Cols} columns, expected {expected}");
        }
    }
}
