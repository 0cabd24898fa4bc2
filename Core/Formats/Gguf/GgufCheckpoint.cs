using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using QwenSharp.Errors;
using QwenSharp.Memory;
using QwenSharp.Qwen2;

namespace QwenSharp.Formats.Gguf;

/// <summary>
/// A model in one GGUF file, as llama.cpp writes it: the config from the <c>qwen2.*</c> / <c>llama.*</c> keys, the
/// end-of-generation ids from <c>tokenizer.ggml.*</c>, and the tensors under the Hugging Face names the model binds
/// (<c>model.layers.0.self_attn.q_proj.weight</c> is GGUF's <c>blk.0.attn_q.weight</c>), zero-copy from the mapping.
/// </summary>
public sealed unsafe partial class GgufCheckpoint : ITensorSource
{
    private readonly GgufFile _file;
    private readonly WeightArena _owned = new();
    private readonly Dictionary<string, TensorView> _converted = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _conversions = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _restored = new(StringComparer.Ordinal);

    /// <summary>Where the bytes this checkpoint made for views begin (<see cref="Release"/> frees them).</summary>
    private readonly HashSet<nint> _made = [];
    private readonly bool _interleavedRope;

    private GgufCheckpoint(GgufFile file, Qwen2Config config, GenerationConfig generation, bool interleavedRope)
    {
        _file = file;
        Config = config;
        GenerationConfig = generation;
        _interleavedRope = interleavedRope;
    }

    public Qwen2Config Config { get; }

    public GenerationConfig GenerationConfig { get; }

    /// <summary>How the file's text embeddings are pooled (<c>{arch}.pooling_type</c>).</summary>
    public EmbeddingConfig EmbeddingConfig { get; private init; } = EmbeddingConfig.Default;

    public GgufFile File => _file;

    public string Description => _file.FileName;

    public IEnumerable<string> TensorNames => _file.Tensors.Keys;

    /// <summary>Refuses llama-imatrix's file given where a model goes (both are GGUF), by what it is.</summary>
    public static void RefuseImportanceMatrix(GgufFile file)
    {
        ArgumentNullException.ThrowIfNull(file);
        if (GgufMetadata.Text(file.Metadata, "general.type", file.FileName) == "imatrix")
        {
            QwenThrow.InvalidData($"{file.FileName} is an importance matrix (llama-imatrix's), not a model: give it to quantize --imatrix");
        }
    }

