using QwenSharp.Errors;
using QwenSharp.Formats;
using QwenSharp.Formats.Gguf;

namespace QwenSharp.Lora;

/// <summary>
/// One low-rank update of a projection: W' = W + Scale · B · A, A of [rank, in] and B of [out, rank] as stored
/// (mapped from the adapter's file, valid while the adapter is open).
/// </summary>
/// <param name="Scale">The adapter's own scaling (PEFT's lora_alpha / r, llama.cpp's adapter.lora.alpha / rank).</param>
/// <param name="InterleavedRope">B's rows are in llama.cpp's order for interleaved RoPE (a llama-architecture GGUF adapter's
/// q and k), which QwenSharp puts back to Hugging Face's.</param>
internal sealed record LoraPair(int Layer, LoraTarget Target, TensorView A, TensorView B, double Scale, bool InterleavedRope)
{
    public int Rank => (int)A.Shape[0];

    /// <summary>B × <paramref name="scale"/> as f32, [out, rank], its rows in Hugging Face's order.</summary>
    public float[] ScaledB(double scale, Qwen2.Qwen2Config config)
    {
        float[] stored = TensorValues.ToSingle(B);
        var scaled = new float[stored.Length];
        int rows = (int)B.Shape[0];
        for (int o = 0; o < rows; o++)
        {
            int from = InterleavedRope ? InterleavedRow(o, config.HeadDim) : o;
            for (int j = 0; j < Rank; j++)
            {
                scaled[(o * Rank) + j] = (float)(scale * stored[(from * Rank) + j]);
            }
        }

        return scaled;
    }

    /// <summary>The row of a llama-architecture GGUF tensor holding Hugging Face row <paramref name="row"/> (llama.cpp's converter permutes q and k).</summary>
    private static int InterleavedRow(int row, int headDim)
    {
        int half = headDim / 2, head = row / headDim, within = row % headDim;
        int t = within / half, j = within % half;
        return (head * headDim) + (2 * j) + t;
    }
}

/// <summary>
/// A LoRA adapter (Hu et al., 2021) as fine-tuning tools save it: a PEFT folder (adapter_config.json and
/// adapter_model.safetensors, as transformers, TRL, Unsloth and Axolotl write them) or a llama.cpp GGUF adapter
/// (convert_lora_to_gguf.py's). Apply it to a model with <see cref="Qwen2.Qwen2Model.ApplyAdapters"/>; the adapter's
/// file may be closed after that.
/// </summary>
public sealed class LoraAdapter : IDisposable
{
    private readonly IDisposable _file;

    private LoraAdapter(string path, string format, IDisposable file, IReadOnlyList<LoraPair> pairs, string? architecture, string? baseModel,
        IReadOnlyList<string> notes)
    {
        Path = path;
        Format = format;
        _file = file;
        Pairs = pairs;
        Architecture = architecture;
        BaseModel = baseModel;
        Notes = notes;
    }

    /// <summary>The folder or file it was read from.</summary>
    public string Path { get; }

    /// <summary>"PEFT" or "GGUF".</summary>
    public string Format { get; }

    /// <summary>How strongly it is applied: the adapter's own scaling is multiplied by this (llama.cpp's <c>--lora-scaled</c>).</summary>
    public float Scale { get; private set; } = 1f;

    /// <summary>
    /// The scale it runs at when turned on without one of its own (a request that names it alone): <see cref="Scale"/>, or 1
    /// for an adapter loaded at 0. Its B is uploaded at this scale.
    /// </summary>
    public float ScaleWhenOn => Scale != 0 ? Scale : 1f;

    /// <summary>The model it was trained on, as the adapter names it (PEFT's base_model_name_or_path), or null.</summary>
    public string? BaseModel { get; }

    /// <summary>A GGUF adapter's general.architecture; null for PEFT (checked against the model by shape).</summary>
    internal string? Architecture { get; }

    /// <summary>Tensors read but not applied, as llama.cpp skips them (a GGUF adapter's norm vectors).</summary>
    public IReadOnlyList<string> Notes { get; }

