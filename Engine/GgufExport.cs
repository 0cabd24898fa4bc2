using System.Text.Json;
using QwenSharp.Backend;
using QwenSharp.Formats;
using QwenSharp.Formats.Gguf;
using QwenSharp.Qwen2;
using QwenSharp.Tokenization;

namespace QwenSharp;

/// <summary>
/// A Hugging Face model folder as one GGUF file, laid out as llama.cpp's converter lays it out, so llama.cpp (and
/// Ollama, LM Studio) load it: its tensor names, ggml's dimension order, the hyperparameters under
/// <c>{arch}.*</c>, the tokenizer under <c>tokenizer.ggml.*</c>, vectors in F32, and for a llama model the q and k
/// rows reordered for its interleaved RoPE.
/// </summary>
public static class GgufExport
{
    /// <summary>How one tensor is stored in the file: its GGUF type and bytes (row-major, rows as in the folder).</summary>
    public delegate (GgmlType Type, byte[] Data) TensorEncoder(string ggufName, TensorView tensor);

    /// <summary>
    /// Writes the folder's model to <paramref name="outPath"/> with matrices in <paramref name="type"/> (null: as stored).
    /// A matrix whose rows are not whole blocks of a quantized type takes llama.cpp's fallback (<see cref="QuantizationFallback"/>:
    /// Q5_0 for Q4_K, Q8_0 for Q6_K), or keeps its stored type where no quantized type fits.
    /// </summary>
    public static void Write(string modelDirectory, string outPath, DType? type = null)
    {
        if (type is DType pure)
        {
            Write(modelDirectory, outPath, QuantizationMix.Pure(pure));
        }
        else
        {
            Write(modelDirectory, outPath, (_, tensor) => Encode(tensor, null));
        }
    }

    /// <summary>
    /// Writes the folder's model with each matrix in the type <paramref name="mix"/> picks for it (llama-quantize's Q4_K_M,
    /// say), quantized with the weights of the mix's importance matrix where it has an entry for the matrix (llama-quantize's
    /// <c>--imatrix</c>; its <c>quantize.imatrix.*</c> keys then go into the file).
    /// </summary>
    public static IReadOnlyList<string> Write(string modelDirectory, string outPath, QuantizationMix mix, GgufSplitLimit? split = null)
    {
        ArgumentNullException.ThrowIfNull(mix);
        Qwen2Config config = Qwen2Config.Load(Path.Combine(modelDirectory, Qwen2Config.FileName));
        return Write(modelDirectory, outPath, (ggufName, tensor) => EncodeAs(tensor, TypeOf(mix, config, ggufName, tensor), Weights(mix, ggufName, tensor)), mix.FileType, mix.Importance, split);
    }

    /// <summary>The importance weights of a matrix (null for a vector, or where the mix has no importance matrix or it no entry for the matrix).</summary>
    private static float[]? Weights(QuantizationMix? mix, string ggufName, TensorView tensor) =>
        mix is null || tensor.Shape.Length != 2 ? null : mix.ImportanceOf(ggufName, tensor.Shape[1]);

    /// <summary>
    /// As <see cref="Write(string, string, QuantizationMix)"/> (null: as stored), with LoRA adapters merged into the weights
    /// they change (W + Σ scale · B · A in f32, then stored in the mix's type, else the weight's stored type, as PEFT's
    /// merge_and_unload and llama.cpp's export-lora do): one file that carries the fine-tuning. The adapters are checked
    /// against the model first.
    /// </summary>
    public static IReadOnlyList<string> Write(string modelDirectory, string outPath, QuantizationMix? mix, IReadOnlyList<Lora.LoraAdapter> adapters, GgufSplitLimit? split = null)
    {
        ArgumentNullException.ThrowIfNull(adapters);
        Qwen2Config config = Qwen2Config.Load(Path.Combine(modelDirectory, Qwen2Config.FileName));
        Lora.LoraMerge.Check(adapters, config);
        return Write(modelDirectory, outPath, (ggufName, tensor) =>
        {
            DType target = mix is null ? (tensor.Shape.Length == 1 ? DType.F32 : tensor.DType) : TypeOf(mix, config, ggufName, tensor);
            float[]? weights = Weights(mix, ggufName, tensor);
            if (Lora.LoraMerge.Merged(adapters, config, tensor.Name, tensor) is not float[] merged)
            {
                return EncodeAs(tensor, target, weights);
            }

            unsafe
            {
                fixed (float* values = merged)
                {
                    return EncodeAs(tensor with { DType = DType.F32, Data = (nint)values }, target, weights);
                }
            }
        }, mix?.FileType, mix?.Importance, split);
    }