    public static GgufCheckpoint Open(string path)
    {
        GgufFile file = GgufFile.Open(path);
        try
        {
            string name = file.FileName;
            RefuseImportanceMatrix(file);
            string arch = GgufMetadata.Text(file.Metadata, "general.architecture", name)
                ?? throw new InvalidDataException($"{name}: no general.architecture (expected \"qwen2\" or \"llama\")");
            if (arch is not ("qwen2" or "llama"))
            {
                QwenThrow.NotSupported($"{name}: general.architecture '{arch}' is not supported (QwenSharp runs \"qwen2\" and \"llama\" models)");
            }

            Qwen2Config config = ReadConfig(file, arch);
            var generation = new GenerationConfig
            {
                EosTokenIds = [.. new[] { "eos", "eot", "eom" }
                    .Select(kind => GgufMetadata.Integer(file.Metadata, $"tokenizer.ggml.{kind}_token_id", name))
                    .OfType<long>().Select(id => (int)id).Distinct()],
                BosTokenId = GgufMetadata.Integer(file.Metadata, "tokenizer.ggml.bos_token_id", name) is long bos ? (int)bos : null,
            };

            // llama.cpp's converter reorders the rows of a llama model's q and k projections for its interleaved RoPE;
            // QwenSharp rotates halves (NeoX, as Hugging Face), so those rows are put back at load. Qwen2 is stored as is.
            string poolingKey = $"{arch}.pooling_type";
            EmbeddingConfig embedding = EmbeddingConfig.FromGguf(GgufMetadata.Integer(file.Metadata, poolingKey, name), $"{name}: {poolingKey}");
            return new GgufCheckpoint(file, config, generation, interleavedRope: arch == "llama") { EmbeddingConfig = embedding };
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    public bool TryGetView(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out TensorView? view)
    {
        string ggufName = GgufName(name);
        if (!_file.Tensors.TryGetValue(ggufName, out GgufTensorInfo? info))
        {
            view = null;
            return false;
        }

        // Matrices of a type with kernels stay as stored (mapped, no copy); quantized vectors (not seen in practice) are converted.
        if (GgmlTypes.TryGetDType(info.Type, out DType dtype) && (info.Shape.Length == 2 || !DTypes.IsQuantized(dtype) || dtype == DType.Q8_0))
        {
            view = new TensorView(ggufName, Description, dtype, info.Shape, _file.DataOf(info));
        }
        else if (GgmlDequantize.Supports(info.Type))
        {
            view = Converted(ggufName, info);
        }
        else
        {
            QwenThrow.NotSupported($"{Description}: tensor '{ggufName}' is {GgmlTypes.Name(info.Type)}; QwenSharp reads F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ4_NL and IQ4_XS tensors");
            view = null;
            return false;
        }

        if (_interleavedRope && RopeProjection().Match(ggufName) is { Success: true } match)
        {
            int heads = match.Groups[1].Value == "q" ? Config.NumAttentionHeads : Config.NumKeyValueHeads;
            view = UndoRopePermutation(view, heads);
        }

        return true;
    }

    /// <summary>The GGUF name of a Hugging Face tensor name (names it does not know pass through).</summary>
    public static string GgufName(string name)
    {
        switch (name)
        {
            case "model.embed_tokens.weight": return "token_embd.weight";
            case "model.norm.weight": return "output_norm.weight";
            case "lm_head.weight": return "output.weight";
        }

        Match layer = LayerTensor().Match(name);
        if (!layer.Success)
        {
            return name;
        }

        string part = layer.Groups[2].Value switch
        {
            "input_layernorm" => "attn_norm",
            "self_attn.q_proj" => "attn_q",
            "self_attn.k_proj" => "attn_k",
            "self_attn.v_proj" => "attn_v",
            "self_attn.o_proj" => "attn_output",
            "post_attention_layernorm" => "ffn_norm",
            "mlp.gate_proj" => "ffn_gate",
            "mlp.up_proj" => "ffn_up",
            "mlp.down_proj" => "ffn_down",
            string other => other,
        };
        return $"blk.{layer.Groups[1].Value}.{part}.{layer.Groups[3].Value}";
    }

    private static Qwen2Config ReadConfig(GgufFile file, string arch)
    {
        string name = file.FileName;
        IReadOnlyDictionary<string, object> m = file.Metadata;
        int? Int(string key) => GgufMetadata.Integer(m, $"{arch}.{key}", name) is long v ? checked((int)v) : null;

        if (!file.Tensors.TryGetValue("token_embd.weight", out GgufTensorInfo? embedding) || embedding.Dimensions.Length != 2)
        {
            QwenThrow.InvalidData($"{name}: no 2-D tensor 'token_embd.weight' (the token embeddings)");
        }

        var json = new ConfigJson
        {
            ModelType = arch,
            Architectures = [arch == "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM"],
            HiddenSize = Int("embedding_length") ?? Missing($"{arch}.embedding_length"),
            IntermediateSize = Int("feed_forward_length") ?? Missing($"{arch}.feed_forward_length"),
            NumHiddenLayers = Int("block_count") ?? Missing($"{arch}.block_count"),
            NumAttentionHeads = Int("attention.head_count") ?? Missing($"{arch}.attention.head_count"),
            NumKeyValueHeads = Int("attention.head_count_kv"),
            HeadDim = Int("attention.key_length"),
            VocabSize = checked((int)embedding!.Dimensions[1]),
            MaxPositionEmbeddings = Int("context_length") ?? Missing($"{arch}.context_length"),
            RmsNormEps = GgufMetadata.Number(m, $"{arch}.attention.layer_norm_rms_epsilon", name) ?? Missing($"{arch}.attention.layer_norm_rms_epsilon"),
            RopeTheta = GgufMetadata.Number(m, $"{arch}.rope.freq_base", name),
            TieWordEmbeddings = !file.Tensors.ContainsKey("output.weight"),
            IsCausal = GgufMetadata.Flag(m, $"{arch}.attention.causal", name),
            AttentionBias = arch == "llama" && file.Tensors.ContainsKey("blk.0.attn_q.bias"),
        };
        Qwen2Config config = Qwen2Config.FromJson(json, name);
        return config with { RopeScaling = GgufRopeScaling.Read(file, arch, config.HeadDim, config.MaxPositionEmbeddings) };

        int Missing(string key)
        {
            QwenThrow.InvalidData($"{name}: missing metadata key '{key}'");
            return 0;
        }
    }

    /// <summary>The file's tensors by the type stored there (ggml's names: "Q4_K", "IQ3_S"), the most common first.</summary>
    public IReadOnlyList<(string Type, int Count)> StoredTypes =>
        [.. _file.Tensors.Values.GroupBy(t => GgmlTypes.Name(t.Type)).OrderByDescending(g => g.Count()).ThenBy(g => g.Key, StringComparer.Ordinal).Select(g => (g.Key, g.Count()))];

    /// <summary>Tensors dequantized and quantized again so far, by stored type: "IQ2_XS -> Q8_0" and how many.</summary>
    public IReadOnlyDictionary<string, int> Conversions => _conversions;

    /// <summary>Matrices stored again at load as a type that holds every value, by stored type: "IQ3_S -> Q6_K" and how many.</summary>
    public IReadOnlyDictionary<string, int> Restored => _restored;

    /// <summary>
    /// The file's matrices that <paramref name="multipliesAs"/> (a backend's answer for a stored type and shape, rows then
    /// columns) multiplies as a wider type that holds every value (<see cref="Widening"/>: IQ4_NL as Q8_0, in IQ4_XS, Q2_K
    /// and Q3_K files, on a CPU without vpdpbusd) at nearly twice their bytes, by type: "IQ4_NL -> Q8_0" and how many, for
    /// the load note. (Q5_0, Q4_K_M's everyday fallback, widens to Q8_0 on some CPUs too, and goes unmentioned.)
    /// </summary>
    public IReadOnlyDictionary<string, int> Widenings(Func<DType, long, long, DType> multipliesAs)
    {
        ArgumentNullException.ThrowIfNull(multipliesAs);
        return _file.Tensors.Values
            .Where(t => t.Shape.Length == 2)
            .Select(t => GgmlTypes.TryGetDType(t.Type, out DType stored) && stored != DType.Q5_0 ? (Stored: stored, As: multipliesAs(stored, t.Shape[0], t.Shape[1])) : default)
            .Where(w => w.Stored != w.As)
            .GroupBy(w => $"{DTypes.Name(w.Stored)} -> {DTypes.Name(w.As)}")
            .ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
    }

    /// <summary>
    /// A tensor of a block type QwenSharp has no kernels for (Q8_K, the 1-3-bit i-quants; quantized vectors), stored again
    /// once, row by row, in memory this checkpoint owns: IQ3_XXS, IQ3_S, IQ1_S and IQ1_M matrices as Q6_K, which holds
    /// every value (<see cref="Numerics.IqBlocks.ToQ6_K"/>); other matrices whose rows are whole 32-value blocks dequantized
    /// exactly and quantized as Q8_0 (the quantizer of <c>qwensharp quantize</c>; its error is a small fraction of the
    /// 2-6-bit code's own), the rest as F32.
    /// </summary>
    private TensorView Converted(string ggufName, GgufTensorInfo info)
    {
        if (_converted.TryGetValue(ggufName, out TensorView? done))
        {
            return done;
        }

        long[] shape = info.Shape;
        long columns = shape[^1], rows = shape.Aggregate(1L, (a, b) => a * b) / columns;
        Numerics.IqType? iq = GgmlDequantize.IqTypeOf(info.Type);
        bool exact = shape.Length == 2 && iq is Numerics.IqType fits && Numerics.IqBlocks.FitsQ6_K(fits);
        DType targetType = exact ? DType.Q6_K : shape.Length == 2 && columns % Numerics.Q8_0Blocks.BlockValues == 0 ? DType.Q8_0 : DType.F32;
        GgmlTypes.TryGetBlock(info.Type, out int blockValues, out int blockBytes);
        long rowIn = columns / blockValues * blockBytes, rowOut = DTypes.ByteLength(targetType, columns);
        byte* data = (byte*)_owned.Allocate(rows * rowOut);

        // Rows in parallel chunks (a Q8_K or i-quant matrix may be large): block for block into Q6_K, no values in between;
        // else each row's values, then quantized or copied.
        nint source = _file.DataOf(info), target = (nint)data;
        const int ChunkRows = 64;
        if (exact)
        {
            Parallel.For(0L, (rows + ChunkRows - 1) / ChunkRows, chunk =>
            {
                long first = chunk * ChunkRows, count = Math.Min(rows, first + ChunkRows) - first;
                Numerics.IqBlocks.ToQ6_K(iq!.Value, new ReadOnlySpan<byte>((byte*)source + (first * rowIn), checked((int)(count * rowIn))),
                    new Span<byte>((byte*)target + (first * rowOut), checked((int)(count * rowOut))));
            });
        }
        else
        {
            Parallel.For(0L, (rows + ChunkRows - 1) / ChunkRows, () => new float[columns], (chunk, _, values) =>
            {
                for (long r = chunk * ChunkRows; r < Math.Min(rows, (chunk + 1) * ChunkRows); r++)
                {
                    GgmlDequantize.Values(info.Type, new ReadOnlySpan<byte>((byte*)source + (r * rowIn), checked((int)rowIn)), values);
                    var destination = new Span<byte>((byte*)target + (r * rowOut), checked((int)rowOut));
                    if (targetType == DType.Q8_0)
                    {
                        Numerics.Q8_0Blocks.Quantize(values, destination);
                    }
                    else
                    {
                        MemoryMarshal.AsBytes(values.AsSpan()).CopyTo(destination);
                    }
                }

                return values;
            }, _ => { });
        }

        var view = new TensorView(ggufName, Description, targetType, shape, (nint)data);
        _converted[ggufName] = view;
        _made.Add((nint)data);
        Dictionary<string, int> counts = exact ? _restored : _conversions;
        string conversion = $"{GgmlTypes.Name(info.Type)} -> {DTypes.Name(targetType)}";
        counts[conversion] = counts.GetValueOrDefault(conversion) + 1;
        return view;
    }

    /// <summary>
    /// Puts back the rows llama.cpp's converter reordered (its <c>permute</c>): within each head, GGUF row 2j + t holds
    /// Hugging Face row t * d/2 + j. A row gather, so it is the same for every weight type.
    /// </summary>
    private TensorView UndoRopePermutation(TensorView view, int heads)
    {
        long rows = view.Shape[0], rowBytes = view.ByteLength / rows;
        long headDim = rows / heads, half = headDim / 2;
        byte* copy = (byte*)_owned.Allocate(view.ByteLength);
        byte* source = (byte*)view.Data;
        for (long h = 0; h < heads; h++)
        {
            for (long j = 0; j < half; j++)
            {
                for (long t = 0; t < 2; t++)
                {
                    long from = (h * headDim) + (2 * j) + t, to = (h * headDim) + (t * half) + j;
                    Buffer.MemoryCopy(source + (from * rowBytes), copy + (to * rowBytes), rowBytes, rowBytes);
                }
            }
        }

        _made.Add((nint)copy);
        return view with { Data = (nint)copy };
    }

    /// <summary>
    /// A matrix this checkpoint made at load (dequantized and stored again, widened, or its rows put back in order) goes
    /// back to its memory, and is made again if asked for; the file's own bytes stay.
    /// </summary>
    public bool Release(TensorView view)
    {
        ArgumentNullException.ThrowIfNull(view);
        if (!_made.Remove(view.Data))
        {
            return false;
        }

        foreach ((string name, TensorView converted) in _converted)
        {
            if (converted.Data == view.Data)
            {
                _converted.Remove(name);
                break;
            }
        }

        _owned.Free((void*)view.Data);
        return true;
    }

    /// <summary>A matrix of the file itself (not one this checkpoint made at load) lets its pages go from memory (<see cref="GgufFile.DropPages"/>).</summary>
    public bool DropPages(TensorView view)
    {
        ArgumentNullException.ThrowIfNull(view);
        return !_made.Contains(view.Data) && _file.DropPages(view.Data, view.ByteLength);
    }

    public void Dispose()
    {
        _owned.Dispose();
        _file.Dispose();
    }

    [GeneratedRegex(@"^model\.layers\.(\d+)\.(.+)\.(weight|bias)$")]
    private static partial Regex LayerTensor();

    [GeneratedRegex(@"^blk\.\d+\.attn_(q|k)\.(weight|bias)$")]
    private static partial Regex RopeProjection();
}
