using QwenSharp.Backend;
using QwenSharp.Gpu;
using QwenSharp.Qwen2;

namespace QwenSharp.Cli;

/// <summary>The options every model command shares (--model, --threads, --device), and loading the model they name.</summary>
internal static class ModelLoading
{
    public static readonly OptionSpec Model = new("model", "DIR", "Hugging Face model folder (config.json + *.safetensors), a .gguf file, or a Hub name (Qwen/Qwen2.5-0.5B-Instruct, OWNER/NAME-GGUF:Q4_K_M) from the Hugging Face cache or downloaded into it; default: the bundled demo model");
    public static readonly OptionSpec Threads = new("threads", "N", "threads for the kernels (default: all cores)");
    public static readonly OptionSpec Quantize = new("quantize", "q4_k_m|q8_0|q4_0|...", "quantize the matrices at load, as qwensharp quantize writes them: llama-quantize's mixes q2_k, q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, q5_k_s, q5_k_m, iq4_nl, iq4_xs, iq3_s, iq3_m, iq3_xs, iq3_xxs, iq2_m, iq2_s, iq2_xs, iq2_xxs, iq1_s, iq1_m (iq3_xs and below with --imatrix; IQ3 and IQ1 held as the Q6_K of their values, IQ2 as Q8_0) tensor by tensor, or every matrix in one type: q8_0, q4_0, q5_0, q4_1, q5_1, q3_k, q4_k, q5_k, q6_k (rows of whole blocks: 32 values, 256 for the k-quants; other rows take llama.cpp's fallback, q4_0 for q2_k and q3_k, q5_0 for q4_k, q5_1 for q5_k, q8_0 for q6_k and iq4_nl for iq4_xs and the iq3, iq2 and iq1 types, or stay as stored)");

    public static readonly OptionSpec Imatrix = new("imatrix", "FILE", "with --quantize: round the matrices by this importance matrix (qwensharp imatrix's or llama-imatrix's file), as quantize --imatrix does");

    public static readonly OptionSpec KvCacheType = new("kv-cache-type", "f32|f16|bf16|q8_0|q4_0",
        "how the KV cache stores keys and values: f16 or bf16 take half the memory, each value rounded once; q8_0 a little over a quarter and q4_0 a seventh, rotated and quantized as llama.cpp's (default: f32, exact)");

    public static readonly OptionSpec Lora = new("lora", "PATH",
        "a LoRA adapter (PEFT folder, GGUF adapter or Hub name) added to the model's projections at run time; repeat for several (llama.cpp's --lora)",
        Repeatable: true);

    /// <summary>serve's --lora: as <see cref="Lora"/>, and each adapter is one a request may pick or weigh.</summary>
    public static readonly OptionSpec ServeLora = new("lora", "[NAME=]PATH",
        "a LoRA adapter (PEFT folder, GGUF adapter or Hub name) added to the model's projections; repeat for several. A request picks one by its name in 'model' (NAME, else the folder's or file's; /v1/models lists them) or weighs them with 'lora': [{\"id\": 0, \"scale\": 0.5}] (GET/POST /lora-adapters: ids and the scales of requests that give none)",
        Repeatable: true);

    public static readonly OptionSpec LoraScale = new("lora-scale", "S",
        "how strongly to apply each --lora, in order (default 1: as trained; 0: off); give one per --lora", Repeatable: true);

    public static readonly OptionSpec DraftModel = new("draft-model", "PATH",
        "a smaller model with the same tokenizer (folder, .gguf or Hub name) that guesses the next tokens, checked in one step: the same tokens, faster where its guesses hold (llama.cpp's -md)");

    public static readonly OptionSpec DraftTokens = new("draft-tokens", "N", $"with --draft-model, the most guesses a step (1-{Generation.PromptLookup.MaxDraftTokens}, default {QwenModel.DefaultDraftTokens})");

    public static readonly OptionSpec Device = new("device", "cpu|gpu|gpu:N", "where to run: cpu, the GPU (Vulkan; gpu:N picks one of qwensharp devices) (default: cpu)");