    /// <summary>A vector in F32 (llama.cpp adds only F32 biases and norms); a matrix in what the mix picks for it.</summary>
    private static DType TypeOf(QuantizationMix mix, Qwen2Config config, string ggufName, TensorView tensor) =>
        tensor.Shape.Length == 1 ? DType.F32 : mix.TypeOf(ggufName, tensor.Shape[^1], tensor.DType, config.QuantizationShape);

    /// <summary>
    /// Writes the folder's model with each tensor stored as <paramref name="encode"/> says (and llama.cpp's
    /// <c>general.file_type</c>, where given, and the keys of an importance matrix the encoder quantized with), in one file or
    /// split across files as <paramref name="split"/> says (<see cref="GgufWriter.WriteNew(string, GgufSplitLimit?)"/>).
    /// Returns the paths written.
    /// </summary>
    public static IReadOnlyList<string> Write(string modelDirectory, string outPath, TensorEncoder encode, uint? fileType = null, ImportanceMatrix? importance = null,
        GgufSplitLimit? split = null)
    {
        ArgumentNullException.ThrowIfNull(encode);
        Qwen2Config config = Qwen2Config.Load(Path.Combine(modelDirectory, Qwen2Config.FileName));
        if (config.IsSequenceClassifier)
        {
            // llama.cpp's qwen2 and llama have an LM head, not a score head: the file would be a model that generates nonsense.
            throw new NotSupportedException($"{Path.Combine(modelDirectory, Qwen2Config.FileName)}: a {config.Architecture} has a score head ({ClassifierHead.TensorName}), which a GGUF file of a {config.ModelType} model has no place for; classify from the folder");
        }

        string arch = config.ModelType;
        var writer = new GgufWriter()
            .Add("general.architecture", arch)
            .Add("general.name", Path.GetFileName(Path.GetFullPath(modelDirectory).TrimEnd(Path.DirectorySeparatorChar)))
            .Add($"{arch}.context_length", (uint)config.MaxPositionEmbeddings)
            .Add($"{arch}.embedding_length", (uint)config.HiddenSize)
            .Add($"{arch}.feed_forward_length", (uint)config.IntermediateSize)
            .Add($"{arch}.block_count", (uint)config.NumHiddenLayers)
            .Add($"{arch}.attention.head_count", (uint)config.NumAttentionHeads)
            .Add($"{arch}.attention.head_count_kv", (uint)config.NumKeyValueHeads)
            .Add($"{arch}.attention.layer_norm_rms_epsilon", (float)config.RmsNormEps)
            .Add($"{arch}.rope.freq_base", (float)config.RopeTheta);
        if (fileType is uint ftype)
        {
            writer.Add("general.file_type", ftype);
        }

        importance?.AddQuantizeKeys(writer);

        if (config.HeadDim != config.HiddenSize / config.NumAttentionHeads)
        {
            writer.Add($"{arch}.attention.key_length", (uint)config.HeadDim).Add($"{arch}.attention.value_length", (uint)config.HeadDim);
        }

        // A sentence-transformers folder's pooling, and bidirectional attention, go with the file, as llama.cpp's converter writes them.
        EmbeddingConfig embedding = EmbeddingConfig.LoadOrDefault(modelDirectory);
        if (embedding.Dense.Count > 0)
        {
            // llama.cpp's qwen2 has no place for one: the file's embeddings would silently lose the module.
            throw new NotSupportedException($"{embedding.Dense[0].Source}: a GGUF file of a qwen2 model has no place for a Dense module, so its embeddings would differ from the folder's; embed from the folder, or leave the module out of modules.json to export the model without it");
        }

        if (embedding.GgufPoolingType is uint pooling)
        {
            writer.Add($"{arch}.pooling_type", pooling);
        }

        if (!config.IsCausal)
        {
            writer.Add($"{arch}.attention.causal", false);
        }

        AddRopeScaling(writer, config);

        if (File.Exists(Path.Combine(modelDirectory, "tokenizer.json")))
        {
            AddTokenizer(writer, modelDirectory, config);
        }
        else if (config.EosTokenIds.Count > 0)
        {
            writer.Add("tokenizer.ggml.eos_token_id", (uint)config.EosTokenIds[0]);
        }

        using SafeTensorsCheckpoint checkpoint = SafeTensorsCheckpoint.Open(modelDirectory);
        foreach (string name in checkpoint.TensorNames.Order(StringComparer.Ordinal))
        {
            if (name == "lm_head.weight" && config.TieWordEmbeddings)
            {
                continue;
            }

            if (!checkpoint.TryGetView(name, out TensorView? tensor))
            {
                continue;
            }

            string ggufName = GgufCheckpoint.GgufName(name);
            writer.AddTensor(ggufName, tensor.Shape, () =>
            {
                // Encoded as the file is written, one tensor at a time.
                (GgmlType stored, byte[] data) = encode(ggufName, tensor);
                if (arch == "llama" && IsRopeProjection(ggufName))
                {
                    data = PermuteForInterleavedRope(data, tensor.Shape[0], ggufName.Contains(".attn_q.", StringComparison.Ordinal) ? config.NumAttentionHeads : config.NumKeyValueHeads);
                }

                return (stored, data);
            });
        }

        return writer.WriteNew(outPath, split);
    }

