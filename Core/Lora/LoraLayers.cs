using System.Runtime.InteropServices;
using QwenSharp.Backend;
using QwenSharp.Errors;
using QwenSharp.Formats;
using QwenSharp.Qwen2;

namespace QwenSharp.Lora;

/// <summary>
/// The adapters applied to a model, uploaded once: for each adapted projection, every adapter's A stacked into one
/// [rank, in] matrix and every B, times its scale, side by side in one [out, rank] matrix, so that a step adds
/// <c>x · Aᵀ · Bᵀ</c> (= Σ scaleᵢ · Bᵢ · Aᵢ · x) with two small products whatever the number of adapters, as llama.cpp
/// adds each adapter's at run time (the stored weights stay as they are: mapped, quantized, shared).
/// Each adapter keeps the same columns of the rank in every projection (its largest rank; shorter updates and projections
/// it does not adapt are zeros, which add nothing), so one [rows, rank] table of factors can weight each row's adapters:
/// a step whose rows run with scales other than those put into B (sequences of a server with their own adapters)
/// multiplies the products with A by it (Punica's and vLLM's mixed batches, in two dense products).
/// </summary>
internal sealed unsafe class LoraLayers : IDisposable
{
    private readonly DeviceWeight?[,] _a;
    private readonly DeviceWeight?[,] _b;
    private readonly List<nint> _memory = [];
    private readonly int[] _offsets;
    private readonly int[] _ranks;

    /// <summary>The scale each adapter's B was multiplied by: its own, or 1 for an adapter loaded at 0 (off unless a step turns it on).</summary>
    private readonly float[] _baked;

    /// <summary>Each adapter's own scale, which rows without scales of their own run with.</summary>
    private readonly float[] _defaults;

    private LoraLayers(int layers, IReadOnlyList<LoraAdapter> adapters)
    {
        _a = new DeviceWeight?[layers, LoraTargets.All.Length];
        _b = new DeviceWeight?[layers, LoraTargets.All.Length];
        _ranks = [.. adapters.Select(adapter => adapter.Rank)];
        _offsets = new int[adapters.Count];
        for (int i = 1; i < adapters.Count; i++)
        {
            _offsets[i] = _offsets[i - 1] + _ranks[i - 1];
        }

        Rank = _ranks.Sum();
        _defaults = [.. adapters.Select(adapter => adapter.Scale)];
        _baked = [.. adapters.Select(adapter => adapter.ScaleWhenOn)];
    }

    /// <summary>The rank every update is padded to: the adapters' ranks added up.</summary>
    public int Rank { get; }

    /// <summary>Checks each adapter against the model and uploads the combined updates, each layer's to <paramref name="backendOf"/> it; null when there are none.</summary>
    public static LoraLayers? Create(IReadOnlyList<LoraAdapter> adapters, Qwen2Config config, Func<int, IBackend> backendOf)
    {
        foreach (LoraAdapter adapter in adapters)
        {
            Check(adapter, config);
        }

        if (adapters.Count == 0)
        {
            return null;
        }

        var layers = new LoraLayers(config.NumHiddenLayers, adapters);
        var byProjection = adapters
            .SelectMany((adapter, index) => adapter.Pairs.Select(pair => (Pair: pair, Adapter: index)))
            .GroupBy(entry => (entry.Pair.Layer, entry.Pair.Target))
            .OrderBy(group => group.Key)
            .ToList();
        try
        {
            foreach (var group in byProjection)
            {
                (int layer, LoraTarget target) = group.Key;
                (int outDim, int inDim) = LoraTargets.Shape(target, config);
                string module = LoraTargets.ModulePath(layer, target);
                float* a = layers.Zeroed((long)layers.Rank * inDim), b = layers.Zeroed((long)outDim * layers.Rank);
                foreach ((LoraPair pair, int index) in group)
                {
                    int offset = layers._offsets[index];
                    float[] av = TensorValues.ToSingle(pair.A), bv = pair.ScaledB((double)layers._baked[index] * pair.Scale, config);
                    av.CopyTo(new Span<float>(a + ((long)offset * inDim), av.Length));
                    for (int o = 0; o < outDim; o++)
                    {
                        bv.AsSpan(o * pair.Rank, pair.Rank).CopyTo(new Span<float>(b + ((long)o * layers.Rank) + offset, pair.Rank));
                    }
                }

                IBackend backend = backendOf(layer);
                layers._a[layer, (int)target] = backend.Upload(new TensorView($"{module}.lora_A", "the LoRA adapters", DType.F32, [layers.Rank, inDim], (nint)a));
                layers._b[layer, (int)target] = backend.Upload(new TensorView($"{module}.lora_B", "the LoRA adapters", DType.F32, [outDim, layers.Rank], (nint)b));
            }

            return layers;
        }
        catch
        {
            layers.Dispose();
            throw;
        }
    }