    internal IReadOnlyList<LoraPair> Pairs { get; }

    /// <summary>The layers and projections it changes.</summary>
    public IEnumerable<(int Layer, LoraTarget Target)> Targets => Pairs.Select(p => (p.Layer, p.Target));

    /// <summary>The largest rank of its updates.</summary>
    public int Rank => Pairs.Max(p => p.Rank);

    /// <summary>"PEFT, rank 8, 196 projections of 28 layers, scale 1" (for info).</summary>
    public string Describe() => string.Create(System.Globalization.CultureInfo.InvariantCulture,
        $"{Format}, rank {Rank}, {Pairs.Count} projections of {Pairs.Select(p => p.Layer).Distinct().Count()} layers, scale {Scale:G}{(BaseModel is string b ? $", trained on {b}" : "")}");

    /// <summary>
    /// Reads each adapter of <paramref name="files"/> at its scale, gives them all to <paramref name="use"/>, and closes them
    /// (those read so far, when one fails).
    /// </summary>
    public static void UseAll(IReadOnlyList<(string Path, float Scale)> files, Action<IReadOnlyList<LoraAdapter>> use)
    {
        ArgumentNullException.ThrowIfNull(files);
        ArgumentNullException.ThrowIfNull(use);
        var adapters = new List<LoraAdapter>();
        try
        {
            foreach ((string path, float scale) in files)
            {
                adapters.Add(Load(path, scale));
            }

            use(adapters);
        }
        finally
        {
            adapters.ForEach(adapter => adapter.Dispose());
        }
    }

