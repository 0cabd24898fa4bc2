using QwenSharp.Backend;
using QwenSharp.Errors;
using QwenSharp.Formats;

namespace QwenSharp.Qwen2;

/// <summary>
/// Receives named activations during a forward pass ("attn_norm" of layer 3, ...; -1 for no layer), each with the backend
/// that holds it (read it with <see cref="IBackend.Download"/>, or <see cref="DeviceBuffer.HostArray"/> where it is in host
/// memory). The inputs of the layers' products: "attn_norm" (q, k, v), "attn_out" (o), "ffn_norm" (gate, up), "ffn_act"
/// (down); of the LM head: "final_norm".
/// </summary>
public delegate void ActivationTap(string name, int layer, Activation value, IBackend backend);

/// <summary>
/// The Qwen2 decoder-only transformer (Llama is the same model without q/k/v biases), written once against
/// <see cref="IBackend"/>. Each step runs any batch of tokens through all layers, reading and extending the
/// KV cache, and computes logits for the rows asked for.
/// </summary>
public sealed class Qwen2Model : IDisposable
{
    private readonly Qwen2Weights<DeviceWeight> _w;
    private readonly DeviceWeight[] _uploaded;
    private readonly ITensorSource? _ownedSource;
    private readonly AttentionShape _shape;
    private readonly float _eps;
    private Lora.LoraLayers? _lora;

    /// <summary>The backend of the offloaded layers (<see cref="LayerOffload"/>), owned by the model; null when none are.</summary>
    private readonly IBackend? _offload;

    /// <summary>The first layer on <see cref="_offload"/>: the layer count when nothing is offloaded.</summary>
    private readonly int _firstOffloaded;

    /// <summary>Whether the final norm and LM head run on <see cref="_offload"/> (every layer offloaded, and one more).</summary>
    private readonly bool _headOffloaded;

    /// <summary>Binds and uploads the weights of <paramref name="source"/>; the model disposes the source when it owns it.</summary>
    /// <param name="imageProcessor">A Qwen2-VL model's preprocessor_config.json (transformers' defaults when null).</param>
    /// <param name="offload">The last layers on a second backend, which the model then owns (<see cref="LayerOffload"/>); null for none.</param>
    public Qwen2Model(Qwen2Config config, ITensorSource source, IBackend backend,
        GenerationConfig? generationConfig = null, bool ownsSource = false, Qwen2VL.ImageProcessorConfig? imageProcessor = null,
        LayerOffload? offload = null)
    {
        Config = config;
        Backend = backend;
        GenerationConfig = generationConfig ?? GenerationConfig.Empty;
        if (offload is not null && ReferenceEquals(offload.Device, backend))
        {
            throw new ArgumentException("the offloaded layers need a second backend, not the model's own", nameof(offload));
        }

        int layers = config.NumHiddenLayers;
        Qwen2Weights<TensorView> views;
        try
        {
            views = Qwen2WeightBinder.Bind(config, source);
            int offloaded = offload?.Fit is KvReserve reserve ? LayerFit.Layers(config, views, offload.Device, reserve) : Math.Min(offload?.Layers ?? 0, layers + 1);
            _offload = offloaded > 0 ? offload!.Device : null;
            _firstOffloaded = layers - Math.Min(offloaded, layers);
            _headOffloaded = offloaded > layers;
            if (offload is not null && _offload is null)
            {
                if (offload.Fit is not null)
                {
                    LoadNote = $"layers fitted to {offload.Device.Description}: not one fits beside a KV cache of {offload.Fit.Positions} positions, so the whole model runs on {backend.Description}";
                }

                offload.Device.Dispose();    // nothing to run there: the model owns it all the same
            }
            else if (offload?.Fit is KvReserve fitted)
            {
                LoadNote = $"layers fitted to {offload.Device.Description}: {(_headOffloaded ? "every layer and the LM head" : $"the last {layers - _firstOffloaded} of {layers} layers")}, beside a KV cache of {fitted.Positions} positions"
                    + (_headOffloaded ? "" : $"; the rest on {backend.Description}");
            }

            CheckWeightMemory(views, source.Description);
        }
        catch
        {
            offload?.Device.Dispose();
            throw;
        }

        // Each tensor to the backend of the part that reads it: an offloaded layer's to the device, the head's where it runs,
        // the embedding (even when tied to an offloaded head) to the model's own backend, which gathers from it.
        var onDevice = new HashSet<TensorView>(views.Layers.Skip(_firstOffloaded).SelectMany(layer => layer.Tensors), ReferenceEqualityComparer.Instance);
        if (_headOffloaded)
        {
            onDevice.Add(views.Norm);
            onDevice.Add(views.LmHead);
        }

        // What each backend holds, by view: one copy of a tensor per backend that reads it.
        var onHost = new Dictionary<TensorView, DeviceWeight>(ReferenceEqualityComparer.Instance);
        var onOffload = new Dictionary<TensorView, DeviceWeight>(ReferenceEqualityComparer.Instance);
        DeviceWeight UploadTo(TensorView view, IBackend to, bool onlyGathered)
        {
            Dictionary<TensorView, DeviceWeight> uploaded = ReferenceEquals(to, backend) ? onHost : onOffload;
            if (!uploaded.TryGetValue(view, out DeviceWeight? weight))
            {
                weight = onlyGathered ? to.UploadTable(view) : to.Upload(view);
                uploaded.Add(view, weight);

                // A matrix whose products all read the backend's copies (the CPU's panels and paired rows) keeps its mapped
                // bytes for the few reads left (a tied table's embedding rows): their pages go from memory as soon as it is
                // uploaded (read again from the page cache where read). A Q4_K_M 1.5B's Q4_K matrices were held three times
                // over (the file's pages, paired rows, panels): peak RSS in bench 3.04 GB, 2.43 with their pages dropped (a
                // Q4_0 0.5B's on AMD Zen 3, which reads its panels, 1.20 and 0.96).
                if (weight.ProductsReadCopies)
                {
                    _ = source.DropPages(view);
                }
            }

            return weight;
        }

        try
        {
            // An embedding not tied to the head is only gathered from, row by row: nothing to repack for products. So is
            // a classifier's, which stands in for the LM head it does not have (nothing multiplies by it).
            bool embedOnlyGathered = !ReferenceEquals(views.EmbedTokens, views.LmHead) || config.IsSequenceClassifier || _headOffloaded;
            DeviceWeight embed = UploadTo(views.EmbedTokens, backend, embedOnlyGathered);
            _w = views.Select(view => ReferenceEquals(view, views.EmbedTokens) && !onDevice.Contains(view)
                ? embed
                : UploadTo(view, onDevice.Contains(view) ? _offload! : backend, onlyGathered: false)) with { EmbedTokens = embed };
        }
        catch
        {
            foreach (DeviceWeight weight in onHost.Values.Concat(onOffload.Values))
            {
                weight.Dispose();
            }

            _offload?.Dispose();
            throw;
        }

        _uploaded = [.. onHost.Values, .. onOffload.Values];

        // Bytes the source made at load that no weight reads any more (a GPU's copies of --quantize's matrices, matrices the
        // CPU stored again) go back: a 7B model quantized to Q4_K at load for the GPU kept its whole Q4_K copy (about 4.4 GB)
        // in host memory for nothing. Their views stay for their types and shapes (info), with no bytes.
        var released = new HashSet<TensorView>(ReferenceEqualityComparer.Instance);
        foreach (TensorView view in onHost.Keys.Concat(onOffload.Keys.Where(view => !onHost.ContainsKey(view))))
        {
            bool read = (onHost.TryGetValue(view, out DeviceWeight? host) && host.ReadsSourceBytes)
                || (onOffload.TryGetValue(view, out DeviceWeight? device) && device.ReadsSourceBytes);
            if (!read && source.Release(view))
            {
                released.Add(view);
            }
        }

        // (A tied table the head multiplies on the device and the host gathers from is read there still: not released.)
        Weights = released.Count == 0 ? views : views.Select(view => released.Contains(view) ? view with { Data = 0 } : view);
        var hostNames = onHost.Keys.Select(view => view.Name).ToHashSet(StringComparer.Ordinal);
        _hostWeights = [.. Weights.DistinctTensors().Where(view => hostNames.Contains(view.Name))];
        _ownedSource = ownsSource ? source : null;
        _shape = new AttentionShape(config.NumAttentionHeads, config.NumKeyValueHeads, config.HeadDim, config.RopeTheta, config.RopeScaling);
        _eps = (float)config.RmsNormEps;
        if (config.Vision is not null)
        {
            try
            {
                Vision = new Qwen2VL.VisionTower(config.Vision, source, backend);
                ImageProcessor = imageProcessor ?? Qwen2VL.ImageProcessorConfig.Default(config.Vision);
            }
            catch
            {
                foreach (DeviceWeight weight in _uploaded)
                {
                    weight.Dispose();
                }

                _offload?.Dispose();
                throw;
            }
        }
    }

