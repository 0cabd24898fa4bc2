using System.Runtime.InteropServices;
using QwenSharp.Backend;
using QwenSharp.Formats;
using QwenSharp.Threading;

namespace QwenSharp.Gpu;

/// <summary>
/// Runs the model on a Vulkan device: weights uploaded once in their stored type, activations and the KV cache
/// in device memory, every operation a compute shader (Shaders/*.comp). Operations only record work; reading
/// logits (<see cref="Download"/>) submits the whole step as one command buffer, replayed when the next step
/// is the same (see <see cref="CommandStream"/>). Only ids, positions and slots go in; only logits come out.
/// </summary>
public sealed unsafe class VulkanBackend : IBackend
{
    /// <summary>Rows up to which Linear runs as a matrix-vector product (one weight pass for all rows).</summary>
    internal const int MaxMatVecRows = 8;

    /// <summary>Positions per workgroup of a split attention (decode over long contexts).</summary>
    private const int AttentionSplitLength = 256;

    private const uint MatVecGroup = 64;
    private const uint MatVecRowsPerGroup = 2;
    private const uint AttentionGroup = 64;

    private readonly VulkanDevice _device;
    private readonly ShaderLibrary _shaders;
    private readonly CommandStream _stream;
    private readonly StepInputs _inputs;
    private GpuBuffer? _readback;
    private GpuBuffer? _attentionPartial;
    private readonly GpuBuffer _staging;
    private int[] _anglePositions = [];
    private int _angleCount = -1;
    private ulong _angleAddress;
    private AttentionShape _angleShape;
    private double[] _inverseFrequencies = [];
    private readonly bool _fuse;
    private readonly LastOperation _last = new();
    private readonly GpuBuffer[] _matVecReads = new GpuBuffer[12];
    private readonly GpuBuffer[] _matVecWrites = new GpuBuffer[6];
    private readonly bool _matrixUnits;
    private readonly bool _matrixUnitsFailed;
    private GpuBuffer? _split;
    private readonly long? _memoryLimit;

    public VulkanBackend(VulkanBackendOptions? options = null)
    {
        options ??= new VulkanBackendOptions();
        if (options.HostThreads < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.HostThreads, "host threads must be at least 1");
        }

