using QwenSharp.Backend;

namespace QwenSharp.Qwen2;

/// <summary>
/// Every activation buffer of a forward pass, allocated once for up to <see cref="MaxRows"/> tokens per step
/// and <see cref="MaxLogitRows"/> rows of logits (llama2.c's RunState): a step allocates nothing.
/// </summary>
public sealed class ForwardState : IDisposable
{
    private readonly IDisposable[] _owned;
    private Dictionary<(IBackend Backend, string Role, int Cols), DeviceBuffer>? _loraScratch;
    private float[]? _loraFactors;

    /// <param name="host">The model's own backend: the embedding, the layers not offloaded, and the head unless offloaded.</param>
    /// <param name="offload">The backend of the offloaded layers (<see cref="LayerOffload"/>), or null.</param>
    /// <param name="hostRunsLayers">Whether any layer runs on <paramref name="host"/>.</param>
    /// <param name="headOffloaded">Whether the final norm and LM head run on <paramref name="offload"/>.</param>
    internal ForwardState(IBackend host, IBackend? offload, bool hostRunsLayers, bool headOffloaded, Qwen2Config config, int maxRows, int maxLogitRows, int maxHiddenRows)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxRows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxLogitRows);
        MaxRows = maxRows;
        MaxLogitRows = maxLogitRows;
        MaxHiddenRows = Math.Max(maxLogitRows, maxHiddenRows);
        VocabSize = config.VocabSize;
        var owned = new List<IDisposable>();
        try
        {
            Host = new LayerBuffers(host, config, maxRows, hostRunsLayers);
            owned.Add(Host);
            if (offload is not null)
            {
                Offloaded = new LayerBuffers(offload, config, maxRows, runsLayers: true);
                owned.Add(Offloaded);
                Crossing = new float[checked(maxRows * config.HiddenSize)];
            }

            IBackend head = headOffloaded ? offload! : host;
            LastHidden = head.Allocate(MaxHiddenRows, config.HiddenSize);
            owned.Add(LastHidden);
            Logits = head.Allocate(maxLogitRows, config.VocabSize);
            owned.Add(Logits);
        }
        catch
        {
            owned.ForEach(o => o.Dispose());
            throw;
        }

        // Logits in host memory already (the CPU backend) are read where the LM head wrote them: copying a 16-sequence
        // step's 9.7 MB of them took 1.5-2.6 ms of a 55 ms step.
        HostLogits = Logits.HostArray is { } hostLogits && hostLogits.Length >= maxLogitRows * config.VocabSize
            ? hostLogits
            : GC.AllocateUninitializedArray<float>(checked(maxLogitRows * config.VocabSize));
        RopeCos = config.MRopeSection is null ? [] : new float[maxRows * (config.HeadDim / 2)];
        RopeSin = config.MRopeSection is null ? [] : new float[maxRows * (config.HeadDim / 2)];
        _owned = [.. owned];
    }

    public int MaxRows { get; }

    public int MaxLogitRows { get; }

    /// <summary>Rows of last hidden states a <see cref="Qwen2Model.ForwardHidden"/> step may output (at least <see cref="MaxLogitRows"/>).</summary>
    public int MaxHiddenRows { get; }

    public int VocabSize { get; }

    /// <summary>The model's own backend's activations: the embedded tokens, its layers' work.</summary>
    internal LayerBuffers Host { get; }

    /// <summary>The offloaded layers' activations on their backend, or null when nothing is offloaded.</summary>
    internal LayerBuffers? Offloaded { get; }

    /// <summary>Host room for the residual stream crossing from one backend to the other, [rows, hidden]; empty unless offloaded.</summary>
    internal float[] Crossing { get; } = [];

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
    /// LoRA's scratch of [rows, <paramref name="cols"/>] on <paramref name="backend"/> for one <paramref name="role"/> (the rank, or a projection's
    /// output), made on the first step that needs it: a model without adapters allocates none.
    /// </summary>
    internal DeviceBuffer LoraScratch(IBackend backend, string role, int cols)
    {
        _loraScratch ??= [];
        if (!_loraScratch.TryGetValue((backend, role, cols), out DeviceBuffer? buffer))
        {
            buffer = backend.Allocate(MaxRows, cols);
            _loraScratch.Add((backend, role, cols), buffer);
        }

        return buffer;
    }

    public void Dispose()
    {
        foreach (IDisposable buffers in _owned)
        {
            buffers.Dispose();
        }

        foreach (DeviceBuffer buffer in _loraScratch?.Values ?? Enumerable.Empty<DeviceBuffer>())
        {
            buffer.Dispose();
        }

        _loraScratch = null;
    }
}