    /// <summary>
    /// Refuses weights the backends cannot hold before any is uploaded: each backend's share against its memory. Where a
    /// GPU cannot hold its share, the message says how many of the last layers it could (<see cref="LayerOffload"/>).
    /// </summary>
    private void CheckWeightMemory(Qwen2Weights<TensorView> views, string description)
    {
        int layers = Config.NumHiddenLayers;
        IBackend host = Backend, device = _offload ?? host;
        bool tied = ReferenceEquals(views.LmHead, views.EmbedTokens);
        long LayerBytes(IBackend on, int layer) => LayerFit.WeightBytes(views, on, layer);
        long HeadBytes(IBackend on) => LayerFit.HeadBytes(views, on);
        if (_offload is not null)
        {
            long onHost = Enumerable.Range(0, _firstOffloaded).Sum(l => LayerBytes(host, l)) + host.UploadBytes(views.EmbedTokens)
                + (_headOffloaded ? 0 : HeadBytes(host) - (tied ? host.UploadBytes(views.LmHead) : 0));
            host.CheckWeightMemory(onHost, $"the weights of the first {_firstOffloaded} of {description}'s {layers} layers and its embedding{(_headOffloaded ? "" : " and LM head")}");
        }

        long onDevice = _offload is null
            ? views.DistinctTensors().Sum(host.UploadBytes)
            : Enumerable.Range(_firstOffloaded, layers - _firstOffloaded).Sum(l => LayerBytes(device, l)) + (_headOffloaded ? HeadBytes(device) : 0);
        string what = _offload is null ? $"the weights of {description}" : $"the weights of the last {layers - _firstOffloaded} of {description}'s {layers} layers{(_headOffloaded ? " and its LM head" : "")}";
        if (device.AvailableMemory is long available && onDevice > available)
        {
            // The most of the last layers whose weights fit beside nothing else (the KV cache and activations need room too).
            int fit = LayerFit.LastLayersWithin(views, device, available, extraPerLayer: 0).Layers;

            what += fit == 0 ? " (not one layer fits)"
                : $" (the weights of the last {fit} layers fit: --gpu-layers {fit} or GpuLayers = {fit} runs those there and the rest on the CPU; fewer leave room for the KV cache)";
        }

        device.CheckWeightMemory(onDevice, what);
    }

    public Qwen2Config Config { get; }

    public GenerationConfig GenerationConfig { get; }

    /// <summary>The backend the model runs on: all of it, or, with layers offloaded, the embedding and the layers before them.</summary>
    public IBackend Backend { get; }

    /// <summary>The backend of the offloaded layers (<see cref="LayerOffload"/>), or null when none are.</summary>
    public IBackend? OffloadBackend => _offload;

    /// <summary>How many of the last layers run on <see cref="OffloadBackend"/> (one more than the layers when its LM head does too).</summary>
    public int OffloadedLayers => _offload is null ? 0 : Config.NumHiddenLayers - _firstOffloaded + (_headOffloaded ? 1 : 0);

    /// <summary>Where the model runs, for people: the backend's description, and the offloaded layers' with it.</summary>
    public string Placement => _offload is null
        ? Backend.Description
        : $"{_offload.Description} ({OffloadedLayers} of {Config.NumHiddenLayers + 1} layers, LM head counted) + {Backend.Description}";

    /// <summary>The backend that runs <paramref name="layer"/>.</summary>
    private IBackend BackendOf(int layer) => layer >= _firstOffloaded ? _offload! : Backend;

    /// <summary>The backend of the final norm and LM head.</summary>
    private IBackend HeadBackend => _headOffloaded ? _offload! : Backend;

