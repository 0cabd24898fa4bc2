using System.Globalization;
using QwenSharp.Backend;
using QwenSharp.Cpu;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Generation;
using QwenSharp.Qwen2;

namespace QwenSharp.Cli.Commands;

/// <summary><c>qwensharp info</c>: what a model folder or GGUF file holds and what running it costs.</summary>
internal sealed class InfoCommand : ICommand
{
    public string Name => "info";

    public string Summary => "architecture, parameter count, dtypes, memory and context of a model";

    public string Usage => "qwensharp info [--model DIR] [--json]";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        ModelLoading.Model,
        new("json", null, "print JSON"),
        ModelLoading.Threads,
        ModelLoading.Quantize,
        ModelLoading.Imatrix,
        ModelLoading.Lora,
        ModelLoading.LoraScale,
        ModelLoading.KvCacheType,
        ModelLoading.Device,
        ModelLoading.GpuLayers,
    ];

    public IReadOnlyList<string> Examples { get; } =
    [
        "qwensharp info",
        "qwensharp info --model ~/models/Qwen2.5-0.5B-Instruct",
    ];

    public int Run(Arguments args, TextWriter stdout, TextWriter stderr)
    {
        string directory = ModelLoading.ResolveDirectory(args, stderr);
        (IBackend backend, Qwen2Model model) = ModelLoading.Load(directory, args, stderr);
        using (backend)
        using (model)
        {
            ModelSummary summary = ModelSummary.Of(model);
            Qwen2Config c = model.Config;
            if (args.Flag("json"))
            {
                JsonOutput.Write(stdout, w =>
                {
                    w.WriteStartObject();
                    w.WriteString("path", Path.GetFullPath(directory));
                    w.WriteString("architecture", c.Architecture);
                    w.WriteString("model_type", c.ModelType);
                    w.WriteNumber("parameters", summary.Parameters);
                    w.WriteStartObject("dtypes");
                    foreach (var (dtype, count) in summary.TensorsByDType)
                    {
                        w.WriteNumber(dtype, count);
                    }

                    w.WriteEndObject();
                    if (model.FileTensorTypes is { } stored)
                    {
                        w.WriteStartObject("file_dtypes");
                        foreach ((string type, int count) in stored)
                        {
                            w.WriteNumber(type, count);
                        }

                        w.WriteEndObject();
                    }

                    if (model.FileParts is { Count: > 1 } parts)
                    {
                        w.WriteStartArray("file_parts");
                        foreach (string part in parts)
                        {
                            w.WriteStringValue(Path.GetFullPath(part));
                        }

                        w.WriteEndArray();
                    }

                    w.WriteNumber("weight_bytes", summary.WeightBytes);
                    w.WriteNumber("kv_cache_bytes_per_token", summary.KvBytesPerToken);
                    w.WriteNumber("context_length", c.MaxPositionEmbeddings);
                    w.WriteNumber("hidden_size", c.HiddenSize);
                    w.WriteNumber("intermediate_size", c.IntermediateSize);
                    w.WriteNumber("num_hidden_layers", c.NumHiddenLayers);
                    w.WriteNumber("num_attention_heads", c.NumAttentionHeads);
                    w.WriteNumber("num_key_value_heads", c.NumKeyValueHeads);
                    w.WriteNumber("head_dim", c.HeadDim);
                    w.WriteNumber("vocab_size", c.VocabSize);
                    w.WriteNumber("rope_theta", c.RopeTheta);
                    w.WriteString("rope_scaling", c.RopeScaling?.Describe());
                    w.WriteBoolean("tie_word_embeddings", c.TieWordEmbeddings);
                    w.WriteString("embedding_pooling", EmbeddingPoolings.NameOf(model.EmbeddingConfig.Pooling));
                    w.WriteBoolean("embedding_normalized", model.EmbeddingConfig.Normalize);
                    w.WriteNumber("embedding_dimensions", model.EmbeddingDimensions);
                    w.WriteString("embedding_unsupported", model.EmbeddingConfig.Unsupported);
                    w.WriteBoolean("embedding_bidirectional", model.EmbeddingConfig.Bidirectional);
                    w.WriteStartObject("embedding_prompts");
                    foreach ((string name, string text) in model.EmbeddingConfig.Prompts.Prompts)
                    {
                        w.WriteString(name, text);
                    }

                    w.WriteEndObject();
                    w.WriteString("embedding_default_prompt", model.EmbeddingConfig.Prompts.DefaultName);
                    if (model.Classifier is ClassifierHead head)
                    {
                        w.WriteStartObject("classifier");
                        w.WriteStartArray("labels");
                        foreach (string label in head.Labels)
                        {
                            w.WriteStringValue(label);
                        }

                        w.WriteEndArray();
                        w.WriteString("score_function", head.ScoreFunction);
                        if (head.PadTokenId is int pad)
                        {
                            w.WriteNumber("pad_token_id", pad);
                        }
                        else
                        {
                            w.WriteNull("pad_token_id");
                        }

                        w.WriteEndObject();
                    }
                    w.WriteStartArray("lora_adapters");
                    foreach (Lora.LoraAdapter adapter in model.Adapters)
                    {
                        w.WriteStartObject();
                        w.WriteString("path", Path.GetFullPath(adapter.Path));
                        w.WriteString("format", adapter.Format);
                        w.WriteNumber("rank", adapter.Rank);
                        w.WriteNumber("projections", adapter.Targets.Count());
                        w.WriteNumber("scale", adapter.Scale);
                        w.WriteString("base_model", adapter.BaseModel);
                        w.WriteEndObject();
                    }

                    w.WriteEndArray();
                    w.WriteString("backend", model.Placement);
                    if (model.OffloadBackend is not null)
                    {
                        w.WriteNumber("gpu_layers", model.OffloadedLayers);
                    }

                    w.WriteNumber("vector_bits", VectorBits(backend));
                    w.WriteString("cpu", CpuIdentity.Describe());
                    w.WriteEndObject();
                });
                return 0;
            }

            var culture = CultureInfo.InvariantCulture;
            stdout.WriteLine($"model         {Path.GetFullPath(directory)}");
            if (model.FileParts is { Count: > 1 } split)
            {
                stdout.WriteLine($"split into    {split.Count} files ({string.Join(", ", split.Skip(1).Select(Path.GetFileName))} beside the first)");
            }

            stdout.WriteLine($"architecture  {c.Architecture ?? "?"} (model_type {c.ModelType})");
            stdout.WriteLine(string.Create(culture, $"parameters    {summary.Parameters:N0} ({FormatCount(summary.Parameters)})"));
            stdout.WriteLine($"dtypes        {string.Join(", ", summary.TensorsByDType.Select(p => $"{p.DType} ({p.Count} tensors)"))}");
            if (model.FileTensorTypes is { } inFile && !inFile.Select(t => t.Type).Order(StringComparer.Ordinal).SequenceEqual(summary.TensorsByDType.Select(t => t.DType).Order(StringComparer.Ordinal)))
            {
                stdout.WriteLine($"in the file   {string.Join(", ", inFile.Select(p => $"{p.Type} ({p.Count} tensors)"))} (the note above says what runs as another type)");
            }

            stdout.WriteLine($"weights       {FormatBytes(summary.WeightBytes)}");
            stdout.WriteLine($"KV cache      {FormatBytes(summary.KvBytesPerToken)} per token ({QwenSharp.Backend.KvCache.NameOf(model.KvCacheType)}), {FormatBytes(summary.KvBytesPerToken * c.MaxPositionEmbeddings)} for the full context");
            stdout.WriteLine(string.Create(culture, $"context       {c.MaxPositionEmbeddings:N0} tokens ({(c.RopeScaling?.Kind == QwenSharp.Backend.RopeScalingKind.Yarn ? "max_position_embeddings or YaRN's factor x original context, the longer" : "max_position_embeddings")})"));
            stdout.WriteLine($"layers        {c.NumHiddenLayers} × (hidden {c.HiddenSize}, MLP {c.IntermediateSize}, {c.NumAttentionHeads} heads / {c.NumKeyValueHeads} KV heads of {c.HeadDim})");
            stdout.WriteLine(string.Create(culture, $"vocabulary    {c.VocabSize:N0} tokens, {(c.IsSequenceClassifier ? "a score head, no LM head" : c.TieWordEmbeddings ? "tied LM head" : "separate LM head")}"));
            if (model.Classifier is ClassifierHead classifier)
            {
                stdout.WriteLine(string.Create(culture,
                    $"classifier    {classifier.Labels.Count} label(s): {string.Join(", ", classifier.Labels)}; {classifier.ScoreFunction} scores; the last token{(classifier.PadTokenId is int pad ? $" that is not padding (id {pad})" : "")} is pooled (qwensharp classify)"));
            }

            stdout.WriteLine(string.Create(culture, $"RoPE          theta {c.RopeTheta:G}{(c.MRopeSection is { } section ? $" (M-RoPE, sections {string.Join("/", section)})" : "")}{(c.RopeScaling is { } scaling ? $", {scaling.Describe()}" : "")}, RMSNorm eps {c.RmsNormEps:G}"));
            if (c.Vision is { } v && model.ImageProcessor is { } processor)
            {
                stdout.WriteLine(string.Create(culture,
                    $"vision        {v.Depth} × (width {v.EmbedDim}, MLP {v.MlpDim}, {v.NumHeads} heads of {v.HeadDim}), {v.PatchSize}px patches merged {v.SpatialMergeSize}x{v.SpatialMergeSize}; pictures {processor.MinPixels:N0} to {processor.MaxPixels:N0} pixels"));
            }
            EmbeddingConfig e = model.EmbeddingConfig;
            stdout.WriteLine(e.Unsupported is string why ? $"embeddings    not computed: {why}"
                : $"embeddings    {EmbeddingPoolings.NameOf(e.Pooling)} pooling{string.Concat(e.Dense.Select(d => $", Dense {d.InFeatures} → {d.OutFeatures}"))}{(e.Normalize ? ", normalized" : "")}{(e.Bidirectional ? ", bidirectional attention" : "")} ({(e.IsDefaultPooling ? "the default" : e.Source)})");
            if (e.Prompts.Prompts.Count > 0)
            {
                stdout.WriteLine($"              prompts {string.Join(", ", e.Prompts.Prompts.Keys.Order(StringComparer.Ordinal))}{(e.Prompts.DefaultName is string d ? $" (default {d})" : "")}");
            }

            foreach (Lora.LoraAdapter adapter in model.Adapters)
            {
                stdout.WriteLine($"LoRA          {Path.GetFullPath(adapter.Path)} ({adapter.Describe()})");
            }

            stdout.WriteLine($"backend       {model.Placement} ({VectorText(model)})");
            stdout.WriteLine($"cpu           {CpuIdentity.Describe()}");
        }

        return 0;
    }

    /// <summary>Width of the SIMD vectors the kernels use; 0 for the scalar path.</summary>
    internal static int VectorBits(IBackend backend) =>
        backend is CpuBackend { KernelPath: not KernelPath.Scalar } cpu ? KernelPaths.Lanes(cpu.KernelPath) * 32 : 0;

    /// <summary>"512-bit vectors", or "no SIMD".</summary>
    internal static string VectorText(Qwen2Model model) => model.OffloadBackend is Gpu.VulkanBackend gpu
        ? $"{VectorText(model.Backend)}; {FormatBytes(gpu.AllocatedBytes)} of device memory in use"
        : VectorText(model.Backend);

    internal static string VectorText(IBackend backend) =>
        backend is Gpu.VulkanBackend gpu ? $"{FormatBytes(gpu.AllocatedBytes)} of device memory in use"
        : VectorBits(backend) is int bits and > 0 ? $"{bits}-bit vectors" : "no SIMD";

    internal static string FormatBytes(long bytes) => bytes switch
    {
        >= 1L << 30 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 30):F2} GiB"),
        >= 1L << 20 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 20):F1} MiB"),
        >= 1L << 10 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1024.0:F1} KiB"),
        _ => $"{bytes} B",
    };

    private static string FormatCount(long count) => count switch
    {
        >= 1_000_000_000 => string.Create(CultureInfo.InvariantCulture, $"{count / 1e9:F2} B"),
        >= 1_000_000 => string.Create(CultureInfo.InvariantCulture, $"{count / 1e6:F1} M"),
        >= 1_000 => string.Create(CultureInfo.InvariantCulture, $"{count / 1e3:F1} K"),
        _ => count.ToString(CultureInfo.InvariantCulture),
    };
}