    public static readonly OptionSpec GpuLayers = new("gpu-layers", "N|auto",
        "run only the model's last N layers on the GPU, the rest on the CPU (as llama.cpp's -ngl: one more than the layers also puts the LM head there, 0 none), for a model larger than the GPU's memory; auto: as many as fit beside a KV cache of the context given (else 4096 positions; serve: for each sequence it decodes at once); implies --device gpu (default: the whole model on the --device)");

    public static readonly OptionSpec BatchInvariant = new("batch-invariant", null,
        "steps of up to 7 rows (a batch of up to 7 sequences, prompt lookup) give each row exactly its bits alone; without it the CPU multiplies quantized matrices faster, the same tokens up to near-ties");

    /// <summary>How a command that reads texts through a model (embed, classify, rerank) runs it: threads, quantization, LoRA, device.</summary>
    public static readonly OptionSpec[] RunSpecs = [Threads, Quantize, Imatrix, Lora, LoraScale, Device, GpuLayers];

    /// <summary>The bundled demo model (llama2.c's stories260K), copied beside the binary.</summary>
    public static string DemoModelDirectory => Path.Combine(AppContext.BaseDirectory, "models", "stories260K");

    public static string ResolveDirectory(Arguments args, TextWriter stderr)
    {
        string? directory = args.Value("model");
        if (directory is not null)
        {
            if (File.Exists(directory) && !Formats.Gguf.GgufFile.HasMagic(directory))
            {
                throw new UsageException($"--model {directory} is a file but not a GGUF file: pass the model folder (the one with config.json and the *.safetensors) or a .gguf file");
            }

            if (Hub.HuggingFaceHub.IsReference(directory))
            {
                try
                {
                    return HubModels.Resolve(directory, stderr);
                }
                catch (Hub.HubException e)
                {
                    throw new Hub.HubException($"--model {directory}: no such folder or file here, and from the Hugging Face Hub: {e.Message}", e);
                }
            }

            return directory;
        }

        stderr.WriteLine("note: using the bundled demo model (stories260K); pass --model DIR to run a Hugging Face Qwen2 folder (or --model FILE.gguf)");
        return DemoModelDirectory;
    }

    /// <summary>
    /// Refuses a model without a chat template before anything is read or generated, saying what to use instead
    /// (the bundled demo model is a story model: it continues text and has no chat turns).
    /// </summary>
    public static void RequireChatTemplate(Tokenization.Tokenizer tokenizer, string directory, string what)
    {
        if (tokenizer.HasChatTemplate)
        {
            return;
        }

        string model = Path.GetFullPath(directory) == Path.GetFullPath(DemoModelDirectory)
            ? "the bundled demo model (stories260K) is a story model with no chat template; pass --model with an instruct model such as Qwen2.5-0.5B-Instruct (README: A real model), or use generate --prompt TEXT"
            : $"{directory} has no chat template (no chat_template in tokenizer_config.json, no chat_template.jinja); {what} needs an instruct model such as Qwen2.5-0.5B-Instruct";
        throw new UsageException($"{what}: {model}");
    }

    /// <summary>
    /// --context, or null when not given. One rule for every command: at least <paramref name="min"/>, and never more
    /// than the positions the model was trained for (max_position_embeddings, or as far as its YaRN scaling stretches).
    /// </summary>
    public static int? Context(Arguments args, Qwen2Config config, int min = 1)
    {
        int? context = args.Int("context", min);
        if (context > config.MaxPositionEmbeddings)
        {
            string stretched = config.RopeScaling?.Kind == QwenSharp.Backend.RopeScalingKind.Yarn ? " with YaRN" : "";
            throw new UsageException($"--context {context} is more than the model's max_position_embeddings ({config.MaxPositionEmbeddings}{stretched})");
        }

        return context;
    }

    /// <summary>Checks --device: cpu, gpu or gpu:N (gpu when only --gpu-layers is given).</summary>
    public static string CheckDevice(Arguments args)
    {
        string device = args.Value("device") ?? (args.Has("gpu-layers") ? "gpu" : "cpu");
        if (device != "cpu" && !GpuDevices.IsGpuSelector(device))
        {
            throw new UsageException($"--device '{device}' is not one of cpu, gpu, gpu:N");
        }

        if (device == "cpu" && args.Has("gpu-layers"))
        {
            throw new UsageException("--gpu-layers places layers on a GPU: it goes with --device gpu or gpu:N (or alone), not --device cpu");
        }

        return device;
    }

