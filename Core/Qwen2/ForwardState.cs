using QwenSharp.Backend;

namespace QwenSharp.Qwen2;

/// <summary>
/// Every activation buffer of a forward pass, allocated once for up to <see cref="MaxRows"/> tokens per step
/// and <see cref="MaxLogitRows"/> rows of logits (llama2.c's RunState): a step allocates nothing.
/// </summary>
public sealed class ForwardState : IDisposable
{
    private readonly DeviceBuffer[] _owned;
    private Dictionary<(string Role, int Cols), DeviceBuffer>? _loraScratch;
    private float[]? _loraFactors;

    internal ForwardState(IBackend backend, Qwen2Config config, int maxRows, int maxLogitRows, int maxHiddenRows)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxRows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxLogitRows);
        MaxRows = maxRows;
        MaxLogitRows = maxLogitRows;
        MaxHiddenRows = Math.Max(maxLogitRows, maxHiddenRows);
        VocabSize = config.VocabSize;
        X = backend.Allocate(maxRows, config.HiddenSize);
        Xb = backend.Allocate(maxRows, config.HiddenSize);
        Q = backend.Allocate(maxRows, config.QDim);
        K = backend.Allocate(maxRows, config.KvDim);
        V = backend.Allocate(maxRows, config.KvDim);
        AttentionOut = backend.Allocate(maxRows, config.QDim);
        Gate = backend.Allocate(maxRows, config.IntermediateSize);
        Up = backend.Allocate(maxRows, config.IntermediateSize);
        LastHidden = backend.Allocate(MaxHiddenRows, config.HiddenSize);
        Logits = backend.Allocate(maxLogitRows, config.VocabSize);
        // Logits in host memory already (the CPU backend) are read where the LM head wrote them: copying a 16-sequence
        // step's 9.7 MB of them took 1.5-2.6 ms of a 55 ms step.
        HostLogits = Logits.HostArray is { } host && host.Length >= maxLogitRows * config.VocabSize
            ? host
            : GC.AllocateUninitializedArray<float>(checked(maxLogitRows * config.VocabSize));
        RopeCos = config.MRopeSection is null ? [] : new float[maxRows * (config.HeadDim / 2)];
        RopeSin = config.MRopeSection is null ? [] : new float[maxRows * (config.HeadDim / 2)];
        _owned = [X, Xb, Q, K, V, AttentionOut, Gate, Up, LastHidden, Logits];
    }

    public int MaxRows { get; }

    public int MaxLogitRows { get; }

    /// <summary>Rows of last hidden states a <see cref="Qwen2Model.ForwardHidden"/> step may output (at least <see cref="MaxLogitRows"/>).</summary>
    public int MaxHiddenRows { get; }

    public int VocabSize { get; }

    internal DeviceBuffer X { get; }             // [rows, hidden]: the residual stream

    internal DeviceBuffer Xb { get; }            // [rows, hidden]: normed input of a block, then its output

    internal DeviceBuffer Q { get; }             // [rows, heads * head_dim]

    internal DeviceBuffer K { get; }             // [rows, kv_heads * head_dim]

    internal DeviceBuffer V { get; }             // [rows, kv_heads * head_dim]

    internal DeviceBuffer AttentionOut { get; }  // [rows, heads * head_dim]

    internal DeviceBuffer Gate { get; }          // [rows, intermediate]

    internal DeviceBuffer Up { get; }            // [rows, intermediate]

    internal DeviceBuffer LastHidden { get; }    // [hidden rows, hidden]

    internal DeviceBuffer Logits { get; }        // [logit rows, vocab]

    /// <summary>M-RoPE's cos and sin of the step's rows, [rows, head_dim/2] (Qwen2-VL models only).</summary>
    internal float[] RopeCos { get; }

    internal float[] RopeSin { get; }

    /// <summary>The last step's logits in host memory, [logit rows, vocab]: a copy, or <see cref="Logits"/>' own array.</summary>
    internal float[] HostLogits { get; }

    /// <summary>Whether <see cref="HostLogits"/> is <see cref="Logits"/>' own array, so that nothing needs downloading.</summary>
    internal bool LogitsInHostMemory => ReferenceEquals(HostLogits, Logits.HostArray);

    /// <summary>The logits of the last step's i-th logit row (see <see cref="TokenBatch.LogitRows"/>).</summary>
    public ReadOnlySpan<float> LogitsOf(int i) => HostLogits.AsSpan(i * VocabSize, VocabSize);

    /// <summary>Host room for a step's LoRA factors (<see cref="Lora.LoraLayers.Prepare"/>), grown as needed, kept.</summary>
    internal Span<float> LoraFactors(int rows, int rank)
    {
        if (_loraFactors is null || _loraFactors.Length < rows * rank)
        {
            _loraFactors = new float[Math.Max(rows, MaxRows) * rank];
        }

        return _loraFactors.AsSpan(0, rows * rank);
    }

    /// <summary>
    /// LoRA's scratch of [rows, <paramref name="cols"/>] for one <paramref name="role"/> (the rank, or a projection's
    /// output), made on the first step that needs it: a model without adapters allocates none.
    /// </summary>
    internal DeviceBuffer LoraScratch(IBackend backend, string role, int cols)
    {
        _loraScratch ??= [];
        if (!_loraScratch.TryGetValue((role, cols), out DeviceBuffer? buffer))
        {
            buffer = backend.Allocate(MaxRows, cols);
            _loraScratch.Add((role, cols), buffer);
        }

        return buffer;
    }

    public void Dispose()
    {
        foreach (DeviceBuffer buffer in _owned)
        {
            buffer.Dispose();
        }

        foreach (DeviceBuffer buffer in _loraScratch?.Values ?? Enumerable.Empty<DeviceBuffer>())
        {
            buffer.Dispose();
        }

        _loraScratch = null;
    }
}