        _memoryLimit = options.MemoryLimit;
        _device = VulkanDevice.Open(options.Device);
        _fuse = options.FuseDecode ?? _device.Info.Type != "cpu";
        _hostThreads = options.HostThreads ?? (_device.Info.Type != "cpu" ? Math.Clamp(Environment.ProcessorCount / 2, 1, 8) : 1);
        try
        {
            _shaders = new ShaderLibrary(_device);
            _stream = new CommandStream(_device, _shaders);
            _device.BeforeBufferFreed = BeforeBufferFreed;
            _inputs = new StepInputs(_device, 1 << 20);
            _staging = GpuBuffer.HostVisible(_device, 16L << 20, "upload staging");
            string? asked = Environment.GetEnvironmentVariable("QWENSHARP_MATRIX_UNITS");
            bool wanted = options.MatrixUnits
                ?? (string.Equals(asked, "on", StringComparison.OrdinalIgnoreCase)
                    || (_device.Info.Type != "cpu" && !string.Equals(asked, "off", StringComparison.OrdinalIgnoreCase)));
            _matrixUnits = wanted && _device.F16MatrixTile > 0 && MatrixUnitsAgree();
            _matrixUnitsFailed = wanted && _device.F16MatrixTile > 0 && !_matrixUnits;
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The device in use.</summary>
    public GpuDeviceInfo Device => _device.Info;

    public string Description =>
        $"gpu, {_device.Info.Name} (Vulkan {_device.Info.ApiVersion}, subgroup {_device.Info.SubgroupSize}{MatrixUnitsText})";

    private string MatrixUnitsText => _matrixUnits ? ", f16 matrix units"
        : _matrixUnitsFailed ? ", matrix units unused: they disagreed with the f32 GEMM" : "";

    /// <summary>Whether prefill products run on the matrix units (see <see cref="VulkanBackendOptions.MatrixUnits"/>).</summary>
    public bool UsesMatrixUnits => _matrixUnits;

    /// <summary>Products recorded on the matrix units so far.</summary>
    public long MatrixUnitProducts { get; private set; }

    /// <summary>Device-local bytes held now: weights, activations, KV caches.</summary>
    public long AllocatedBytes => _device.AllocatedBytes;

    /// <summary>Steps submitted, and how many of them replayed a kept command buffer.</summary>
    public (long Submits, long Replays) Submissions => (_stream.Submits, _stream.Replays);

    /// <summary>Compute dispatches and barriers in the last submitted step.</summary>
    public (int Dispatches, int Barriers) LastStep => _stream.LastStep;

    public long? AvailableMemory => Available();

    /// <summary>Device memory free: the driver's figure, capped by <see cref="VulkanBackendOptions.MemoryLimit"/> less what this backend holds.</summary>
    private long Available() => _memoryLimit is long limit ? Math.Min(_device.AvailableBytes(), Math.Max(0, limit - _device.AllocatedBytes)) : _device.AvailableBytes();

    public void CheckWeightMemory(long bytes, string what)
    {
        long available = Available();
        if (bytes > available)
        {
            throw new GpuException(
                $"{_device.Info.Name}: not enough device memory for {what}: {GpuBuffer.Megabytes(bytes)} needed, {GpuBuffer.Megabytes(available)} available");
        }
    }

    /// <summary>A matrix multiplied as a wider type takes that type's bytes (<see cref="UploadWidened"/>).</summary>
    public long UploadBytes(TensorView tensor) => Widening.HeldBytes(tensor);

    public DeviceWeight Upload(TensorView tensor)
    {
        switch (tensor.Shape.Length)
        {
            case 1 when DTypes.IsQuantized(tensor.DType):
                throw new NotSupportedException($"tensor '{tensor.Name}' is a {DTypes.Name(tensor.DType)} vector; norms and biases are F32, F16 or BF16");
            case 1:
                // Norm weights and biases: widened to f32 once, as every use reads them whole.
                int length = checked((int)tensor.Shape[0]);
                float[] values = TensorValues.ToSingle(tensor);
                GpuBuffer vector = GpuBuffer.DeviceLocal(_device, length * sizeof(float), $"tensor '{tensor.Name}'");
                fixed (float* p = values)
                {
                    UploadBytes((byte*)p, (long)length * sizeof(float), vector);
                }

                return new GpuWeight(tensor.Name, tensor.DType, 1, length, vector);
            case 2 when Widening.Target(tensor.DType) is DType wider:
                return UploadWidened(tensor, wider);
            case 2:
                GpuBuffer matrix = GpuBuffer.DeviceLocal(_device, tensor.ByteLength, $"tensor '{tensor.Name}'");
                UploadBytes((byte*)tensor.Data, tensor.ByteLength, matrix);
                return new GpuWeight(tensor.Name, tensor.DType, checked((int)tensor.Shape[0]), checked((int)tensor.Shape[1]), matrix);
            default:
                throw new ArgumentException($"tensor '{tensor.Name}' has shape {tensor.ShapeText}; weights are vectors or matrices");
        }
    }

    /// <summary>
    /// A matrix of a type multiplied as a wider one (<see cref="Widening"/>: Q5_0 and IQ4_NL as Q8_0, Q3_K as Q6_K) stored
    /// again in it without loss and uploaded so, which the shaders multiply: the same values (Q5_0: 34 bytes a block for
    /// 22; IQ4_NL 34 for 18; Q3_K 210 a super-block for 110).
    /// </summary>
    private GpuWeight UploadWidened(TensorView tensor, DType wider)
    {
        int rows = checked((int)tensor.Shape[0]), cols = checked((int)tensor.Shape[1]);
        long bytes = DTypes.ByteLength(wider, (long)rows * cols);
        byte[] widened = GC.AllocateUninitializedArray<byte>(checked((int)bytes));
        TensorValues.RowsAs(tensor, wider, widened);
        GpuBuffer matrix = GpuBuffer.DeviceLocal(_device, bytes, $"tensor '{tensor.Name}'");
        fixed (byte* p = widened)
        {
            UploadBytes(p, bytes, matrix);
        }

        return new GpuWeight(tensor.Name, wider, rows, cols, matrix);
    }

    public DeviceBuffer Allocate(int rows, int cols) => new GpuActivations(_device, rows, cols);

    public KvCache CreateKvCache(int layers, int slots, int capacity, int kvDim, DType elementType = DType.F32)
    {
        KvCache.CheckType(elementType);

        // The shaders address a layer's keys (or values) in 32 bits: elements of f32 and the halves, bytes of q8_0 and q4_0.
        bool quantized = KvCache.IsQuantized(elementType);
        long layerPositions = (long)slots * capacity, layerUnits = layerPositions * (quantized ? GpuKvCache.PositionBytesOf(elementType, kvDim) : kvDim);
        if (layerUnits > uint.MaxValue)
        {
            throw new GpuException(
                $"{_device.Info.Name}: a KV cache of {slots} x {capacity} positions of {kvDim} {KvCache.NameOf(elementType)} values is more than the GPU's shaders address in a layer (2^32 {(quantized ? "bytes" : "values")}); fewer slots or a smaller --context");
        }

        long bytes = 2L * layers * GpuKvCache.PositionBytesOf(elementType, kvDim) * layerPositions;
        long available = Available();
        if (bytes > available)
        {
            throw new GpuException(
                $"{_device.Info.Name}: not enough device memory for a KV cache of {slots} x {capacity} positions: {GpuBuffer.Megabytes(bytes)} needed, {GpuBuffer.Megabytes(available)} available (a smaller --context needs less)");
        }

        return new GpuKvCache(_device, _stream, Synchronize, layers, slots, capacity, kvDim, elementType);
    }

    /// <summary>Every type a cache holds: f32, f16, bf16, q8_0 and q4_0.</summary>
    public bool StoresKvCacheAs(DType elementType) => KvCache.Holds(elementType);

    public void Embed(DeviceWeight table, ReadOnlySpan<int> tokens, Activation x)
    {
        GpuWeight w = GpuWeight.Of(table);
        CheckCols(x, w.Cols, "embedding");
        GpuActivations xa = GpuActivations.Of(x);
        var push = new EmbedPush { Table = w.Address, Tokens = _inputs.Write(tokens), X = xa.Address, Rows = (uint)tokens.Length, Cols = (uint)w.Cols };
        _stream.Dispatch(_shaders.Get(Shader(Kernel.Embed, w.StoredType)), push, Groups((long)tokens.Length * w.Cols, 256), [w.Buffer], [xa.Buffer]);
    }

    public void RmsNorm(Activation x, DeviceWeight weight, float eps, Activation y)
    {
        GpuWeight w = VectorOf(weight);
        CheckCols(x, w.Cols, weight.Name);
        GpuActivations xa = GpuActivations.Of(x), ya = GpuActivations.Of(y);
        var push = new RmsNormPush { X = xa.Address, Weight = w.Address, Y = ya.Address, Rows = (uint)x.Rows, Cols = (uint)x.Cols, Eps = eps };
        MarkIfFusing();
        _stream.Dispatch(_shaders.Get("rms_norm"), push, x.Rows, [xa.Buffer, w.Buffer], [ya.Buffer]);
        Remember(Fusable.Norm, x.Rows);
        _last.Norm = push;
        _last.NormInput = xa.Buffer;
        _last.NormWeight = w.Buffer;
    }

    public void Linear(Activation x, DeviceWeight weight, DeviceWeight? bias, Activation y)
    {
        GpuWeight w = GpuWeight.Of(weight);
        CheckCols(x, w.Cols, weight.Name);
        CheckCols(y, w.Rows, weight.Name);
        GpuActivations xa = GpuActivations.Of(x), ya = GpuActivations.Of(y);
        GpuWeight? b = bias is null ? null : VectorOf(bias);
        if (x.Rows == 0)
        {
            return;
        }

        if (x.Rows <= MaxMatVecRows)
        {
            var push = new LinearPush
            {
                X = xa.Address, W0 = w.Address, Bias0 = b?.Address ?? 0, Y0 = ya.Address,
                Rows0 = (uint)w.Rows, Cols = (uint)w.Cols, Flags = MatVecFlags(w, gated: false),
            };
            MatVec(push, xa, x.Rows, w, Groups(w.Rows, MatVecRowsPerGroup), [w.Buffer, (b ?? w).Buffer], [ya.Buffer], single: true);
        }
        else if (_matrixUnits && w.Cols % 2 == 0)
        {
            CoopGemm(xa, x.Rows, w, b, ya);
        }
        else
        {
            TiledGemm(xa, x.Rows, w, b, ya);
        }
    }

    /// <summary>x · wᵀ (+ bias) as gemm.comp's f32 tiles in shared memory.</summary>
    private void TiledGemm(GpuActivations x, int rows, GpuWeight w, GpuWeight? bias, GpuActivations y)
    {
        uint tilesN = (uint)Groups(w.Rows, 64);
        var push = new GemmPush
        {
            X = x.Address, W = w.Address, Bias = bias?.Address ?? 0, Y = y.Address,
            M = (uint)rows, N = (uint)w.Rows, K = (uint)w.Cols, TilesN = tilesN,
        };
        ReadOnlySpan<GpuBuffer> reads = bias is null ? [x.Buffer, w.Buffer] : [x.Buffer, w.Buffer, bias.Buffer];
        _stream.Dispatch(_shaders.Get(Shader(Kernel.Gemm, w.StoredType)), push, Groups(rows, 64) * tilesN, reads, [y.Buffer]);
    }

    /// <summary>
    /// x · wᵀ (+ bias) on the matrix units: split_rows.comp writes x as hi + lo f16 rows with a power-of-two scale per row into
    /// scratch, gemm_coop.comp multiplies both against the weights into f32 and takes the scale back out.
    /// </summary>
    private void CoopGemm(GpuActivations x, int rows, GpuWeight w, GpuWeight? bias, GpuActivations y)
    {
        long halves = (long)rows * w.Cols;
        GpuBuffer split = SplitBuffer((halves * 2 * sizeof(ushort)) + (rows * sizeof(float)));
        ulong hi = split.Address, lo = hi + (ulong)(halves * sizeof(ushort)), unscale = lo + (ulong)(halves * sizeof(ushort));
        var splitPush = new SplitRowsPush { X = x.Address, Hi = hi, Lo = lo, Unscale = unscale, Rows = (uint)rows, Cols = (uint)w.Cols };
        _stream.Dispatch(_shaders.Get("split_rows"), splitPush, rows, [x.Buffer], [split]);
        uint tilesN = (uint)Groups(w.Rows, 64);
        var push = new CoopGemmPush
        {
            Hi = hi, Lo = lo, Unscale = unscale, W = w.Address, Bias = bias?.Address ?? 0, Y = y.Address,
            M = (uint)rows, N = (uint)w.Rows, K = (uint)w.Cols, TilesN = tilesN,
        };
        ulong pipeline = _shaders.Get(CoopShader(w.StoredType, _device.F16MatrixTile), (uint)(4 * _device.Info.SubgroupSize), constants: 1);
        ReadOnlySpan<GpuBuffer> reads = bias is null ? [split, w.Buffer] : [split, w.Buffer, bias.Buffer];
        _stream.Dispatch(pipeline, push, Groups(rows, 64) * tilesN, reads, [y.Buffer]);
        MatrixUnitProducts++;
    }

    /// <summary>gemm_coop.comp compiled for a weight type and a product shape (literals, so a step allocates no names).</summary>
    private static string CoopShader(DType type, int tile) => (type, tile) switch
    {
        (DType.BF16, 16) => "gemm_coop_bf16_16",
        (DType.F16, 16) => "gemm_coop_f16_16",
        (DType.F32, 16) => "gemm_coop_f32_16",
        (DType.Q8_0, 16) => "gemm_coop_q8_0_16",
        (DType.Q4_0, 16) => "gemm_coop_q4_0_16",
        (DType.Q4_1, 16) => "gemm_coop_q4_1_16",
        (DType.Q5_1, 16) => "gemm_coop_q5_1_16",
        (DType.Q2_K, 16) => "gemm_coop_q2_k_16",
        (DType.Q3_K, 16) => "gemm_coop_q3_k_16",
        (DType.IQ4_XS, 16) => "gemm_coop_iq4_xs_16",
        (DType.Q4_K, 16) => "gemm_coop_q4_k_16",
        (DType.Q5_K, 16) => "gemm_coop_q5_k_16",
        (DType.Q6_K, 16) => "gemm_coop_q6_k_16",
        (DType.BF16, 8) => "gemm_coop_bf16_8",
        (DType.F16, 8) => "gemm_coop_f16_8",
        (DType.F32, 8) => "gemm_coop_f32_8",
        (DType.Q8_0, 8) => "gemm_coop_q8_0_8",
        (DType.Q4_0, 8) => "gemm_coop_q4_0_8",
        (DType.Q4_1, 8) => "gemm_coop_q4_1_8",
        (DType.Q5_1, 8) => "gemm_coop_q5_1_8",
        (DType.Q2_K, 8) => "gemm_coop_q2_k_8",
        (DType.Q3_K, 8) => "gemm_coop_q3_k_8",
        (DType.IQ4_XS, 8) => "gemm_coop_iq4_xs_8",
        (DType.Q4_K, 8) => "gemm_coop_q4_k_8",
        (DType.Q5_K, 8) => "gemm_coop_q5_k_8",
        (DType.Q6_K, 8) => "gemm_coop_q6_k_8",
        _ => throw new NotSupportedException($"no matrix-unit product for {DTypes.Name(type)} weights in {tile} x {tile} tiles"),
    };

    /// <summary>The scratch of split activations, grown (before this call records anything, as growing submits the work so far).</summary>
    private GpuBuffer SplitBuffer(long bytes)
    {
        if (_split is null || _split.Size < bytes)
        {
            _split?.Dispose();
            _split = null;
            _split = GpuBuffer.DeviceLocal(_device, bytes * 2, "split activations for the matrix units");
        }

        return _split;
    }

    /// <summary>
    /// Whether gemm_coop.comp on this device gives what the f32 GEMM gives, on a product with partial tiles both ways and
    /// K not a whole number of steps: the check that a driver we have not run on keeps to the shader's assumptions (four
    /// subgroups of the size the device reports, f16 products exact into f32). Where not, the f32 GEMM stays.
    /// </summary>
    private bool MatrixUnitsAgree()
    {
        const int Rows = 70, Outputs = 72, Inputs = 112;
        var random = new Random(7);
        var weights = new ushort[Outputs * Inputs];
        for (int i = 0; i < weights.Length; i++)
        {
            weights[i] = (ushort)(BitConverter.SingleToUInt32Bits((float)(random.NextDouble() - 0.5)) >> 16);
        }

        float[] x = [.. Enumerable.Range(0, Rows * Inputs).Select(_ => (float)(random.NextDouble() - 0.5))];
        fixed (ushort* data = weights)
        {
            IBackend backend = this;
            using DeviceWeight weight = backend.Upload(new TensorView("matrix-unit check", "VulkanBackend", DType.BF16, [Outputs, Inputs], (nint)data));
            using DeviceBuffer input = backend.Allocate(Rows, Inputs), coop = backend.Allocate(Rows, Outputs), tiled = backend.Allocate(Rows, Outputs);
            backend.Write(x, input.Rows(Rows));
            GpuWeight w = GpuWeight.Of(weight);
            GpuActivations xa = GpuActivations.Of(input.Rows(Rows));
            CoopGemm(xa, Rows, w, null, GpuActivations.Of(coop.Rows(Rows)));
            TiledGemm(xa, Rows, w, null, GpuActivations.Of(tiled.Rows(Rows)));
            float[] a = new float[Rows * Outputs], b = new float[Rows * Outputs];
            backend.Download(coop.Rows(Rows), a);
            backend.Download(tiled.Rows(Rows), b);
            MatrixUnitProducts = 0;
            _split?.Dispose();   // a model's first prefill sizes it; until then the backend holds no device memory of its own
            _split = null;
            for (int i = 0; i < a.Length; i++)
            {
                // Both at f32 accuracy (sums of 112 products under 1/4 in size: about 1e-6 apart); x in f16 alone, or one
                // quadrant missed, is 1e-4 and more.
                if (!(Math.Abs(a[i] - b[i]) <= 2e-5f))
                {
                    return false;
                }
            }

            return true;
        }
    }

    /// <summary>For a few rows (decode), q, k and v in one matvec dispatch when their weights share type and width (when fusing).</summary>
    public void QkvProjection(Activation x, DeviceWeight wq, DeviceWeight? bq, Activation q, DeviceWeight wk, DeviceWeight? bk, Activation k,
        DeviceWeight wv, DeviceWeight? bv, Activation v)
    {
        GpuWeight a = GpuWeight.Of(wq), b = GpuWeight.Of(wk), c = GpuWeight.Of(wv);
        if (!_fuse || x.Rows == 0 || x.Rows > MaxMatVecRows || !SameLayout(a, b) || !SameLayout(a, c))
        {
            Linear(x, wq, bq, q);
            Linear(x, wk, bk, k);
            Linear(x, wv, bv, v);
            return;
        }

        CheckCols(x, a.Cols, wq.Name);
        CheckCols(q, a.Rows, wq.Name);
        CheckCols(k, b.Rows, wk.Name);
        CheckCols(v, c.Rows, wv.Name);
        GpuActivations xa = GpuActivations.Of(x), qa = GpuActivations.Of(q), ka = GpuActivations.Of(k), va = GpuActivations.Of(v);
        GpuWeight? qb = bq is null ? null : VectorOf(bq), kb = bk is null ? null : VectorOf(bk), vb = bv is null ? null : VectorOf(bv);
        var push = new LinearPush
        {
            X = xa.Address, W0 = a.Address, W1 = b.Address, W2 = c.Address,
            Bias0 = qb?.Address ?? 0, Bias1 = kb?.Address ?? 0, Bias2 = vb?.Address ?? 0, Y0 = qa.Address, Y1 = ka.Address, Y2 = va.Address,
            Rows0 = (uint)a.Rows, Rows1 = (uint)b.Rows, Rows2 = (uint)c.Rows, Cols = (uint)a.Cols, Flags = MatVecFlags(a, gated: false),
        };
        long groups = Groups(a.Rows, MatVecRowsPerGroup) + Groups(b.Rows, MatVecRowsPerGroup) + Groups(c.Rows, MatVecRowsPerGroup);
        MatVec(push, xa, x.Rows, a, groups, [a.Buffer, b.Buffer, c.Buffer, (qb ?? a).Buffer, (kb ?? a).Buffer, (vb ?? a).Buffer],
            [qa.Buffer, ka.Buffer, va.Buffer], single: false);
    }

    public void Rope(Activation q, Activation k, ReadOnlySpan<int> positions, AttentionShape shape)
    {
        GpuActivations qa = GpuActivations.Of(q), ka = GpuActivations.Of(k);
        int rows = q.Rows;
        var push = new RopePush
        {
            Q = qa.Address, K = ka.Address, Angles = AnglesFor(positions[..rows], shape),
            Rows = (uint)rows, Heads = (uint)shape.NumHeads, KvHeads = (uint)shape.NumKvHeads, HeadDim = (uint)shape.HeadDim,
        };
        RotateFusable(push, qa, ka);
    }

    public void Attention(Activation q, Activation k, Activation v, KvCache cache, int layer,
        ReadOnlySpan<int> slots, ReadOnlySpan<int> positions, AttentionShape shape, Activation output)
    {
        GpuKvCache kv = GpuKvCache.Of(cache);
        GpuActivations qa = GpuActivations.Of(q), ka = GpuActivations.Of(k), va = GpuActivations.Of(v), oa = GpuActivations.Of(output);
        int rows = q.Rows;
        if (rows == 0)
        {
            return;
        }

        if (shape.HeadDim > 256 || shape.HeadDim % 4 != 0)
        {
            throw new NotSupportedException($"head_dim {shape.HeadDim}: the GPU attention shader handles heads up to 256 wide, in multiples of 4");
        }

        // The query heads one workgroup takes: all that share a kv head, or the most that divide them up to the shader's 8.
        int block = AttentionHeadBlock(shape.GroupSize);

        // A quantized cache rotates heads as llama.cpp's does (KvCacheRotation): keys, queries, values, outputs; 0 is none.
        bool rotates = KvCacheRotation.Applies(kv.ElementType, shape.HeadDim);
        int keyBlock = rotates ? KvCacheRotation.KeyBlock(shape.HeadDim) : 0, valueBlock = rotates ? KvCacheRotation.ValueBlock : 0;
        int maxLength = 0;
        foreach (int p in positions[..rows])
        {
            maxLength = Math.Max(maxLength, p + 1);
        }

        // Decode over a long context: few (row, head) pairs for the device, so positions split across workgroups too.
        // The partial-result buffer is sized before this call writes any input: growing it submits the work so far.
        int splits = rows <= MaxMatVecRows && maxLength > 2 * AttentionSplitLength ? (maxLength + AttentionSplitLength - 1) / AttentionSplitLength : 1;
        GpuBuffer target = splits == 1 ? oa.Buffer : PartialBuffer((long)splits * rows * shape.NumHeads * (shape.HeadDim + 2));

        // Slots then positions, as kv_store.comp and attention.comp read them.
        long offset = _inputs.Reserve(2L * rows * sizeof(int), out byte* host);
        var slotsPositions = new Span<int>(host, 2 * rows);
        slots[..rows].CopyTo(slotsPositions);
        positions[..rows].CopyTo(slotsPositions[rows..]);
        ulong slotsPositionsAddress = _inputs.Buffer.Address + (ulong)offset;

        // Append this step's keys and values first, so each token also sees the earlier tokens of its own step. Right after
        // the RoPE of these q and k, the rotation stores them too (one launch instead of two).
        // The fused store writes f32 elements one at a time; a cache of halves packs two a word in kv_store.
        GpuBuffer keys = kv.Keys(layer), values = kv.Values(layer);
        if (kv.ElementType == DType.F32 && _last.Is(Fusable.Rope, _stream, rows) && _last.Rope.Q == qa.Address && _last.Rope.K == ka.Address)
        {
            RopePush rope = _last.Rope;
            rope.V = va.Address;
            rope.Keys = keys.Address;
            rope.Values = values.Address;
            rope.SlotsPositions = slotsPositionsAddress;
            rope.Capacity = (uint)kv.Capacity;
            _stream.RewindToMark();
            _last.Forget();
            DispatchRope(rope, [qa.Buffer, ka.Buffer, va.Buffer], [qa.Buffer, ka.Buffer, keys, values]);
        }
        else if (KvCache.IsQuantized(kv.ElementType))
        {
            // One workgroup per row, kv head, and keys or values: it rotates the head and quantizes its blocks.
            var store = new KvStoreQuantizedPush
            {
                K = ka.Address, V = va.Address, Keys = keys.Address, Values = values.Address, SlotsPositions = slotsPositionsAddress,
                Rows = (uint)rows, KvDim = (uint)kv.KvDim, Capacity = (uint)kv.Capacity, HeadDim = (uint)shape.HeadDim,
                KeyBlock = (uint)keyBlock, ValueBlock = (uint)valueBlock, RowBytes = (uint)kv.PositionBytes,
            };
            _stream.Dispatch(_shaders.Get("kv_store" + kv.ShaderSuffix), store, 2L * rows * shape.NumKvHeads, [ka.Buffer, va.Buffer], [keys, values]);
        }
        else
        {
            var store = new KvStorePush
            {
                K = ka.Address, V = va.Address, Keys = keys.Address, Values = values.Address, SlotsPositions = slotsPositionsAddress,
                Rows = (uint)rows, KvDim = (uint)kv.KvDim, Capacity = (uint)kv.Capacity,
            };
            long invocations = (long)rows * kv.KvDim / (kv.ElementType == DType.F32 ? 1 : 2);
            _stream.Dispatch(_shaders.Get("kv_store" + kv.ShaderSuffix), store, Groups(invocations, 256), [ka.Buffer, va.Buffer], [keys, values]);
        }

        var attention = new AttentionPush
        {
            Q = qa.Address, Keys = keys.Address, Values = values.Address, SlotsPositions = slotsPositionsAddress, Out = target.Address,
            Rows = (uint)rows, Heads = (uint)shape.NumHeads, GroupSize = (uint)shape.GroupSize, HeadDim = (uint)shape.HeadDim,
            Capacity = (uint)kv.Capacity, Splits = (uint)splits, SplitLength = splits == 1 ? (uint)kv.Capacity : AttentionSplitLength,
            Scale = 1f / MathF.Sqrt(shape.HeadDim), Block = (uint)block,
            RowBytes = (uint)kv.PositionBytes, KeyBlock = (uint)keyBlock, ValueBlock = (uint)valueBlock,
        };
        _stream.Dispatch(_shaders.Get("attention" + kv.ShaderSuffix, AttentionGroup, constants: 1), attention, (long)rows * (shape.NumHeads / block) * splits,
            [qa.Buffer, keys, values], [target]);
        if (splits > 1)
        {
            var combine = new AttentionCombinePush
            {
                Partial = target.Address, Out = oa.Address, Rows = (uint)rows, Heads = (uint)shape.NumHeads, HeadDim = (uint)shape.HeadDim, Splits = (uint)splits,
            };
            _stream.Dispatch(_shaders.Get("attention_combine"), combine, Groups((long)rows * shape.NumHeads * shape.HeadDim, 256), [target], [oa.Buffer]);
        }
    }

    public void SwiGlu(Activation x, DeviceWeight gate, DeviceWeight up, DeviceWeight down,
        Activation gateScratch, Activation upScratch, Activation y)
    {
        if (!TryGatedMatVec(x, gate, up, gateScratch))
        {
            Linear(x, gate, null, gateScratch);
            Linear(x, up, null, upScratch);
            SiluMultiply(gateScratch, upScratch);
        }

        Linear(gateScratch, down, null, y);
    }

    public void SiluMultiply(Activation gate, Activation up) => ElementwiseInPlace("swiglu", gate, up, "gate", "up");

    /// <summary>
    /// Decode: gate and up projections and silu(gate) * up in one matvec dispatch (each workgroup a row of both),
    /// when the two weights share type and shape; false leaves the three steps to the caller.
    /// </summary>
    private bool TryGatedMatVec(Activation x, DeviceWeight gate, DeviceWeight up, Activation gateScratch)
    {
        GpuWeight gw = GpuWeight.Of(gate), uw = GpuWeight.Of(up);
        if (!_fuse || x.Rows == 0 || x.Rows > MaxMatVecRows || !SameLayout(gw, uw) || gw.Rows != uw.Rows)
        {
            return false;
        }

        CheckCols(x, gw.Cols, gate.Name);
        CheckCols(gateScratch, gw.Rows, gate.Name);
        GpuActivations xa = GpuActivations.Of(x), ga = GpuActivations.Of(gateScratch);
        var push = new LinearPush
        {
            X = xa.Address, W0 = gw.Address, W1 = uw.Address, Y0 = ga.Address,
            Rows0 = (uint)gw.Rows, Rows1 = (uint)uw.Rows, Cols = (uint)gw.Cols, Flags = MatVecFlags(gw, gated: true),
        };
        MatVec(push, xa, x.Rows, gw, Groups(gw.Rows, MatVecRowsPerGroup / 2), [gw.Buffer, uw.Buffer], [ga.Buffer], single: false);
        return true;
    }

    public void Add(Activation x, Activation y)
    {
        GpuActivations xa = GpuActivations.Of(x), ya = GpuActivations.Of(y);
        if (_last.Is(Fusable.MatVec, _stream, x.Rows) && _last.Linear.Y0 == ya.Address && _last.Linear.Rows0 == x.Cols && y.Rows == x.Rows
            && !_last.Touches(xa.Buffer))
        {
            // Right after the product that wrote y (one weight, a few rows): that dispatch adds its results onto x as well.
            LinearPush fused = _last.Linear;
            fused.Residual = xa.Address;
            _stream.RewindToMark();
            _last.Reads[_last.ReadCount] = xa.Buffer;
            _last.Writes[_last.WriteCount] = xa.Buffer;
            _stream.Dispatch(_last.Pipeline, fused, _last.Groups, _last.Reads.AsSpan(0, _last.ReadCount + 1), _last.Writes.AsSpan(0, _last.WriteCount + 1));
            _last.Forget();
            return;
        }

        ElementwiseInPlace("add", x, y, "x", "y");
    }

    public void Multiply(Activation x, Activation factors) => ElementwiseInPlace("multiply", x, factors, "x", "factors");

    /// <summary>x = f(x, y) for each element, by a shader over two same-shaped f32 arrays that writes its first (push: x, y, count).</summary>
    private void ElementwiseInPlace(string shader, Activation x, Activation y, string xName, string yName)
    {
        if (x.Rows != y.Rows || x.Cols != y.Cols)
        {
            throw new ArgumentException($"{xName} is [{x.Rows}, {x.Cols}] and {yName} [{y.Rows}, {y.Cols}]; they must be the same shape");
        }

        GpuActivations xa = GpuActivations.Of(x), ya = GpuActivations.Of(y);
        long count = (long)x.Rows * x.Cols;
        var push = new AddPush { X = xa.Address, Y = ya.Address, Count = (uint)count };
        _stream.Dispatch(_shaders.Get(shader), push, Groups(count, 256), [xa.Buffer, ya.Buffer], [xa.Buffer]);
    }

    public void GatherRows(Activation source, ReadOnlySpan<int> rows, Activation destination)
    {
        GpuActivations s = GpuActivations.Of(source), d = GpuActivations.Of(destination);
        var push = new GatherRowsPush { Source = s.Address, Rows = _inputs.Write(rows), Destination = d.Address, Count = (uint)rows.Length, Cols = (uint)source.Cols };
        _stream.Dispatch(_shaders.Get("gather_rows"), push, Groups((long)rows.Length * source.Cols, 256), [s.Buffer], [d.Buffer]);
    }

    public void Write(ReadOnlySpan<float> source, Activation destination)
    {
        GpuActivations d = GpuActivations.Of(destination);
        long bytes = (long)source.Length * sizeof(float);
        long offset = _inputs.Reserve(bytes, out byte* host);
        source.CopyTo(new Span<float>(host, source.Length));
        _stream.Copy(_inputs.Buffer, offset, d.Buffer, 0, bytes);
    }

    public void WriteRows(ReadOnlySpan<float> source, Activation destination, int firstRow)
    {
        GpuActivations d = GpuActivations.Of(destination);
        if (source.Length % destination.Cols != 0 || firstRow < 0 || firstRow + (source.Length / destination.Cols) > destination.Rows)
        {
            throw new ArgumentException($"{source.Length} values are not whole rows of {destination.Cols} within rows {firstRow}..{destination.Rows - 1}");
        }

        long bytes = (long)source.Length * sizeof(float);
        long offset = _inputs.Reserve(bytes, out byte* host);
        source.CopyTo(new Span<float>(host, source.Length));
        _stream.Copy(_inputs.Buffer, offset, d.Buffer, (long)firstRow * destination.Cols * sizeof(float), bytes);
    }

    public void RopeTable(Activation q, Activation k, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin, AttentionShape shape)
    {
        GpuActivations qa = GpuActivations.Of(q), ka = GpuActivations.Of(k);
        int rows = q.Rows, half = shape.HeadDim / 2;
        if (cos.Length < rows * half || sin.Length < rows * half)
        {
            throw new ArgumentException($"the rotary tables hold {cos.Length / half} rows for {rows} rows of queries");
        }

        // The rope shader's table: [rows, d/2] cos, then [rows, d/2] sin. Forget the cached positions' table.
        long offset = _inputs.Reserve(2L * rows * half * sizeof(float), out byte* host);
        var table = new Span<float>(host, 2 * rows * half);
        cos[..(rows * half)].CopyTo(table);
        sin[..(rows * half)].CopyTo(table[(rows * half)..]);
        _angleCount = -1;
        var push = new RopePush
        {
            Q = qa.Address, K = ka.Address, Angles = _inputs.Buffer.Address + (ulong)offset,
            Rows = (uint)rows, Heads = (uint)shape.NumHeads, KvHeads = (uint)shape.NumKvHeads, HeadDim = (uint)shape.HeadDim,
        };
        RotateFusable(push, qa, ka);
    }

    public void LayerNorm(Activation x, DeviceWeight weight, DeviceWeight bias, float eps, Activation y)
    {
        GpuWeight w = VectorOf(weight), b = VectorOf(bias);
        CheckCols(x, w.Cols, weight.Name);
        CheckCols(x, b.Cols, bias.Name);
        GpuActivations xa = GpuActivations.Of(x), ya = GpuActivations.Of(y);
        var push = new LayerNormPush { X = xa.Address, Weight = w.Address, Bias = b.Address, Y = ya.Address, Rows = (uint)x.Rows, Cols = (uint)x.Cols, Eps = eps };
        _stream.Dispatch(_shaders.Get("layer_norm"), push, x.Rows, [xa.Buffer, w.Buffer, b.Buffer], [ya.Buffer]);
    }

    public void Activate(Activation x, ActivationFunction function)
    {
        GpuActivations xa = GpuActivations.Of(x);
        long count = (long)x.Rows * x.Cols;
        var push = new GeluPush { X = xa.Address, Count = checked((uint)count), Kind = function == ActivationFunction.QuickGelu ? 0u : 1u };
        _stream.Dispatch(_shaders.Get("gelu"), push, Groups(count, 256), [xa.Buffer], [xa.Buffer]);
    }

    public void SegmentAttention(Activation q, Activation k, Activation v, ReadOnlySpan<int> segmentStarts, AttentionShape shape, Activation output)
    {
        if (shape.NumKvHeads < 1 || shape.NumHeads % shape.NumKvHeads != 0 || shape.HeadDim > 256)
        {
            throw new ArgumentException($"segment attention takes query heads in equal groups per key/value head and heads up to 256 wide ({shape.NumHeads}/{shape.NumKvHeads} of {shape.HeadDim})");
        }

        int rows = q.Rows;
        if (segmentStarts.Length < 2 || segmentStarts[0] != 0 || segmentStarts[^1] != rows)
        {
            throw new ArgumentException($"segment starts must run from 0 to the {rows} rows");
        }

        // Each row's segment as (first, end), so the shader needs no search.
        var bounds = new uint[2 * rows];
        for (int s = 0; s + 1 < segmentStarts.Length; s++)
        {
            for (int r = segmentStarts[s]; r < segmentStarts[s + 1]; r++)
            {
                bounds[2 * r] = (uint)segmentStarts[s];
                bounds[(2 * r) + 1] = (uint)segmentStarts[s + 1];
            }
        }

        GpuActivations qa = GpuActivations.Of(q), ka = GpuActivations.Of(k), va = GpuActivations.Of(v), oa = GpuActivations.Of(output);
        var push = new SegmentAttentionPush
        {
            Q = qa.Address, K = ka.Address, V = va.Address, Bounds = _inputs.Write<uint>(bounds), Out = oa.Address,
            Rows = (uint)rows, Heads = (uint)shape.NumHeads, HeadDim = (uint)shape.HeadDim, Scale = 1f / MathF.Sqrt(shape.HeadDim),
            KvHeads = (uint)shape.NumKvHeads,
        };
        _stream.Dispatch(_shaders.Get("segment_attention"), push, (long)rows * shape.NumHeads, [qa.Buffer, ka.Buffer, va.Buffer], [oa.Buffer]);
    }

    /// <summary>
    /// On <see cref="VulkanBackendOptions.HostThreads"/> threads of its own (a <see cref="WorkerPool"/>, made at the first call
    /// that has two items or more), each item a chunk: the host's cores sit idle while a step's token choices are made one
    /// after another on the backend's thread, and a batch of 64 Qwen2 sequences at Qwen2.5's settings is about 6.4 ms of them
    /// on one Zen 3 core (bench/results/amd-epyc-zen3-2core-avx2/token-choice-2026-12-07.md). Not the .NET thread pool: for
    /// 2-8 items its wake-ups cost more than the items (choosing-together-2026-12-07.md).
    /// </summary>
    public void ForEachOnHost(int count, Action<int> body)
    {
        ArgumentNullException.ThrowIfNull(body);
        if (count <= 1 || _hostThreads == 1)
        {
            for (int i = 0; i < count; i++)
            {
                body(i);
            }

            return;
        }

        (_hostPool ??= new WorkerPool(_hostThreads)).ForEach(count, body);
    }

    /// <summary>Threads for <see cref="ForEachOnHost"/>, and their pool, made when first wanted.</summary>
    private readonly int _hostThreads;
    private WorkerPool? _hostPool;

    public void Download(Activation source, Span<float> destination)
    {
        GpuActivations s = GpuActivations.Of(source);
        long bytes = (long)source.Rows * source.Cols * sizeof(float);
        if (_readback is null || _readback.Size < bytes)
        {
            _readback?.Dispose();
            _readback = null;
            _readback = GpuBuffer.HostVisible(_device, Math.Max(bytes, 1 << 20), "logits read-back");
        }

        _stream.Copy(s.Buffer, 0, _readback, 0, bytes);
        Submit();
        new ReadOnlySpan<float>(_readback.Mapped, (int)(bytes / sizeof(float))).CopyTo(destination);
    }

    /// <summary>Submits the work collected so far and waits for it (Download does this; tests and bench may too).</summary>
    public void Synchronize() => Submit();

    private void Submit()
    {
        _stream.Flush();
        _inputs.Reset();
        _angleCount = -1;
    }

    /// <summary>Buffers are freed only with no collected work naming them, and no kept recording that does.</summary>
    private void BeforeBufferFreed()
    {
        if (_stream.HasPending)
        {
            Submit();
        }

        _stream.DropRecordings();
    }

    /// <summary>
    /// cos and sin of each row's position for RoPE, [rows, d/2] cos then [rows, d/2] sin, computed in double on
    /// the host (<see cref="RopeAngles"/>); written once per step, as every layer rotates by the same positions.
    /// </summary>
    private ulong AnglesFor(ReadOnlySpan<int> positions, AttentionShape shape)
    {
        if (_angleCount == positions.Length && _angleShape == shape && positions.SequenceEqual(_anglePositions.AsSpan(0, _angleCount)))
        {
            return _angleAddress;
        }

        if (_angleShape != shape || _inverseFrequencies.Length == 0)
        {
            _inverseFrequencies = shape.InverseFrequencies();
            _angleShape = shape;
        }

        int half = shape.HeadDim / 2, rows = positions.Length;
        long offset = _inputs.Reserve(2L * rows * half * sizeof(float), out byte* host);
        var table = new Span<float>(host, 2 * rows * half);
        for (int r = 0; r < rows; r++)
        {
            RopeAngles.Compute(positions[r], _inverseFrequencies, table.Slice(r * half, half), table.Slice((rows + r) * half, half), shape.RopeMagnitude);
        }

        if (_anglePositions.Length < rows)
        {
            _anglePositions = new int[rows];
        }

        positions.CopyTo(_anglePositions);
        _angleCount = rows;
        _angleAddress = _inputs.Buffer.Address + (ulong)offset;
        return _angleAddress;
    }

    /// <summary>The largest divisor of <paramref name="groupSize"/> up to attention.comp's MAX_BLOCK (8).</summary>
    private static int AttentionHeadBlock(int groupSize)
    {
        for (int block = Math.Min(groupSize, 8); block > 1; block--)
        {
            if (groupSize % block == 0)
            {
                return block;
            }
        }

        return 1;
    }

    private GpuBuffer PartialBuffer(long floats)
    {
        long bytes = floats * sizeof(float);
        if (_attentionPartial is null || _attentionPartial.Size < bytes)
        {
            _attentionPartial?.Dispose();
            _attentionPartial = null;
            _attentionPartial = GpuBuffer.DeviceLocal(_device, bytes * 2, "attention partial results");
        }

        return _attentionPartial;
    }

    /// <summary>Copies bytes into a device buffer through the staging buffer, a chunk per submit.</summary>
    private void UploadBytes(byte* source, long length, GpuBuffer destination)
    {
        for (long done = 0; done < length;)
        {
            long chunk = Math.Min(length - done, _staging.Size);
            new ReadOnlySpan<byte>(source + done, (int)chunk).CopyTo(new Span<byte>(_staging.Mapped, (int)chunk));
            _stream.Copy(_staging, 0, destination, done, chunk);
            Submit();
            done += chunk;
        }
    }

    /// <summary>The shader compiled for a weight type (literals, so a step allocates no names).</summary>
    private static string Shader(Kernel kernel, DType type) => (kernel, type) switch
    {
        (Kernel.Embed, DType.BF16) => "embed_bf16",
        (Kernel.Embed, DType.F16) => "embed_f16",
        (Kernel.Embed, DType.F32) => "embed_f32",
        (Kernel.MatVec, DType.BF16) => "matvec_bf16",
        (Kernel.MatVec, DType.F16) => "matvec_f16",
        (Kernel.MatVec, DType.F32) => "matvec_f32",
        (Kernel.Gemm, DType.BF16) => "gemm_bf16",
        (Kernel.Gemm, DType.F16) => "gemm_f16",
        (Kernel.Gemm, DType.F32) => "gemm_f32",
        (Kernel.Embed, DType.Q8_0) => "embed_q8_0",
        (Kernel.MatVec, DType.Q8_0) => "matvec_q8_0",
        (Kernel.Gemm, DType.Q8_0) => "gemm_q8_0",
        (Kernel.Embed, DType.Q4_0) => "embed_q4_0",
        (Kernel.MatVec, DType.Q4_0) => "matvec_q4_0",
        (Kernel.Gemm, DType.Q4_0) => "gemm_q4_0",
        (Kernel.Embed, DType.Q4_1) => "embed_q4_1",
        (Kernel.MatVec, DType.Q4_1) => "matvec_q4_1",
        (Kernel.Gemm, DType.Q4_1) => "gemm_q4_1",
        (Kernel.Embed, DType.Q5_1) => "embed_q5_1",
        (Kernel.MatVec, DType.Q5_1) => "matvec_q5_1",
        (Kernel.Gemm, DType.Q5_1) => "gemm_q5_1",
        (Kernel.Embed, DType.Q2_K) => "embed_q2_k",
        (Kernel.MatVec, DType.Q2_K) => "matvec_q2_k",
        (Kernel.Gemm, DType.Q2_K) => "gemm_q2_k",
        (Kernel.Embed, DType.Q3_K) => "embed_q3_k",
        (Kernel.MatVec, DType.Q3_K) => "matvec_q3_k",
        (Kernel.Gemm, DType.Q3_K) => "gemm_q3_k",
        (Kernel.Embed, DType.IQ4_XS) => "embed_iq4_xs",
        (Kernel.MatVec, DType.IQ4_XS) => "matvec_iq4_xs",
        (Kernel.Gemm, DType.IQ4_XS) => "gemm_iq4_xs",
        (Kernel.Embed, DType.Q4_K) => "embed_q4_k",
        (Kernel.MatVec, DType.Q4_K) => "matvec_q4_k",
        (Kernel.Gemm, DType.Q4_K) => "gemm_q4_k",
        (Kernel.Embed, DType.Q5_K) => "embed_q5_k",
        (Kernel.MatVec, DType.Q5_K) => "matvec_q5_k",
        (Kernel.Gemm, DType.Q5_K) => "gemm_q5_k",
        (Kernel.Embed, DType.Q6_K) => "embed_q6_k",
        (Kernel.MatVec, DType.Q6_K) => "matvec_q6_k",
        (Kernel.Gemm, DType.Q6_K) => "gemm_q6_k",
        _ => throw new NotSupportedException($"the GPU backend has no kernels for {DTypes.Name(type)} weights"),
    };

    private enum Kernel
    {
        Embed,
        MatVec,
        Gemm,
    }

    /// <summary>
    /// Records a matvec.comp dispatch of <paramref name="push"/> over the activations <paramref name="x"/> (of
    /// <paramref name="rows"/> rows). When the last thing recorded is the RMSNorm that wrote x, from a buffer that is neither x
    /// nor an output, the norm is taken back and done inside this dispatch. A product of one weight (<paramref name="single"/>) is remembered,
    /// so that an <see cref="Add"/> of its output can join it too.
    /// </summary>
    private void MatVec(LinearPush push, GpuActivations x, int rows, GpuWeight first, long groups, ReadOnlySpan<GpuBuffer> weights,
        ReadOnlySpan<GpuBuffer> outputs, bool single)
    {
        int reads = 0, writes = 0;
        GpuBuffer[] readList = _matVecReads, writeList = _matVecWrites;
        // Every workgroup reads the norm's input, so none of the outputs may be in its buffer.
        if (_last.Is(Fusable.Norm, _stream, rows) && _last.Norm.Y == x.Address && _last.NormInput != x.Buffer && !outputs.Contains(_last.NormInput!))
        {
            push.X = _last.Norm.X;
            push.Norm = _last.Norm.Weight;
            push.NormOut = x.Address;
            push.Eps = _last.Norm.Eps;
            readList[reads++] = _last.NormInput!;
            readList[reads++] = _last.NormWeight!;
            writeList[writes++] = x.Buffer;
            _stream.RewindToMark();
        }
        else
        {
            readList[reads++] = x.Buffer;
        }

        _last.Forget();
        weights.CopyTo(readList.AsSpan(reads));
        reads += weights.Length;
        outputs.CopyTo(writeList.AsSpan(writes));
        writes += outputs.Length;
        ulong pipeline = MatVecPipeline(first, rows, push.Norm != 0, !single);
        if (single)
        {
            MarkIfFusing();
        }

        _stream.Dispatch(pipeline, push, groups, readList.AsSpan(0, reads), writeList.AsSpan(0, writes));
        if (single)
        {
            Remember(Fusable.MatVec, rows);
            _last.Linear = push;
            _last.Pipeline = pipeline;
            _last.Groups = groups;
            readList.AsSpan(0, reads).CopyTo(_last.Reads);
            writeList.AsSpan(0, writes).CopyTo(_last.Writes);
            _last.ReadCount = reads;
            _last.WriteCount = writes;
        }
    }

    /// <summary>Marks the stream before a dispatch the next operation may take back into its own (when this backend fuses).</summary>
    private void MarkIfFusing()
    {
        if (_fuse)
        {
            _stream.Mark();
        }
    }

    /// <summary>Rope and RopeTable's dispatch, remembered so that the Attention after it can fold its cache store in.</summary>
    private void RotateFusable(in RopePush push, GpuActivations q, GpuActivations k)
    {
        MarkIfFusing();
        DispatchRope(push, [q.Buffer, k.Buffer], [q.Buffer, k.Buffer]);
        Remember(Fusable.Rope, (int)push.Rows);
        _last.Rope = push;
    }

    /// <summary>
    /// rope.comp over its push's rows: an invocation per (row, head, pair), and with the cache store (Keys set) a further
    /// one per row and value of the row's kv heads, as the shader counts them.
    /// </summary>
    private void DispatchRope(in RopePush push, ReadOnlySpan<GpuBuffer> reads, ReadOnlySpan<GpuBuffer> writes)
    {
        long perRow = ((long)(push.Heads + push.KvHeads) * (push.HeadDim / 2)) + (push.Keys != 0 ? push.KvHeads * push.HeadDim : 0);
        _stream.Dispatch(_shaders.Get("rope"), push, Groups(push.Rows * perRow, 256), reads, writes);
    }

    /// <summary>Notes the operation just recorded as one the next may fuse with (when this backend fuses).</summary>
    private void Remember(Fusable kind, int rows)
    {
        if (_fuse)
        {
            _last.Remember(kind, _stream, rows);
        }
        else
        {
            _last.Forget();
        }
    }

    private static uint MatVecFlags(GpuWeight w, bool gated) => (w.WideRows ? 1u : 0u) | (gated ? 2u : 0u);

    /// <summary>matvec.comp for a weight type and activation row count, with an RMSNorm fused in or not and one weight or several
    /// (a pipeline each, so the plain product carries none of the fused ones' work).</summary>
    private ulong MatVecPipeline(GpuWeight w, int rows, bool norm, bool several) =>
        _shaders.Get(Shader(Kernel.MatVec, w.StoredType), MatVecGroup, MatVecRowsPerGroup, (uint)rows, (norm ? 1u : 0u) | (several ? 2u : 0u), constants: 4);

    /// <summary>Weights one matvec dispatch can read side by side: the same stored type, width and row alignment.</summary>
    private static bool SameLayout(GpuWeight a, GpuWeight b) => a.StoredType == b.StoredType && a.Cols == b.Cols && a.WideRows == b.WideRows;

    private static long Groups(long items, long perGroup) => (items + perGroup - 1) / perGroup;

    private static GpuWeight VectorOf(DeviceWeight weight)
    {
        GpuWeight w = GpuWeight.Of(weight);
        return w.Rows == 1 ? w : throw new ArgumentException($"weight '{weight.Name}' is a matrix where a vector was expected");
    }

    private static void CheckCols(Activation a, int expected, string what)
    {
        if (a.Cols != expected)
        {
            throw new ArgumentException($"{what}: activations have {a.Cols} columns, expected {expected}");
        }
    }

    /// <summary>Whether <see cref="Dispose"/> ran: a second call does nothing (a model that owns an offload backend may dispose it after its caller's failure did).</summary>
    private bool _disposed;

    public void Dispose()
    {
        if (_device is null || _disposed)
        {
            return;
        }

        _disposed = true;
        _hostPool?.Dispose();

        _device.BeforeBufferFreed = null;
        _readback?.Dispose();
        _attentionPartial?.Dispose();
        _split?.Dispose();
        _staging?.Dispose();
        _inputs?.Dispose();
        _stream?.Dispose();
        _shaders?.Dispose();
        _device.Dispose();
    }

    /// <summary>Operations whose dispatch a following operation may take into its own (fewer launches a decode step).</summary>
    private enum Fusable
    {
        None,
        Norm,     // RmsNorm, into the matvec that reads its output
        MatVec,   // a one-weight matvec, with the Add onto its output
        Rope,     // Rope, with the cache store of the Attention after it
    }

    /// <summary>
    /// The last recorded operation when it may be fused with the next: what it was and what it recorded, valid while the
    /// stream has recorded nothing after it in the same step (<see cref="CommandStream.CanRewind"/>).
    /// </summary>
    private sealed class LastOperation
    {
        public Fusable Kind;
        public long RecordedAfter;
        public int Rows;
        public RmsNormPush Norm;
        public GpuBuffer? NormInput;
        public GpuBuffer? NormWeight;
        public RopePush Rope;
        public LinearPush Linear;
        public ulong Pipeline;
        public long Groups;
        public readonly GpuBuffer[] Reads = new GpuBuffer[13];
        public readonly GpuBuffer[] Writes = new GpuBuffer[7];
        public int ReadCount;
        public int WriteCount;

        public void Remember(Fusable kind, CommandStream stream, int rows)
        {
            Kind = kind;
            RecordedAfter = stream.Recorded;
            Rows = rows;
        }

        public bool Is(Fusable kind, CommandStream stream, int rows) => Kind == kind && Rows == rows && stream.CanRewind(RecordedAfter);

        /// <summary>Whether the remembered dispatch reads or writes <paramref name="buffer"/>.</summary>
        public bool Touches(GpuBuffer buffer) =>
            Array.IndexOf(Reads, buffer, 0, ReadCount) >= 0 || Array.IndexOf(Writes, buffer, 0, WriteCount) >= 0;

        public void Forget() => Kind = Fusable.None;
    }
}