    /// <summary>
    /// --gpu-layers: how many of the last layers run on the GPU (the rest on the CPU), <see cref="QwenModelOptions.AutoGpuLayers"/>
    /// for auto, or null for the whole model on the --device.
    /// </summary>
    public static int? GpuLayersOf(Arguments args) => args.Value("gpu-layers") switch
    {
        null => null,
        "auto" => QwenModelOptions.AutoGpuLayers,
        string text when int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int layers) && layers <= MaxGpuLayers => layers,
        string text => throw new UsageException($"--gpu-layers '{text}' is not a count of layers from 0 to {MaxGpuLayers}, or auto"),
    };

    /// <summary>The largest --gpu-layers taken (far past any model's layers, as llama.cpp's -ngl 999).</summary>
    private const int MaxGpuLayers = 100_000;

    /// <summary>
    /// With --gpu-layers auto, the KV cache positions it leaves room for: --context (default 4096) times the sequences that
    /// hold one each (<paramref name="slots"/>: serve's --max-concurrent); null otherwise.
    /// </summary>
    public static int? GpuFitPositionsOf(Arguments args, int slots = 1) =>
        GpuLayersOf(args) == QwenModelOptions.AutoGpuLayers ? (int)Math.Min(int.MaxValue, (long)(args.Int("context", 1) ?? LayerOffload.DefaultFitPositions) * slots) : null;

    /// <summary>
    /// The backend the model runs on (with --gpu-layers, the CPU, which runs the embedding and the first layers), and the
    /// GPU part of a split model, which the model then owns (null without one).
    /// </summary>
    public static (IBackend Backend, LayerOffload? Offload) CreateBackends(Arguments args) =>
        QwenModel.CreateBackends(CheckDevice(args), GpuLayersOf(args), new KvReserve(GpuFitPositionsOf(args) ?? LayerOffload.DefaultFitPositions, KvCacheTypeOf(args)),
            args.Int("threads", 1, 1024) ?? Environment.ProcessorCount, args.Flag("batch-invariant"));

    /// <summary>Loads the model the arguments name, on the backend they choose; the caller disposes both.</summary>
    public static (IBackend Backend, Qwen2Model Model) Load(Arguments args, TextWriter stderr) =>
        Load(ResolveDirectory(args, stderr), args, stderr);

    /// <summary>--quantize: the quantized type or mix to convert the matrices to at load, or null.</summary>
    public static Formats.QuantizationMix? QuantizeType(Arguments args)
    {
        Formats.QuantizationMix? mix = args.Value("quantize") switch
        {
            null => null,
            string text when Formats.QuantizationMix.TryParse(text, out Formats.QuantizationMix? parsed) && IsOffered(parsed) => parsed,
            string text => throw new UsageException($"--quantize '{text}' is not one of {string.Join(", ", MixAndTypeNames(Quantizers))}"),
        };
        if (args.Value("imatrix") is not string path)
        {
            return mix;
        }

        if (mix is null)
        {
            throw new UsageException("--imatrix rounds the matrices --quantize quantizes at load; give --quantize T too (or use quantize --imatrix to write a file)");
        }

        return File.Exists(path) ? mix.WithImportance(Formats.ImportanceMatrixFile.Read(path)) : throw new UsageException($"--imatrix {path}: file not found");
    }

    /// <summary>The quantized types with a quantizer here.</summary>
    public static readonly Formats.DType[] Quantizers =
        [Formats.DType.Q8_0, Formats.DType.Q4_0, Formats.DType.Q5_0, Formats.DType.Q4_1, Formats.DType.Q5_1, Formats.DType.Q4_K, Formats.DType.Q5_K, Formats.DType.Q6_K, Formats.DType.Q3_K, Formats.DType.Q2_K,
            Formats.DType.IQ4_NL, Formats.DType.IQ4_XS];

    /// <summary>Whether --quantize and quantize --type take a mix: llama-quantize's named mixes, or one of <see cref="Quantizers"/> for every matrix.</summary>
    public static bool IsOffered(Formats.QuantizationMix mix) => Formats.QuantizationMix.Mixes.Contains(mix) || (mix.IsPure && Quantizers.Contains(mix.Base));

    /// <summary>llama-quantize's mixes, then the single types of <paramref name="types"/> (a name both have, q2_k, is the mix).</summary>
    public static IEnumerable<string> MixAndTypeNames(IEnumerable<Formats.DType> types) =>
        Formats.QuantizationMix.Mixes.Select(m => m.Name)
            .Concat(types.Select(t => Formats.DTypes.Name(t).ToLowerInvariant()).Where(name => Formats.QuantizationMix.Mixes.All(m => m.Name != name)));

    /// <summary>--kv-cache-type: how the KV cache stores keys and values (F32 when not given).</summary>
    public static Formats.DType KvCacheTypeOf(Arguments args) => args.Value("kv-cache-type") switch
    {
        null => Formats.DType.F32,
        string text when KvCache.Types.FirstOrDefault(t => t.Name == text) is { Name: not null } found => found.Type,
        string text => throw new UsageException($"--kv-cache-type '{text}' is not one of {string.Join(", ", KvCache.Types.Select(t => t.Name))}"),
    };

    public static readonly OptionSpec Attention = new("attention", "causal|non-causal",
        "attention for embeddings: non-causal lets every token see its whole text, as gte-Qwen2-7B-instruct was trained (default: config.json's is_causal, GGUF's attention.causal, else causal)");

    /// <summary>--attention: sets whether <paramref name="model"/>'s embeddings attend both ways; absent, the model's own setting stays.</summary>
    public static void SetEmbeddingAttention(Qwen2Model model, Arguments args)
    {
        bool? bidirectional = args.Value("attention") switch
        {
            null => null,
            "causal" => false,
            "non-causal" => true,
            string other => throw new UsageException($"--attention '{other}' is not one of causal, non-causal"),
        };
        if (bidirectional is bool both)
        {
            model.EmbeddingConfig = model.EmbeddingConfig with { Bidirectional = both };
        }
    }

    /// <summary>Stores <paramref name="model"/>'s KV caches as <paramref name="type"/> (--kv-cache-type), or says why the backend cannot.</summary>
    public static void SetKvCacheType(Qwen2Model model, Formats.DType type)
    {
        try
        {
            model.KvCacheType = type;
        }
        catch (ArgumentException e)
        {
            throw new UsageException($"--kv-cache-type {KvCache.NameOf(type)}: {e.Message}");
        }
    }

    /// <summary>
    /// The Engine's model (weights and tokenizer) for the commands that chat or serve through it, on the device and
    /// threads the arguments choose, with the load note (GGUF types converted at load) on stderr.
    /// </summary>
    public static QwenModel LoadEngineModel(string directory, string device, Arguments args, TextWriter stderr, int slots = 1)
    {
        QwenModel model = QwenModel.Load(directory, new QwenModelOptions { Threads = args.Int("threads", 1, 1024), Device = device, GpuLayers = GpuLayersOf(args),
            GpuFitPositions = GpuFitPositionsOf(args, slots), Quantize = QuantizeType(args), BatchInvariant = args.Flag("batch-invariant"),
            KvCacheType = KvCacheTypeOf(args), DraftModel = DraftPath(args, stderr), LoraAdapters = LoraAdapters(args, stderr) });
        if (model.Model.LoadNote is string note)
        {
            stderr.WriteLine($"note: {note}");
        }

        return model;
    }

    /// <summary>
    /// --draft-model's path (a Hub name found or downloaded), or null; refused beside --prompt-lookup (one source of
    /// guesses), and --draft-tokens without it.
    /// </summary>
    public static string? DraftPath(Arguments args, TextWriter stderr)
    {
        string? draft = args.Value("draft-model");
        if (draft is null)
        {
            return args.Has("draft-tokens") ? throw new UsageException("--draft-tokens goes with --draft-model") : null;
        }

        if (args.Has("prompt-lookup"))
        {
            throw new UsageException("--draft-model and --prompt-lookup are two sources of guesses; give one (--draft-tokens sets the draft's guesses a step)");
        }

        if (Hub.HuggingFaceHub.IsReference(draft))
        {
            return HubModels.Resolve(draft, stderr);
        }

        return Directory.Exists(draft) || File.Exists(draft) ? draft : throw new UsageException($"--draft-model {draft}: no such folder or file");
    }

    /// <summary>
    /// The --lora adapters (Hub names found or downloaded) at their --lora-scale, in order; one scale per adapter when any
    /// is given.
    /// </summary>
    public static IReadOnlyList<LoraAdapterOptions> LoraAdapters(Arguments args, TextWriter stderr)
    {
        IReadOnlyList<string> paths = args.Values("lora"), scales = args.Values("lora-scale");
        if (scales.Count > 0 && scales.Count != paths.Count)
        {
            throw new UsageException($"{scales.Count} --lora-scale for {paths.Count} --lora: give one scale per adapter, in the same order");
        }

        var adapters = new List<LoraAdapterOptions>();
        for (int i = 0; i < paths.Count; i++)
        {
            float scale = 1f;
            if (scales.Count > 0 && !(float.TryParse(scales[i], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out scale) && float.IsFinite(scale)))
            {
                throw new UsageException($"--lora-scale '{scales[i]}' is not a number");
            }

            // NAME=PATH names the adapter for a server's requests (vLLM's --lora-modules form), where no such path exists.
            string path = paths[i];
            string? name = null;
            if (path.IndexOf('=', StringComparison.Ordinal) is int equals and > 0 && !Directory.Exists(path) && !File.Exists(path))
            {
                (name, path) = (path[..equals], path[(equals + 1)..]);
            }

            if (Hub.HuggingFaceHub.IsReference(path))
            {
                name ??= path;
                path = HubModels.Resolve(path, stderr);
            }
            else if (!Directory.Exists(path) && !File.Exists(path))
            {
                throw new UsageException($"--lora {paths[i]}: no such folder or file (a PEFT adapter folder, a GGUF adapter, or a Hub name)");
            }

            adapters.Add(new LoraAdapterOptions(path, scale) { Name = name });
        }

        return adapters;
    }

    /// <summary>
    /// Guesses a step the arguments ask for: --draft-tokens with --draft-model, else --prompt-lookup; null when not given
    /// (the Engine then takes its default).
    /// </summary>
    public static int? GuessesFrom(Arguments args) => args.Has("draft-model")
        ? args.Int("draft-tokens", 1, Generation.PromptLookup.MaxDraftTokens)
        : Commands.GenerateCommand.PromptLookupFrom(args);

    /// <summary>What a command running the Generator itself guesses with: <see cref="GuessesFrom"/>, a draft model's default without it.</summary>
    public static Generation.PromptLookup? LookupFrom(Arguments args, bool draft) =>
        (GuessesFrom(args) ?? (draft ? QwenModel.DefaultDraftTokens : null)) is int guesses ? new Generation.PromptLookup(guesses) : null;

    /// <summary>Loads the model in <paramref name="directory"/> on the backend the arguments choose, its load notes on <paramref name="stderr"/>.</summary>
    public static (IBackend Backend, Qwen2Model Model) Load(string directory, Arguments args, TextWriter stderr)
    {
        Formats.QuantizationMix? quantize = QuantizeType(args);
        Formats.DType kvCacheType = KvCacheTypeOf(args);
        (IBackend backend, LayerOffload? offload) = CreateBackends(args);
        try
        {
            Qwen2Model model = Qwen2Model.Load(directory, backend, quantize, offload);
            try
            {
                SetKvCacheType(model, kvCacheType);
                model.ApplyAdapterFiles([.. LoraAdapters(args, stderr).Select(a => (a.Path, a.Scale))]);
            }
            catch
            {
                model.Dispose();
                throw;
            }

            if (model.LoadNote is string note)
            {
                stderr.WriteLine($"note: {note}");
            }

            WeightPrefetch.Run(model, stderr);
            return (backend, model);
        }
        catch
        {
            backend.Dispose();
            throw;
        }
    }
}