    /// <summary>
    /// The stored tensors behind the model (for <c>info</c>: dtypes and sizes). A tensor the source made at load and the
    /// backend copied (see <see cref="DeviceWeight.ReadsSourceBytes"/>) has no bytes here (its data is 0).
    /// </summary>
    public Qwen2Weights<TensorView> Weights { get; }

    /// <summary>
    /// The tensors of <see cref="Weights"/> the model's own <see cref="Backend"/> reads (all of them unless layers are
    /// offloaded: then the embedding, the layers before and a head not offloaded), and a vision tower's, which runs there too.
    /// </summary>
    public IReadOnlyCollection<TensorView> HostWeights => Vision is null ? _hostWeights : [.. _hostWeights, .. Vision.Weights.Tensors];

    private readonly TensorView[] _hostWeights;

    /// <summary>
    /// Bytes of weights a one-token decode step reads on <see cref="Backend"/> (<see cref="Qwen2WeightBytes.PerDecodeStep(Qwen2Weights{DeviceWeight})"/>):
    /// decode GB/s is this times steps per second.
    /// </summary>
    public long DecodeStepBytes => Qwen2WeightBytes.PerDecodeStep(_w);

    /// <summary>
    /// Loads a Hugging Face model folder (config.json, generation_config.json if present, the safetensors) or a GGUF
    /// file (config, end ids and tensors all from the one file).
    /// </summary>
    /// <param name="directory">The folder or .gguf file.</param>
    /// <param name="backend">Where to run it.</param>
    /// <param name="quantize">A quantized type (Q8_0) to convert the matrices to at load, or null to keep them as stored.</param>
    /// <param name="offload">The last layers on a second backend (a GPU), which the model then owns, whether it loads or not; null for none.</param>
    public static Qwen2Model Load(string directory, IBackend backend, DType? quantize = null, LayerOffload? offload = null) =>
        Load(directory, backend, quantize is DType type ? QuantizationMix.Pure(type) : null, offload);

    /// <summary>As <see cref="Load(string, IBackend, DType?, LayerOffload?)"/>, each matrix quantized at load to the type <paramref name="quantize"/> picks for it (llama-quantize's Q4_K_M, say).</summary>
    public static Qwen2Model Load(string directory, IBackend backend, QuantizationMix? quantize, LayerOffload? offload = null)
    {
        try
        {
            return LoadFrom(directory, backend, quantize, offload);
        }
        catch
        {
            offload?.Device.Dispose();    // (backends' Dispose may run twice: the model's own failure disposed it already)
            throw;
        }
    }

    private static Qwen2Model LoadFrom(string directory, IBackend backend, QuantizationMix? quantize, LayerOffload? offload)
    {
        if (File.Exists(directory) && Formats.Gguf.GgufFile.HasMagic(directory))
        {
            Formats.Gguf.GgufCheckpoint gguf = Formats.Gguf.GgufCheckpoint.Open(directory);
            return Create(gguf.Config, gguf, backend, gguf.GenerationConfig, quantize, null, gguf.EmbeddingConfig, offload);
        }

        if (File.Exists(directory))
        {
            QwenThrow.InvalidData($"{directory} is a file but not a GGUF file: pass a model folder (config.json and the *.safetensors) or a .gguf file");
        }

        if (!Directory.Exists(directory))
        {
            QwenThrow.DirectoryNotFound(directory.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase)
                ? $"GGUF file '{directory}' not found" : $"model folder '{directory}' not found");
        }

        string configPath = Path.Combine(directory, Qwen2Config.FileName);
        if (!File.Exists(configPath))
        {
            QwenThrow.FileNotFound($"{configPath}: file not found (a Hugging Face model folder has config.json beside its safetensors)", configPath);
        }

        Qwen2Config config = Qwen2Config.Load(configPath);
        GenerationConfig generation = GenerationConfig.LoadOrEmpty(directory);
        Qwen2VL.ImageProcessorConfig? processor = config.Vision is null ? null : Qwen2VL.ImageProcessorConfig.LoadOrDefault(directory, config.Vision);

        // A classifier pools its last token as it was trained to, whatever sentence-transformers files lie beside it.
        EmbeddingConfig embedding = config.IsSequenceClassifier ? EmbeddingConfig.Default : EmbeddingConfig.LoadOrDefault(directory);
        embedding.CheckDense(config.HiddenSize);
        SafeTensorsCheckpoint checkpoint = SafeTensorsCheckpoint.Open(directory);
        ClassifierHead? classifier;
        try
        {
            classifier = config.IsSequenceClassifier ? ClassifierHead.Load(configPath, checkpoint, config.HiddenSize) : null;
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }

