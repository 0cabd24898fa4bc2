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
/// All share one rank (the largest; shorter ones padded with zeros, which add nothing), so one scratch serves all.
/// </summary>
internal sealed unsafe class LoraLayers : IDisposable
{
    private readonly DeviceWeight?[,] _a;
    private readonly DeviceWeight?[,] _b;
    private readonly List<nint> _memory = [];

    private LoraLayers(int layers)
    {
        _a = new DeviceWeight?[layers, LoraTargets.All.Length];
        _b = new DeviceWeight?[layers, LoraTargets.All.Length];
    }

    /// <summary>The rank every update is padded to.</summary>
    public int Rank { get; private set; }

    /// <summary>Checks each adapter against the model and uploads the combined updates; null when none changes anything (all scales 0).</summary>
    public static LoraLayers? Create(IReadOnlyList<LoraAdapter> adapters, Qwen2Config config, IBackend backend)
    {
        foreach (LoraAdapter adapter in adapters)
        {
            Check(adapter, config);
        }

        var byProjection = adapters
            .SelectMany(adapter => adapter.Pairs.Where(_ => adapter.Scale != 0).Select(pair => (Pair: pair, Scale: adapter.Scale * pair.Scale)))
            .GroupBy(entry => (entry.Pair.Layer, entry.Pair.Target))
            .OrderBy(group => group.Key)
            .ToList();
        if (byProjection.Count == 0)
        {
            return null;
        }

        var layers = new LoraLayers(config.NumHiddenLayers) { Rank = byProjection.Max(group => group.Sum(entry => entry.Pair.Rank)) };
        try
        {
            foreach (var group in byProjection)
            {
                (int layer, LoraTarget target) = group.Key;
                (int outDim, int inDim) = LoraTargets.Shape(target, config);
                string module = LoraTargets.ModulePath(layer, target);
                float* a = layers.Zeroed((long)layers.Rank * inDim), b = layers.Zeroed((long)outDim * layers.Rank);
                int offset = 0;
                foreach ((LoraPair pair, double scale) in group)
                {
                    float[] av = TensorValues.ToSingle(pair.A), bv = pair.ScaledB(scale, config);
                    av.CopyTo(new Span<float>(a + ((long)offset * inDim), av.Length));
                    for (int o = 0; o < outDim; o++)
                    {
                        bv.AsSpan(o * pair.Rank, pair.Rank).CopyTo(new Span<float>(b + ((long)o * layers.Rank) + offset, pair.Rank));
                    }

                    offset += pair.Rank;
                }

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

    /// <summary>Whether <paramref name="layer"/>'s MLP has an update (so its gate, up and down run as separate products).</summary>
    public bool AdaptsMlp(int layer) =>
        _a[layer, (int)LoraTarget.Gate] is not null || _a[layer, (int)LoraTarget.Up] is not null || _a[layer, (int)LoraTarget.Down] is not null;

    /// <summary>output += input · Aᵀ · Bᵀ for the projection, if adapted; <paramref name="input"/> is the projection's input.</summary>
    public void Apply(IBackend backend, ForwardState state, int layer, LoraTarget target, Activation input, Activation output)
    {
        if (_a[layer, (int)target] is not DeviceWeight a)
        {
            return;
        }

        Activation ranked = state.LoraScratch(backend, "rank", Rank).Rows(input.Rows);
        Activation delta = state.LoraScratch(backend, "out", output.Cols).Rows(input.Rows);
        backend.Linear(input, a, null, ranked);
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