    /// <summary>
    /// A RoPE scaling as llama.cpp's converter writes it: <c>rope.scaling.type</c>, <c>.factor</c> and (YaRN)
    /// <c>.original_context_length</c>, with <c>.attn_factor</c> where the config's attention factor is not YaRN's own;
    /// Llama 3.1's divisors as the <c>rope_freqs.weight</c> tensor. What llama.cpp cannot be told is refused by name.
    /// </summary>
    private static void AddRopeScaling(GgufWriter writer, Qwen2Config config)
    {
        string prefix = $"{config.ModelType}.rope.scaling";
        switch (config.RopeScaling)
        {
            case null:
                return;
            case { Kind: RopeScalingKind.Linear } linear:
                writer.Add($"{prefix}.type", "linear").Add($"{prefix}.factor", (float)linear.Factor);
                return;
            case { Kind: RopeScalingKind.Yarn } yarn:
                if (yarn.BetaFast != 32 || yarn.BetaSlow != 1 || !yarn.Truncate)
                {
                    throw new NotSupportedException($"{Qwen2Config.FileName}: a YaRN rope_scaling with beta_fast {yarn.BetaFast}, beta_slow {yarn.BetaSlow}, truncate {yarn.Truncate} cannot be written to GGUF (llama.cpp's {config.ModelType} runs 32, 1, true)");
                }

                writer.Add($"{prefix}.type", "yarn").Add($"{prefix}.factor", (float)yarn.Factor)
                    .Add($"{prefix}.original_context_length", (uint)yarn.OriginalContext);
                double own = RopeScaling.YarnAttentionFactor(yarn.Factor);
                if (Math.Abs(yarn.AttentionFactor - own) > 1e-12)
                {
                    writer.Add($"{prefix}.attn_factor", (float)(yarn.AttentionFactor / own));
                }

                return;
            default:
                float[] divisors = [.. config.RopeScaling.Divisors.Select(d => (float)d)];
                writer.AddTensor(GgufRopeScaling.DivisorsTensor, GgmlType.F32, [divisors.Length], System.Runtime.InteropServices.MemoryMarshal.AsBytes(divisors.AsSpan()).ToArray());
                return;
        }
    }