    /// <summary>Reads a PEFT adapter folder or a GGUF adapter file; errors name the file, tensor or field.</summary>
    /// <param name="scale">Multiplies the adapter's own scaling (1: as trained; 0: off).</param>
    public static LoraAdapter Load(string path, float scale = 1f)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!float.IsFinite(scale))
        {
            throw new ArgumentOutOfRangeException(nameof(scale), scale, $"LoRA adapter {path}: the scale must be a finite number");
        }

        if (File.Exists(path))
        {
            return GgufFile.HasMagic(path)
                ? WithScale(LoadGguf(path), scale)
                : throw new InvalidDataException($"{path} is not a GGUF file: a LoRA adapter is a PEFT folder (adapter_config.json and adapter_model.safetensors) or a GGUF adapter");
        }

        if (!Directory.Exists(path))
        {
            throw new DirectoryNotFoundException($"LoRA adapter '{path}' not found (a PEFT folder or a GGUF adapter file)");
        }

        return WithScale(LoadPeft(path), scale);
    }

    private static LoraAdapter WithScale(LoraAdapter adapter, float scale)
    {
        adapter.Scale = scale;
        return adapter;
    }

    private static LoraAdapter LoadPeft(string folder)
    {
        PeftAdapterConfig config = PeftAdapterConfig.Load(folder);
        string weights = System.IO.Path.Combine(folder, PeftAdapterConfig.WeightsFileName);
        if (!File.Exists(weights))
        {
            string pickle = System.IO.Path.Combine(folder, "adapter_model.bin");
            throw File.Exists(pickle)
                ? new NotSupportedException($"{pickle}: the adapter is saved as a PyTorch pickle, which QwenSharp does not read; save it with safe_serialization=True (PEFT's default) to get {PeftAdapterConfig.WeightsFileName}")
                : new FileNotFoundException($"{weights}: file not found (a PEFT adapter folder holds it beside adapter_config.json)", weights);
        }

        SafeTensorsFile file = SafeTensorsFile.Open(weights);
        try
        {
            var halves = new Dictionary<(int, LoraTarget), (TensorView? A, TensorView? B)>();
            foreach (string name in file.Tensors.Keys.Order(StringComparer.Ordinal))
            {
                (int layer, LoraTarget target, bool isA) = PeftAdapterConfig.ParseTensorName(name, file.FileName);
                if (file.TryGetView(name, out TensorView? view))
                {
                    halves[(layer, target)] = Half(halves.GetValueOrDefault((layer, target)), isA, view, name, file.FileName);
                }
            }

            var pairs = new List<LoraPair>();
            foreach (((int layer, LoraTarget target), (TensorView? a, TensorView? b)) in halves.OrderBy(h => h.Key))
            {
                string module = LoraTargets.ModulePath(layer, target);
                (TensorView av, TensorView bv) = Whole(a, b, module, "lora_A", "lora_B", file.FileName);
                CheckPair(av, bv, module, file.FileName);
                pairs.Add(new LoraPair(layer, target, av, bv, config.ScaleOf(module, (int)av.Shape[0], file.FileName), InterleavedRope: false));
            }

            return NonEmpty(new LoraAdapter(folder, "PEFT", file, pairs, null, config.BaseModel, []), file.FileName);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    private static LoraAdapter LoadGguf(string path)
    {
        GgufFile file = GgufFile.Open(path);
        string name = file.FileName;
        try
        {
            string type = GgufMetadata.Text(file.Metadata, "general.type", name) ?? "model";
            if (type != "adapter")
            {
                QwenThrow.InvalidData($"{name}: general.type is '{type}', not 'adapter': this is a model, not a LoRA adapter (give it to --model)");
            }

            string adapterType = GgufMetadata.Text(file.Metadata, "adapter.type", name) ?? "(none)";
            if (adapterType != "lora")
            {
                QwenThrow.NotSupported($"{name}: adapter.type is '{adapterType}'; QwenSharp applies 'lora' adapters");
            }

            string architecture = GgufMetadata.Text(file.Metadata, "general.architecture", name)
                ?? throw new InvalidDataException($"{name}: no general.architecture (the model architecture the adapter is for)");

            // llama.cpp: scale = alpha / rank, or 1 when the file gives no alpha (or 0).
            double alpha = GgufMetadata.Number(file.Metadata, "adapter.lora.alpha", name) ?? 0;
            if (!double.IsFinite(alpha) || alpha < 0)
            {
                QwenThrow.InvalidData($"{name}: adapter.lora.alpha is {alpha}; it must be a finite number, 0 or more");
            }

            if (file.Metadata.ContainsKey("adapter.alora.invocation_tokens"))
            {
                QwenThrow.NotSupported($"{name}: an activated LoRA (adapter.alora.invocation_tokens) applies only after its invocation tokens, which QwenSharp does not do");
            }

            var halves = new Dictionary<(int, LoraTarget), (TensorView? A, TensorView? B)>();
            var notes = new List<string>();
            foreach (GgufTensorInfo info in file.Tensors.Values.OrderBy(t => t.Name, StringComparer.Ordinal))
            {
                if (info.Name.EndsWith("_norm.weight", StringComparison.Ordinal))
                {
                    notes.Add($"{name}: tensor '{info.Name}' (a norm vector) is not applied, as llama.cpp does not apply it");
                    continue;
                }

                (int layer, LoraTarget target, bool isA) = ParseGgufName(info.Name, name);
                halves[(layer, target)] = Half(halves.GetValueOrDefault((layer, target)), isA, GgufView(file, info), info.Name, name);
            }

            bool interleaved = architecture == "llama";
            var pairs = new List<LoraPair>();
            foreach (((int layer, LoraTarget target), (TensorView? a, TensorView? b)) in halves.OrderBy(h => h.Key))
            {
                string tensor = $"blk.{layer}.{LoraTargets.GgufName(target)}.weight";
                (TensorView av, TensorView bv) = Whole(a, b, tensor, "lora_a", "lora_b", name);
                CheckPair(av, bv, tensor, name);
                double scale = alpha == 0 ? 1 : alpha / av.Shape[0];
                pairs.Add(new LoraPair(layer, target, av, bv, scale, interleaved && LoraTargets.IsRotated(target)));
            }

            return NonEmpty(new LoraAdapter(path, "GGUF", file, pairs, architecture, GgufMetadata.Text(file.Metadata, "general.base_model.0.name", name), notes), name);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>"blk.N.attn_q.weight.lora_a" as (N, Q, true); any other tensor is refused by name.</summary>
    private static (int Layer, LoraTarget Target, bool IsA) ParseGgufName(string tensor, string file)
    {
        bool isA = tensor.EndsWith(".weight.lora_a", StringComparison.Ordinal);
        if (!isA && !tensor.EndsWith(".weight.lora_b", StringComparison.Ordinal))
        {
            QwenThrow.InvalidData($"{file}: tensor '{tensor}' is not a LoRA tensor (a GGUF adapter's tensors end in .weight.lora_a and .weight.lora_b)");
        }

        string[] parts = tensor[..^".weight.lora_a".Length].Split('.');
        if (parts.Length != 3 || parts[0] != "blk" || !int.TryParse(parts[1], System.Globalization.NumberStyles.None, null, out int layer))
        {
            throw new NotSupportedException(
                $"{file}: tensor '{tensor}' adapts something other than a decoder layer's projections (the embeddings or the output head), which QwenSharp does not apply");
        }

        return LoraTargets.TryParseGguf(parts[2], out LoraTarget target)
            ? (layer, target, isA)
            : throw new NotSupportedException($"{file}: tensor '{tensor}' adapts '{parts[2]}'; QwenSharp applies adapters of attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up and ffn_down");
    }

    /// <summary>A GGUF tensor as a view with Hugging Face's dimension order ([rows, cols]); types without a view are converted.</summary>
    private static TensorView GgufView(GgufFile file, GgufTensorInfo info)
    {
        if (info.Shape.Length != 2)
        {
            QwenThrow.InvalidData($"{file.FileName}: tensor '{info.Name}' has shape {QwenThrow.Shape(info.Shape)}; a LoRA tensor is a matrix");
        }

        if (GgmlTypes.TryGetDType(info.Type, out DType dtype) && dtype is DType.F32 or DType.F16 or DType.BF16 or DType.Q8_0)
        {
            return new TensorView(info.Name, file.FileName, dtype, info.Shape, file.DataOf(info));
        }

        throw new NotSupportedException($"{file.FileName}: tensor '{info.Name}' is {GgmlTypes.Name(info.Type)}; a LoRA adapter's tensors are read as F32, F16, BF16 or Q8_0");
    }

    private static (TensorView? A, TensorView? B) Half((TensorView? A, TensorView? B) pair, bool isA, TensorView view, string tensor, string file)
    {
        if ((isA ? pair.A : pair.B) is not null)
        {
            QwenThrow.InvalidData($"{file}: tensor '{tensor}' appears twice");
        }

        return isA ? pair with { A = view } : pair with { B = view };
    }

    private static (TensorView A, TensorView B) Whole(TensorView? a, TensorView? b, string module, string aName, string bName, string file) =>
        (a ?? throw new InvalidDataException($"{file}: {module} has a {bName} but no {aName}"),
         b ?? throw new InvalidDataException($"{file}: {module} has a {aName} but no {bName}"));

    /// <summary>A of [rank, in] and B of [out, rank] share the rank; their sizes against the model are checked when applied.</summary>
    private static void CheckPair(TensorView a, TensorView b, string module, string file)
    {
        if (a.Shape.Length != 2 || b.Shape.Length != 2 || a.Shape[0] != b.Shape[1] || a.Shape[0] < 1)
        {
            QwenThrow.InvalidData(
                $"{file}: {module}'s A is {a.ShapeText} and B is {b.ShapeText}; A must be [rank, in] and B [out, rank] with the same rank (an adapter from llama.cpp's old finetune example, with A transposed, is not read)");
        }
    }

    private static LoraAdapter NonEmpty(LoraAdapter adapter, string file) =>
        adapter.Pairs.Count > 0 ? adapter : throw new InvalidDataException($"{file}: the adapter holds no LoRA tensors");

    public void Dispose() => _file.Dispose();
}