        Qwen2Model model = Create(config, checkpoint, backend, generation, quantize, processor, embedding, offload);
        model.Classifier = classifier;
        return model;
    }

    /// <summary>The model over a source it then owns (quantized at load when asked), the source freed if that fails.</summary>
    private static Qwen2Model Create(Qwen2Config config, ITensorSource source, IBackend backend, GenerationConfig generation, QuantizationMix? quantize,
        Qwen2VL.ImageProcessorConfig? processor, EmbeddingConfig embedding, LayerOffload? offload)
    {
        Qwen2Model? model = null;
        try
        {
            if (quantize is not null)
            {
                source = new QuantizingTensorSource(source, quantize, config.QuantizationShape);
            }

            model = new Qwen2Model(config, source, backend, generation, ownsSource: true, processor, offload)
            {
                // A model trained with bidirectional attention embeds with it (config.json's is_causal, GGUF's attention.causal).
                EmbeddingConfig = config.IsCausal ? embedding : embedding with { Bidirectional = true },
            };

            if (source is Formats.Gguf.GgufCheckpoint gguf)
            {
                model.FileTensorTypes = gguf.StoredTypes;
                model.FileParts = gguf.File.PartPaths;
                model.LoadNote = GgufLoadNote(gguf, model.MultipliesAs) is string note ? (model.LoadNote is null ? note : $"{model.LoadNote}; {note}") : model.LoadNote;
            }

            return model;
        }
        catch
        {
            // The model owns the source; before it exists, free the source here.
            if (model is not null)
            {
                model.Dispose();
            }
            else
            {
                source.Dispose();
            }

            throw;
        }
    }

    /// <summary>A Qwen2-VL model's vision tower; null for text-only models.</summary>
    public Qwen2VL.VisionTower? Vision { get; }

    /// <summary>A Qwen2-VL model's image processor settings (preprocessor_config.json); null for text-only models.</summary>
    public Qwen2VL.ImageProcessorConfig? ImageProcessor { get; }

    /// <summary>
    /// How the model's text embeddings are pooled and normalized, and whether they attend both ways (sentence-transformers'
    /// files and config.json's is_causal; GGUF's pooling_type and attention.causal). Settable (the CLI's --attention).
    /// </summary>
    public EmbeddingConfig EmbeddingConfig
    {
        get;
        set => field = value ?? throw new ArgumentNullException(nameof(value));
    } = EmbeddingConfig.Default;

    /// <summary>A sequence classifier's score head (<see cref="Qwen2Config.IsSequenceClassifier"/>), or null for a model that generates.</summary>
    public ClassifierHead? Classifier { get; private set; }

    /// <summary>Values in one of the model's text embeddings: hidden_size, or its last Dense module's out_features.</summary>
    public int EmbeddingDimensions => EmbeddingConfig.Dimensions(Config.HiddenSize);

    /// <summary>
    /// A GGUF file's tensors by the type stored in the file (ggml's names), where the weights may run as another
    /// (<see cref="LoadNote"/>: IQ3_S as Q6_K, ...); null for a folder.
    /// </summary>
    public IReadOnlyList<(string Type, int Count)>? FileTensorTypes { get; private set; }

    /// <summary>The files a GGUF model is read from (a split model's parts, in order; one file otherwise); null for a folder.</summary>
    public IReadOnlyList<string>? FileParts { get; private set; }

    /// <summary>What the caller should know about how the weights were loaded (layers fitted on a GPU, GGUF types converted at load), or null.</summary>
    public string? LoadNote { get; private set; }

    /// <summary>
    /// The type a matrix stored as <paramref name="stored"/> is multiplied as (<see cref="IBackend.MultipliesAs"/>): a wider
    /// one where the backend that holds the layers, or the device that holds some, widens it.
    /// </summary>
    private DType MultipliesAs(DType stored, long rows, long cols)
    {
        DType onHost = Backend.MultipliesAs(stored, rows, cols);
        return onHost != stored || _offload is null ? onHost : _offload.MultipliesAs(stored, rows, cols);
    }

    /// <summary>What a GGUF file's load changed: tensors dequantized and quantized again, and those stored again without loss (at load or by the backend); null for neither.</summary>
    private static string? GgufLoadNote(Formats.Gguf.GgufCheckpoint gguf, Func<DType, long, long, DType> multipliesAs)
    {
        static string Counts(IReadOnlyDictionary<string, int> counts) =>
            string.Join(", ", counts.OrderBy(c => c.Key, StringComparer.Ordinal).Select(c => $"{c.Value} {c.Key}"));
        var notes = new List<string>();
        if (gguf.Conversions.Count > 0)
        {
            notes.Add($"tensors of types without kernels yet were dequantized at load ({Counts(gguf.Conversions)}); they run at that type's speed and size");
        }

        if (gguf.Restored.Count > 0)
        {
            notes.Add($"matrices of types without kernels yet were stored again at load as a type that holds every value ({Counts(gguf.Restored)}), at that type's speed and size");
        }

        if (gguf.Widenings(multipliesAs) is { Count: > 0 } widenings)
        {
            notes.Add($"matrices of types without kernels here are multiplied as a wider type that holds every value ({Counts(widenings)}), at that type's speed and size");
        }

        return notes.Count == 0 ? null : $"{gguf.Description}: {string.Join("; ", notes)}";
    }

    /// <summary>The LoRA adapters applied by <see cref="ApplyAdapters"/> (empty when none).</summary>
    public IReadOnlyList<Lora.LoraAdapter> Adapters { get; private set; } = [];

    /// <summary>
    /// Adds the LoRA adapters' updates to the model's projections from the next step on, each scaled by its
    /// <see cref="Lora.LoraAdapter.Scale"/>, as llama.cpp's <c>--lora</c> does: at run time, two small products per adapted
    /// projection beside the stored weight (which stays as stored: mapped, quantized). Several adapters add up. Checked
    /// against the model (layers, shapes, a GGUF adapter's architecture); the adapters' files may be closed afterwards.
    /// Once per model, before its KV caches hold anything (what they hold was computed without the adapters).
    /// A sequence may run with scales of its own (<see cref="TokenBatch.Add(int, int, int, bool, float[])"/>; a server's
    /// requests), an adapter loaded at 0 included; sequences with different scales share a step.
    /// </summary>
    public void ApplyAdapters(IReadOnlyList<Lora.LoraAdapter> adapters)
    {
        ArgumentNullException.ThrowIfNull(adapters);
        if (Adapters.Count > 0)
        {
            throw new InvalidOperationException("the model's LoRA adapters are already applied; load the model again for others");
        }

        _lora = Lora.LoraLayers.Create(adapters, Config, BackendOf);
        Adapters = [.. adapters];
        if (adapters.SelectMany(adapter => adapter.Notes).ToList() is { Count: > 0 } notes)
        {
            LoadNote = string.Join("; ", (LoadNote is null ? notes : notes.Prepend(LoadNote)));
        }
    }

    /// <summary>
    /// <see cref="ApplyAdapters"/> with adapters read from their files (PEFT folders or GGUF adapters) at the scales given,
    /// closed once applied. An adapter that cannot be read or does not fit the model is an error naming it.
    /// </summary>
    public void ApplyAdapterFiles(IReadOnlyList<(string Path, float Scale)> files)
    {
        ArgumentNullException.ThrowIfNull(files);
        Lora.LoraAdapter.UseAll(files, ApplyAdapters);
    }

    /// <summary>
    /// Scales that run adapter <paramref name="index"/> of <see cref="Adapters"/> alone (a request that names it): it at
    /// <see cref="Lora.LoraAdapter.ScaleWhenOn"/>, the others at 0.
    /// </summary>
    public float[] AdapterScalesAlone(int index)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)index, (uint)Adapters.Count, nameof(index));
        var scales = new float[Adapters.Count];
        scales[index] = Adapters[index].ScaleWhenOn;
        return scales;
    }

    /// <summary>Buffers for steps of up to <paramref name="maxRows"/> tokens and <paramref name="maxLogitRows"/> rows of logits.</summary>
    /// <remarks>A sequence classifier (<see cref="Qwen2Config.IsSequenceClassifier"/>) has no LM head, so no next-token logits: refused here, naming what it does instead.</remarks>
    public ForwardState CreateState(int maxRows, int maxLogitRows)
    {
        RequireGenerates();
        return NewState(maxRows, maxLogitRows, maxHiddenRows: 0);
    }

    /// <summary>
    /// The score head of a sequence classifier; for a model that generates, throws saying so, <paramref name="caller"/>
    /// naming what needed the head (classify, ClassifyAsync, /classify) and <paramref name="source"/>, if given, the model.
    /// </summary>
    public ClassifierHead RequireClassifier(string caller, string? source = null)
    {
        if (Classifier is not ClassifierHead head)
        {
            QwenThrow.NotSupported($"{(source is null ? "" : $"{source}: ")}the model is a {Config.Architecture ?? Config.ModelType}, which generates; {caller} needs a *ForSequenceClassification model (a reward model, a classifier)");
            return null!;
        }

        return head;
    }

    /// <summary>Whether the model is a cross-encoder reranker: a sequence classifier with one label (its logit the relevance).</summary>
    public bool IsReranker => Classifier is { Labels.Count: 1 };

    /// <summary>
    /// The score head of a cross-encoder reranker: a sequence classifier with one label, whose logit says how relevant a
    /// document is to a query. Throws naming what the model is otherwise.
    /// </summary>
    public ClassifierHead RequireReranker(string caller, string? source = null)
    {
        ClassifierHead head = RequireClassifier(caller, source);
        if (!IsReranker)
        {
            QwenThrow.NotSupported($"{(source is null ? "" : $"{source}: ")}{caller} needs a reranker, a classifier with one label (its logit the relevance); this classifier has {head.Labels.Count}: {string.Join(", ", head.Labels)}");
        }

        return head;
    }

    /// <summary>
    /// Whether the model is an embedding model (a bi-encoder): no classifier, and a pooling its folder's
    /// sentence-transformers files or its GGUF file's <c>pooling_type</c> name (a model that generates pools by default).
    /// </summary>
    public bool IsEmbeddingModel => Classifier is null && !EmbeddingConfig.IsDefaultPooling;

    /// <summary>
    /// Throws, naming what the model is, unless it ranks documents against a query: a cross-encoder reranker
    /// (<see cref="RequireReranker"/>, the pair read together) or an embedding model (<see cref="IsEmbeddingModel"/>, each
    /// embedded alone and compared by <see cref="EmbeddingConfig.Similarity"/>).
    /// </summary>
    public void RequireRanker(string caller, string? source = null)
    {
        if (IsEmbeddingModel)
        {
            return;
        }

        if (Classifier is not null)
        {
            RequireReranker(caller, source);
            return;
        }

        QwenThrow.NotSupported($"{(source is null ? "" : $"{source}: ")}the model is a {Config.Architecture ?? Config.ModelType}, which generates; {caller} needs a reranker (a *ForSequenceClassification model with one label) or an embedding model (sentence-transformers' modules.json with its Pooling module, or a GGUF file's pooling_type)");
    }

    /// <summary>Throws, saying what it does instead, for a sequence classifier, which has no next-token logits.</summary>
    public void RequireGenerates()
    {
        if (Config.IsSequenceClassifier)
        {
            QwenThrow.NotSupported($"the model is a {Config.Architecture}, whose score head gives a text a logit per label, not next-token logits: it classifies texts (qwensharp classify, QwenModel.ClassifyAsync{(IsReranker ? "; with its one label it reranks: qwensharp rerank, QwenModel.RerankAsync" : "")}) and does not generate or score tokens");
        }
    }

    /// <summary>
    /// Buffers for <see cref="ForwardHidden"/> steps of up to <paramref name="maxRows"/> tokens, every one of which may be
    /// an output row; logits are never computed, so the LM head's [rows, vocab] is not allocated for them.
    /// </summary>
    public ForwardState CreateHiddenState(int maxRows) => NewState(maxRows, maxLogitRows: 1, maxHiddenRows: maxRows);

    private ForwardState NewState(int maxRows, int maxLogitRows, int maxHiddenRows) =>
        new(Backend, _offload, hostRunsLayers: _firstOffloaded > 0, _headOffloaded, Config, maxRows, maxLogitRows, maxHiddenRows);

    /// <summary>
    /// How the caches of <see cref="CreateKvCache"/> store keys and values: F32 (the default, exact), F16 or BF16 (half
    /// the memory, and half the bytes attention reads over a long context; each key and value rounded once as it is
    /// written, as llama.cpp's <c>--cache-type-k/-v</c> f16 and bf16 do), or Q8_0 or Q4_0 (34 or 18 bytes per 32 values,
    /// each head rotated and its blocks quantized once as written, as llama.cpp's q8_0 and q4_0 caches). Refused where the
    /// backend cannot store it, and Q8_0 and Q4_0 where a head is not whole blocks of 32.
    /// </summary>
    public DType KvCacheType
    {
        get;
        set
        {
            KvCache.CheckType(value);
            foreach (IBackend? backend in (IBackend?[])[_firstOffloaded > 0 ? Backend : null, _offload])
            {
                if (backend is not null && !backend.StoresKvCacheAs(value))
                {
                    throw new ArgumentException($"the {backend.Description} backend does not store a KV cache as {KvCache.NameOf(value)}");
                }
            }

            KvCache.CheckHeadSize(value, Config.HeadDim);

            field = value;
        }
    } = DType.F32;

    /// <summary>Bytes of keys and values one position of one sequence takes in <see cref="KvCacheType"/>.</summary>
    public long KvBytesPerToken => KvCache.BytesPerToken(Config.NumHiddenLayers, Config.KvDim, KvCacheType);

    /// <summary>
    /// A KV cache for <paramref name="slots"/> sequences of up to <paramref name="capacity"/> positions each: each layer's
    /// keys and values on the backend that runs it.
    /// </summary>
    public KvCache CreateKvCache(int slots, int capacity)
    {
        int layers = Config.NumHiddenLayers;
        if (_offload is null || _firstOffloaded == 0)
        {
            return BackendOf(0).CreateKvCache(layers, slots, capacity, Config.KvDim, KvCacheType);
        }

        KvCache first = Backend.CreateKvCache(_firstOffloaded, slots, capacity, Config.KvDim, KvCacheType);
        try
        {
            return new SplitKvCache(first, _offload.CreateKvCache(layers - _firstOffloaded, slots, capacity, Config.KvDim, KvCacheType));
        }
        catch
        {
            first.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Runs one step: every token of <paramref name="batch"/> through every layer, its keys and values into
    /// <paramref name="cache"/>, and the logits of <see cref="TokenBatch.LogitRows"/> into
    /// <paramref name="state"/> (read them with <see cref="ForwardState.LogitsOf"/>).
    /// </summary>
    public void Forward(TokenBatch batch, KvCache cache, ForwardState state, ActivationTap? tap = null)
    {
        Validate(batch, cache, state, state.MaxLogitRows, "logit");
        Activation x = Layers(batch, cache, state, tap, segments: null);

        // Final norm and LM head, only for the rows whose logits are wanted (norm is per row, so gathering first is exact).
        int m = batch.LogitCount;
        if (m == 0)
        {
            return;
        }

        Activation last = FinalNorm(batch, state, x, tap);
        Activation logits = state.Logits.Rows(m);
        HeadBackend.Linear(last, _w.LmHead, null, logits);
        if (!state.LogitsInHostMemory)
        {
            HeadBackend.Download(logits, state.HostLogits.AsSpan(0, m * Config.VocabSize));
        }

        CheckFinite(batch, state);
    }

    /// <summary>
    /// Runs one step as <see cref="Forward"/> does, but stops before the LM head: the last hidden states (after the final
    /// norm, what transformers' <c>Qwen2Model</c> returns as <c>last_hidden_state</c>) of <see cref="TokenBatch.LogitRows"/>
    /// go into <paramref name="hidden"/>, [rows, hidden_size]. Text embeddings are pooled from them.
    /// </summary>
    /// <param name="cache">Where keys and values go (causal attention); null with <paramref name="bidirectional"/>.</param>
    /// <param name="bidirectional">Every token attends to every token of its sequence, as in an encoder (gte-Qwen2-7B's
    /// embeddings; llama.cpp's <c>--attention non-causal</c>): each sequence must be whole in the batch, its rows together
    /// from position 0; nothing is cached.</param>
    public void ForwardHidden(TokenBatch batch, KvCache? cache, ForwardState state, Span<float> hidden, bool bidirectional = false)
    {
        int[]? segments = null;
        if (bidirectional)
        {
            ValidateRows(batch, state, state.MaxHiddenRows, "hidden-state");
            segments = WholeSequences(batch);
        }
        else
        {
            Validate(batch, cache ?? throw new ArgumentNullException(nameof(cache), "causal attention needs a KV cache"), state, state.MaxHiddenRows, "hidden-state");
        }

        int m = batch.LogitCount, size = m * Config.HiddenSize;
        if (hidden.Length < size)
        {
            QwenThrow.Argument($"the span holds {hidden.Length} values; {m} hidden states need {size}", nameof(hidden));
        }

        Activation x = Layers(batch, cache, state, tap: null, segments);
        if (m == 0)
        {
            return;
        }

        HeadBackend.Download(FinalNorm(batch, state, x, tap: null), hidden[..size]);
        if (!float.IsFinite(System.Numerics.Tensors.TensorPrimitives.Sum(hidden[..size])))
        {
            int row = batch.LogitRows[0];
            QwenThrow.InvalidData(
                $"the model's hidden states of the step from position {batch.Positions[row]} (sequence slot {batch.Slots[row]}) are not finite (NaN or infinity): the weights may be corrupt");
        }
    }

    /// <summary>The rows of <see cref="TokenBatch.LogitRows"/> gathered from the residual stream and normed.</summary>
    private Activation FinalNorm(TokenBatch batch, ForwardState state, Activation x, ActivationTap? tap)
    {
        Activation last = state.LastHidden.Rows(batch.LogitCount);
        HeadBackend.GatherRows(x, batch.LogitRows, last);
        HeadBackend.RmsNorm(last, _w.Norm, _eps, last);
        tap?.Invoke("final_norm", -1, last, HeadBackend);
        return last;
    }

    /// <summary>
    /// Every token of the step through every layer (keys and values into the cache, or, given <paramref name="segments"/>,
    /// bidirectional attention within each sequence's rows); returns the residual stream.
    /// </summary>
    private Activation Layers(TokenBatch batch, KvCache? cache, ForwardState state, ActivationTap? tap, int[]? segments)
    {
        int n = batch.Count;
        Activation x = state.Host.X.Rows(n);

        // Token embeddings start the residual stream; a picture's pads take its features instead (Qwen2-VL).
        Backend.Embed(_w.EmbedTokens, batch.Tokens, x);
        if (batch.HasEmbeddings)
        {
            WriteGivenEmbeddings(batch, x);
        }

        tap?.Invoke("embed", -1, x, Backend);

        // M-RoPE (Qwen2-VL): angles from each row's 3-D position, computed once for all layers.
        bool rotaryTable = batch.HasRopePositions;
        if (rotaryTable)
        {
            MRopeTable(batch, state);
        }

        // LoRA adapters: whether this step runs them, and at which scales for each row.
        Lora.LoraStep adapters = _lora?.Prepare(Backend, _offload, batch, state) ?? default;

        LayerBuffers buffers = state.Host;
        for (int l = 0; l < _w.Layers.Count; l++)
        {
            Qwen2LayerWeights<DeviceWeight> w = _w.Layers[l];
            if (l == _firstOffloaded)
            {
                // The offloaded layers from here on: the residual stream goes over to their backend.
                buffers = state.Offloaded!;
                x = Cross(x, state, buffers);
            }

            IBackend b = buffers.Backend;
            Activation xb = buffers.Xb.Rows(n), q = buffers.Q.Rows(n), k = buffers.K.Rows(n), v = buffers.V.Rows(n);
            Activation attn = buffers.AttentionOut.Rows(n), gate = buffers.Gate.Rows(n), up = buffers.Up.Rows(n);
            (KvCache? layerCache, int cacheLayer) = cache is SplitKvCache split ? split.PartOf(l) : (cache, l);

            // Self-attention block: pre-norm, projections (Qwen2: q/k/v carry a bias), RoPE, causal GQA over the cache.
            b.RmsNorm(x, w.InputLayernorm, _eps, xb);
            tap?.Invoke("attn_norm", l, xb, b);
            b.QkvProjection(xb, w.QProj, w.QBias, q, w.KProj, w.KBias, k, w.VProj, w.VBias, v);
            if (_lora is { } lora)
            {
                lora.Apply(b, state, adapters, l, Lora.LoraTarget.Q, xb, q);
                lora.Apply(b, state, adapters, l, Lora.LoraTarget.K, xb, k);
                lora.Apply(b, state, adapters, l, Lora.LoraTarget.V, xb, v);
            }

            if (rotaryTable)
            {
                b.RopeTable(q, k, state.RopeCos, state.RopeSin, _shape);
            }
            else
            {
                b.Rope(q, k, batch.Positions, _shape);
            }

            if (segments is null)
            {
                b.Attention(q, k, v, layerCache!, cacheLayer, batch.Slots, batch.Positions, _shape, attn);
            }
            else
            {
                b.SegmentAttention(q, k, v, segments, _shape, attn);
            }

            tap?.Invoke("attn_out", l, attn, b);
            b.Linear(attn, w.OProj, w.OBias, xb);
            _lora?.Apply(b, state, adapters, l, Lora.LoraTarget.O, attn, xb);
            b.Add(x, xb);                                               // residual

            // MLP block: pre-norm, SwiGLU down(silu(gate(x)) * up(x)).
            b.RmsNorm(x, w.PostAttentionLayernorm, _eps, xb);
            tap?.Invoke("ffn_norm", l, xb, b);
            bool adaptsMlp = _lora?.AdaptsMlp(l, adapters) == true;
            if (adaptsMlp || tap is not null)
            {
                // Each product on its own: with its LoRA update (W x + scale · B A x), or for the tap to see down's input.
                b.Linear(xb, w.GateProj, null, gate);
                if (adaptsMlp)
                {
                    _lora!.Apply(b, state, adapters, l, Lora.LoraTarget.Gate, xb, gate);
                }

                b.Linear(xb, w.UpProj, null, up);
                if (adaptsMlp)
                {
                    _lora!.Apply(b, state, adapters, l, Lora.LoraTarget.Up, xb, up);
                }

                b.SiluMultiply(gate, up);
                tap?.Invoke("ffn_act", l, gate, b);
                b.Linear(gate, w.DownProj, null, xb);
                if (adaptsMlp)
                {
                    _lora!.Apply(b, state, adapters, l, Lora.LoraTarget.Down, gate, xb);
                }
            }
            else
            {
                b.SwiGlu(xb, w.GateProj, w.UpProj, w.DownProj, gate, up, xb);
            }

            tap?.Invoke("ffn_out", l, xb, b);
            b.Add(x, xb);                                               // residual
            tap?.Invoke("layer_out", l, x, b);
        }

        // The head on the model's own backend after offloaded layers: the residual stream comes back for it.
        return _offload is not null && !_headOffloaded && buffers != state.Host ? Cross(x, state, state.Host) : x;
    }

    /// <summary>The residual stream <paramref name="x"/> copied into <paramref name="to"/>'s, through host memory (a step's rows × hidden_size floats).</summary>
    private static Activation Cross(Activation x, ForwardState state, LayerBuffers to)
    {
        Span<float> values = state.Crossing.AsSpan(0, x.Rows * x.Cols);
        IBackend from = ReferenceEquals(to, state.Host) ? state.Offloaded!.Backend : state.Host.Backend;
        from.Download(x, values);
        Activation there = to.X.Rows(x.Rows);
        to.Backend.Write(values, there);
        return there;
    }

    /// <summary>Copies the given embedding rows over the looked-up ones, a run of consecutive rows from one array at a time.</summary>
    private void WriteGivenEmbeddings(TokenBatch batch, Activation x)
    {
        int hidden = Config.HiddenSize;
        for (int row = 0; row < batch.Count;)
        {
            (float[]? values, int offset) = batch.EmbeddingOf(row);
            if (values is null)
            {
                row++;
                continue;
            }

            int end = row + 1;
            while (end < batch.Count && batch.EmbeddingOf(end) is (float[] next, int nextOffset)
                && ReferenceEquals(next, values) && nextOffset == offset + ((end - row) * hidden))
            {
                end++;
            }

            if (offset < 0 || offset + ((end - row) * hidden) > values.Length)
            {
                QwenThrow.Argument($"the embedding of batch row {row} lies outside its array of {values.Length} values", nameof(batch));
            }

            Backend.WriteRows(values.AsSpan(offset, (end - row) * hidden), x, row);
            row = end;
        }
    }

    private void MRopeTable(TokenBatch batch, ForwardState state)
    {
        if (Config.MRopeSection is not IReadOnlyList<int> section)
        {
            QwenThrow.Argument($"the batch has 3-D rotary positions, which only Qwen2-VL models take ({Config.ModelType} does not)", nameof(batch));
            return;
        }

        _mropeInverseFrequencies ??= RopeAngles.InverseFrequencies(Config.HeadDim, Config.RopeTheta);
        int values = batch.Count * (Config.HeadDim / 2);
        Qwen2VL.MRopePositions.Angles(batch.RopeT, batch.RopeH, batch.RopeW, section, _mropeInverseFrequencies,
            state.RopeCos.AsSpan(0, values), state.RopeSin.AsSpan(0, values));
    }

    private double[]? _mropeInverseFrequencies;

    /// <summary>
    /// Stops on logits that are NaN or infinite (NaN weights, an overflow): sampling would silently pick token 0.
    /// A sum is finite exactly when every term is and no partial sum overflows, which logits never come near. A batch's
    /// rows are summed on the backend's host threads (<see cref="IBackend.ForEachOnHost"/>): a vocabulary's logits a row,
    /// one after another they were 5% of a 64-sequence serving step of a tiny model on the scheduler's thread.
    /// </summary>
    private void CheckFinite(TokenBatch batch, ForwardState state)
    {
        _finiteState = state;
        _firstNotFinite = int.MaxValue;
        try
        {
            Backend.ForEachOnHost(batch.LogitCount, _checkFiniteRow ??= CheckFiniteRow);
        }
        finally
        {
            _finiteState = null;
        }

        if (_firstNotFinite != int.MaxValue)
        {
            int row = batch.LogitRows[_firstNotFinite];
            QwenThrow.InvalidData(
                $"the model's logits at position {batch.Positions[row]} (token {batch.Tokens[row]}, sequence slot {batch.Slots[row]}) are not finite (NaN or infinity): the weights may be corrupt");
        }
    }

    /// <summary>The state whose logits <see cref="CheckFinite"/> sums, and the first row it found not finite (int.MaxValue: none).</summary>
    private ForwardState? _finiteState;
    private int _firstNotFinite;
    private Action<int>? _checkFiniteRow;

    private void CheckFiniteRow(int r)
    {
        if (!float.IsFinite(System.Numerics.Tensors.TensorPrimitives.Sum(_finiteState!.LogitsOf(r))))
        {
            // The lowest such row, whichever thread finds it first.
            for (int seen = Volatile.Read(ref _firstNotFinite); r < seen; seen = Volatile.Read(ref _firstNotFinite))
            {
                if (Interlocked.CompareExchange(ref _firstNotFinite, r, seen) == seen)
                {
                    break;
                }
            }
        }
    }

    /// <summary>Checks that every id is in the vocabulary, naming the first that is not and where it is.</summary>
    public void ValidateTokens(IReadOnlyList<int> tokens, string what)
    {
        for (int i = 0; i < tokens.Count; i++)
        {
            if ((uint)tokens[i] >= (uint)Config.VocabSize)
            {
                QwenThrow.Argument(
                    $"{what}: token id {tokens[i]} at index {i} is outside the vocabulary (vocab_size is {Config.VocabSize}, ids 0..{Config.VocabSize - 1})",
                    nameof(tokens));
            }
        }
    }

    /// <summary>
    /// The batch's sequences as segments for bidirectional attention (row starts, then the row count): each slot's rows
    /// together, at positions 0, 1, 2, ... (so the batch holds every token of each sequence).
    /// </summary>
    private static int[] WholeSequences(TokenBatch batch)
    {
        var starts = new List<int>();
        ReadOnlySpan<int> slots = batch.Slots, positions = batch.Positions;
        var seen = new HashSet<int>();
        for (int i = 0; i < batch.Count; i++)
        {
            bool starting = i == 0 || slots[i] != slots[i - 1];
            if (starting && !seen.Add(slots[i]))
            {
                QwenThrow.Argument($"bidirectional attention: the rows of sequence slot {slots[i]} are not together (row {i})", nameof(batch));
            }

            if (positions[i] != (starting ? 0 : positions[i - 1] + 1))
            {
                QwenThrow.Argument(
                    $"bidirectional attention needs each sequence whole: row {i} (slot {slots[i]}) is at position {positions[i]}, expected {(starting ? 0 : positions[i - 1] + 1)}",
                    nameof(batch));
            }

            if (starting)
            {
                starts.Add(i);
            }
        }

        starts.Add(batch.Count);
        return [.. starts];
    }

    /// <summary>The batch fits the state, and its tokens the vocabulary.</summary>
    private void ValidateRows(TokenBatch batch, ForwardState state, int maxOutputRows, string output)
    {
        if (batch.Count > state.MaxRows || batch.LogitCount > maxOutputRows)
        {
            QwenThrow.Argument(
                $"the batch has {batch.Count} tokens and {batch.LogitCount} {output} rows; the state holds {state.MaxRows} and {maxOutputRows}",
                nameof(batch));
        }

        ReadOnlySpan<int> tokens = batch.Tokens;
        for (int i = 0; i < tokens.Length; i++)
        {
            if ((uint)tokens[i] >= (uint)Config.VocabSize)
            {
                QwenThrow.ArgumentOutOfRange(nameof(batch), tokens[i],
                    $"token id {tokens[i]} is outside the vocabulary (vocab_size is {Config.VocabSize}, ids 0..{Config.VocabSize - 1})");
            }
        }
    }

    private void Validate(TokenBatch batch, KvCache cache, ForwardState state, int maxOutputRows, string output)
    {
        ValidateRows(batch, state, maxOutputRows, output);
        if (cache.Layers != Config.NumHiddenLayers || cache.KvDim != Config.KvDim)
        {
            QwenThrow.Argument($"the KV cache was made for another model ({cache.Layers} layers of {cache.KvDim})", nameof(cache));
        }

        ReadOnlySpan<int> tokens = batch.Tokens, positions = batch.Positions, slots = batch.Slots;
        for (int i = 0; i < tokens.Length; i++)
        {
            if ((uint)slots[i] >= (uint)cache.Slots)
            {
                QwenThrow.ArgumentOutOfRange(nameof(batch), slots[i], $"sequence slot {slots[i]} is outside the KV cache's {cache.Slots} slots");
            }

            if ((uint)positions[i] >= (uint)cache.Capacity)
            {
                QwenThrow.ArgumentOutOfRange(nameof(batch), positions[i],
                    $"position {positions[i]} is beyond the context of {cache.Capacity} tokens");
            }
        }

        // Positions of a slot are filled in order: each row writes its slot's next position or rewrites an earlier
        // one (which drops what followed); a gap would make attention read positions nobody wrote.
        // Checked on a copy, so a rejected step leaves the cache as it was.
        int[] lengths = System.Buffers.ArrayPool<int>.Shared.Rent(cache.Slots);
        try
        {
            cache.Lengths.CopyTo(lengths, 0);
            for (int i = 0; i < tokens.Length; i++)
            {
                if (positions[i] > lengths[slots[i]])
                {
                    QwenThrow.Argument(
                        $"position {positions[i]} of sequence slot {slots[i]} skips positions {lengths[slots[i]]}..{positions[i] - 1}, which hold nothing yet",
                        nameof(batch));
                }

                lengths[slots[i]] = positions[i] + 1;
            }

            lengths.AsSpan(0, cache.Slots).CopyTo(cache.Lengths);
        }
        finally
        {
            System.Buffers.ArrayPool<int>.Shared.Return(lengths);
        }
    }

    public void Dispose()
    {
        foreach (DeviceWeight weight in _uploaded)
        {
            weight.Dispose();
        }

        Vision?.Dispose();
        _lora?.Dispose();
        _ownedSource?.Dispose();
        _offload?.Dispose();
    }
}