    /// <summary>Vectors in F32 (llama.cpp adds only F32 biases); matrices in <paramref name="type"/>, or its fallback where their rows are not whole blocks of it.</summary>
    public static (GgmlType Type, byte[] Data) Encode(TensorView tensor, DType? type)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        return EncodeAs(tensor, tensor.Shape.Length == 1 ? DType.F32 : QuantizationFallback.For(type ?? tensor.DType, tensor.DType, tensor.Shape[^1]));
    }

    /// <summary>
    /// The tensor's values as <paramref name="target"/> (its own bytes where it is stored so); a matrix with
    /// <paramref name="importance"/> quantized row by row with those weights (<see cref="Numerics.ImportanceQuantizer"/>).
    /// </summary>
    private static (GgmlType Type, byte[] Data) EncodeAs(TensorView tensor, DType target, float[]? importance = null)
    {
        if (target == tensor.DType)
        {
            return (GgmlTypes.Of(target), tensor.Bytes.ToArray());
        }

        if (importance is null || !Numerics.ImportanceQuantizer.Weighs(target))
        {
            return (GgmlTypes.Of(target), TensorValues.FromSingle(TensorValues.ToSingle(tensor), target));
        }

        byte[] data = new byte[DTypes.ByteLength(target, tensor.ElementCount)];
        TensorValues.RowsAs(tensor, target, data, importance);
        return (GgmlTypes.Of(target), data);
    }

    /// <summary>
    /// The tokenizer keys llama.cpp's converter writes: every token by id with its type (control for special added
    /// tokens, user-defined for the others, byte for &lt;0x..&gt;, unused for the padding up to the embedding's rows),
    /// the merges, BOS/EOS/padding ids, add_bos_token and the chat template. Byte-level BPE is "gpt2" with the
    /// pre-tokenizer named by its split; a sentencepiece-style BPE is "llama", scored by merge order.
    /// </summary>
    private static void AddTokenizer(GgufWriter writer, string directory, Qwen2Config config)
    {
        string path = Path.Combine(directory, "tokenizer.json");
        using JsonDocument json = JsonDocument.Parse(File.ReadAllBytes(path));
        JsonElement root = json.RootElement, model = root.GetProperty("model");
        var byId = new SortedDictionary<int, (string Token, int Type)>();
        foreach (JsonProperty entry in model.GetProperty("vocab").EnumerateObject())
        {
            bool isByte = entry.Name.Length == 6 && entry.Name.StartsWith("<0x", StringComparison.Ordinal) && entry.Name.EndsWith('>');
            byId[entry.Value.GetInt32()] = (entry.Name, isByte ? 6 : GgufVocabulary.Normal);
        }

        if (root.TryGetProperty("added_tokens", out JsonElement addedTokens))
        {
            foreach (JsonElement added in addedTokens.EnumerateArray())
            {
                bool special = added.TryGetProperty("special", out JsonElement s) && s.GetBoolean();
                byId[added.GetProperty("id").GetInt32()] = (added.GetProperty("content").GetString()!, special ? GgufVocabulary.Control : GgufVocabulary.UserDefined);
            }
        }

        int tokens = Math.Max(config.VocabSize, byId.Count == 0 ? 0 : byId.Keys.Max() + 1);
        for (int id = 0; id < tokens; id++)
        {
            byId.TryAdd(id, ($"[PAD{id}]", GgufVocabulary.Unused));
        }

        string[] merges = model.TryGetProperty("merges", out JsonElement m)
            ? [.. m.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.String ? e.GetString()! : $"{e[0].GetString()} {e[1].GetString()}")]
            : [];
        string decoder = root.TryGetProperty("decoder", out JsonElement d) && d.TryGetProperty("type", out JsonElement dt) ? dt.GetString() ?? "" : "";
        if (decoder == "ByteLevel")
        {
            writer.Add("tokenizer.ggml.model", "gpt2").Add("tokenizer.ggml.pre", PreTokenizerName(root, path));
            writer.Add("tokenizer.ggml.tokens", [.. byId.Values.Select(t => t.Token)]);
            writer.Add("tokenizer.ggml.token_type", [.. byId.Values.Select(t => t.Type)]);
            writer.Add("tokenizer.ggml.merges", merges);
        }
        else
        {
            // Sentencepiece-style BPE: llama.cpp merges the pair whose result scores highest, so earlier merges score higher.
            var rank = new Dictionary<string, int>(StringComparer.Ordinal);
            for (int i = 0; i < merges.Length; i++)
            {
                rank.TryAdd(merges[i].Replace(" ", "", StringComparison.Ordinal), i);
            }

            writer.Add("tokenizer.ggml.model", "llama");
            writer.Add("tokenizer.ggml.tokens", [.. byId.Values.Select(t => t.Token)]);
            writer.Add("tokenizer.ggml.scores", [.. byId.Values.Select(t => rank.TryGetValue(t.Token, out int r) ? -(float)r : 0f)]);
            writer.Add("tokenizer.ggml.token_type", [.. byId.Values.Select(t => t.Type)]);
        }

        string configPath = Path.Combine(directory, "tokenizer_config.json");
        if (!File.Exists(configPath))
        {
            return;
        }

        using JsonDocument tokenizerConfig = JsonDocument.Parse(File.ReadAllBytes(configPath));
        JsonElement settings = tokenizerConfig.RootElement;
        var idOf = byId.Where(t => t.Value.Type != GgufVocabulary.Unused).GroupBy(t => t.Value.Token).ToDictionary(g => g.Key, g => g.First().Key, StringComparer.Ordinal);
        foreach ((string field, string key) in new[] { ("eos_token", "eos"), ("bos_token", "bos"), ("pad_token", "padding"), ("unk_token", "unknown") })
        {
            string? text = settings.TryGetProperty(field, out JsonElement token) ? token.ValueKind switch
            {
                JsonValueKind.String => token.GetString(),
                JsonValueKind.Object when token.TryGetProperty("content", out JsonElement content) => content.GetString(),
                _ => null,
            } : null;
            if (text is not null && idOf.TryGetValue(text, out int id))
            {
                writer.Add($"tokenizer.ggml.{key}_token_id", (uint)id);
            }
        }

        if (settings.TryGetProperty("add_bos_token", out JsonElement addBos) && addBos.ValueKind is JsonValueKind.True or JsonValueKind.False)
        {
            writer.Add("tokenizer.ggml.add_bos_token", addBos.GetBoolean());
        }

        if (settings.TryGetProperty("chat_template", out JsonElement template) && template.ValueKind == JsonValueKind.String)
        {
            writer.Add("tokenizer.chat_template", template.GetString()!);
        }
    }

    /// <summary>The tokenizer.ggml.pre name of a byte-level tokenizer.json's split, refused when llama.cpp has none.</summary>
    private static string PreTokenizerName(JsonElement root, string path)
    {
        if (!root.TryGetProperty("pre_tokenizer", out JsonElement pre) || pre.ValueKind != JsonValueKind.Object)
        {
            return "default";
        }

        if (pre.GetProperty("type").GetString() == "ByteLevel")
        {
            return "default";
        }

        string? regex = pre.TryGetProperty("pretokenizers", out JsonElement list)
            ? list.EnumerateArray().Where(p => p.GetProperty("type").GetString() == "Split")
                .Select(p => p.GetProperty("pattern").TryGetProperty("Regex", out JsonElement r) ? r.GetString() : null).FirstOrDefault()
            : null;
        return (regex is null ? null : GgufPreTokenizers.NameOf(regex))
            ?? throw new NotSupportedException($"{path}: pre_tokenizer's split has no llama.cpp name (QwenSharp writes qwen2, llama-bpe and default)");
    }

    private static bool IsRopeProjection(string ggufName) =>
        ggufName.Contains(".attn_q.", StringComparison.Ordinal) || ggufName.Contains(".attn_k.", StringComparison.Ordinal);

    /// <summary>llama.cpp's converter's <c>permute</c>: Hugging Face row t * d/2 + j of each head goes to row 2j + t.</summary>
    private static byte[] PermuteForInterleavedRope(byte[] data, long rows, int heads)
    {
        long rowBytes = data.Length / rows, headDim = rows / heads, half = headDim / 2;
        var result = new byte[data.Length];
        for (long h = 0; h < heads; h++)
        {
            for (long t = 0; t < 2; t++)
            {
                for (long j = 0; j < half; j++)
                {
                    long from = (h * headDim) + (t * half) + j, to = (h * headDim) + (2 * j) + t;
                    Array.Copy(data, from * rowBytes, result, to * rowBytes, rowBytes);
                }
            }
        }

        return result;
    }
}