    /// <summary>
    /// How the step's rows weight the adapters: not at all (every scale 0: the step runs as the model without adapters),
    /// as put into B (every row at the adapters' own scales, the usual case), or by a [rows, rank] table of factors written
    /// to the device once for all the step's projections.
    /// </summary>
    /// <param name="offload">The backend of the model's offloaded layers, which gets a copy of the factors table; null for none.</param>
    public LoraStep Prepare(IBackend backend, IBackend? offload, TokenBatch batch, ForwardState state)
    {
        int n = batch.Count;
        bool on = false, baked = true;
        for (int row = 0; row < n; row++)
        {
            float[] scales = Scales(batch, row);
            for (int i = 0; i < scales.Length; i++)
            {
                on |= scales[i] != 0;
                baked &= scales[i] == _baked[i];
            }

            if (!batch.HasAdapterScales)
            {
                break;  // every row at the defaults
            }
        }

        if (!on || baked)
        {
            return new LoraStep(on, null, null, null);
        }

        Span<float> factors = state.LoraFactors(n, Rank);
        for (int row = 0; row < n; row++)
        {
            float[] scales = Scales(batch, row);
            Span<float> rowFactors = factors.Slice(row * Rank, Rank);
            for (int i = 0; i < scales.Length; i++)
            {
                rowFactors.Slice(_offsets[i], _ranks[i]).Fill(scales[i] / _baked[i]);
            }
        }

        Activation table = state.LoraScratch(backend, "factors", Rank).Rows(n);
        backend.Write(factors, table);
        Activation? offloaded = null;
        if (offload is not null)
        {
            offloaded = state.LoraScratch(offload, "factors", Rank).Rows(n);
            offload.Write(factors, offloaded.Value);
        }

        return new LoraStep(true, table, offload, offloaded);
    }

    private float[] Scales(TokenBatch batch, int row)
    {
        if (batch.AdapterScalesOf(row) is not float[] scales)
        {
            return _defaults;
        }

        if (scales.Length != _defaults.Length)
        {
            throw new ArgumentException($"row {row} of the step gives {scales.Length} LoRA adapter scale(s); the model has {_defaults.Length} adapter(s)");
        }

        return scales;
    }

    /// <summary>Whether <paramref name="layer"/>'s MLP has an update in this step (so its gate, up and down run as separate products).</summary>
    public bool AdaptsMlp(int layer, LoraStep step) => step.On
        && (_a[layer, (int)LoraTarget.Gate] is not null || _a[layer, (int)LoraTarget.Up] is not null || _a[layer, (int)LoraTarget.Down] is not null);

    /// <summary>output += input · Aᵀ · Bᵀ for the projection, if adapted and on in this step; <paramref name="input"/> is the projection's input.</summary>
    public void Apply(IBackend backend, ForwardState state, LoraStep step, int layer, LoraTarget target, Activation input, Activation output)
    {
        if (!step.On || _a[layer, (int)target] is not DeviceWeight a)
        {
            return;
        }

        Activation ranked = state.LoraScratch(backend, "rank", Rank).Rows(input.Rows);
        Activation delta = state.LoraScratch(backend, "out", output.Cols).Rows(input.Rows);
        backend.Linear(input, a, null, ranked);
        if (step.FactorsOn(backend) is Activation factors)
        {
            backend.Multiply(ranked, factors);
        }

        backend.Linear(ranked, _b[layer, (int)target]!, null, delta);
        backend.Add(output, delta);
    }

    /// <summary>Refuses an adapter whose architecture (GGUF), layers or shapes are not the model's, naming the projection.</summary>
    internal static void Check(LoraAdapter adapter, Qwen2Config config)
    {
        if (adapter.Architecture is string arch && arch != GgufArchitecture(config.ModelType))
        {
            QwenThrow.InvalidData($"LoRA adapter {adapter.Path} is for {arch} models; this model is {config.ModelType}");
        }

        foreach (LoraPair pair in adapter.Pairs)
        {
            string module = LoraTargets.ModulePath(pair.Layer, pair.Target);
            if (pair.Layer >= config.NumHiddenLayers)
            {
                QwenThrow.InvalidData($"LoRA adapter {adapter.Path}: {module} is past the model's {config.NumHiddenLayers} layers (an adapter for another model?)");
            }

            (int outDim, int inDim) = LoraTargets.Shape(pair.Target, config);
            if (pair.A.Shape[1] != inDim || pair.B.Shape[0] != outDim)
            {
                QwenThrow.InvalidData(
                    $"LoRA adapter {adapter.Path}: {module}'s A is {pair.A.ShapeText} and B {pair.B.ShapeText}, but the model's projection is [{outDim}, {inDim}] (A must be [rank, {inDim}] and B [{outDim}, rank]; an adapter for another model?)");
            }
        }
    }

    private static string GgufArchitecture(string modelType) => modelType == "qwen2_vl" ? "qwen2vl" : modelType;

    private float* Zeroed(long count)
    {
        var memory = (float*)NativeMemory.AlignedAlloc((nuint)(count * sizeof(float)), 64);
        _memory.Add((nint)memory);
        new Span<float>(memory, checked((int)count)).Clear();
        return memory;
    }

    public void Dispose()
    {
        foreach (DeviceWeight? weight in _a)
        {
            weight?.Dispose();
        }

        foreach (DeviceWeight? weight in _b)
        {
            weight?.Dispose();
        }

        foreach (nint memory in _memory)
        {
            NativeMemory.AlignedFree((void*)memory);
        }

        _memory.Clear();
    }
}

/// <summary>How one step applies the adapters (<see cref="LoraLayers.Prepare"/>): whether at all, and with which per-row factors.</summary>
internal readonly record struct LoraStep(bool On, Activation? Factors, IBackend? Offload, Activation? OffloadFactors)
{
    /// <summary>The factors table on <paramref name="backend"/>: the offloaded layers' copy on theirs.</summary>
    public Activation? FactorsOn(IBackend backend) => ReferenceEquals(backend, Offload) ? OffloadFactors : Factors;
}
