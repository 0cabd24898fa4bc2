using System.Text.Json;
using QwenSharp.Backend;
using QwenSharp.Errors;
using QwenSharp.Formats;

namespace QwenSharp.Qwen2;

/// <summary>
/// The architecture of a Qwen2 (or Llama) model, from config.json, with config.json's own names.
/// Fields that change results but that QwenSharp does not implement (a dynamic RoPE scaling, a sliding window,
/// another activation) are rejected here instead of being ignored.
/// </summary>
public sealed record Qwen2Config
{
    public const string FileName = "config.json";

    /// <summary>"qwen2", "qwen2_vl" or "llama": the text models differ only in which projections carry a bias.</summary>
    public required string ModelType { get; init; }

    public required int HiddenSize { get; init; }

    public required int IntermediateSize { get; init; }

    public required int NumHiddenLayers { get; init; }

    public required int NumAttentionHeads { get; init; }

    public required int NumKeyValueHeads { get; init; }

    public required int HeadDim { get; init; }

    /// <summary>What llama-quantize's mixes read of the model (<see cref="Formats.QuantizationMix"/>).</summary>
    public Formats.ModelShape QuantizationShape => new(NumHiddenLayers, TieWordEmbeddings, NumAttentionHeads / Math.Max(1, NumKeyValueHeads));

    public required int VocabSize { get; init; }

    public required int MaxPositionEmbeddings { get; init; }

    public required double RmsNormEps { get; init; }

    public required double RopeTheta { get; init; }

    public required bool TieWordEmbeddings { get; init; }

    /// <summary>q_proj, k_proj and v_proj carry a bias: always in Qwen2, with <c>attention_bias</c> in Llama.</summary>
    public required bool QkvBias { get; init; }

    /// <summary>o_proj carries a bias: Llama with <c>attention_bias</c> only.</summary>
    public required bool OProjBias { get; init; }

    public int? BosTokenId { get; init; }

    public IReadOnlyList<int> EosTokenIds { get; init; } = [];

    public string? Architecture { get; init; }

    /// <summary>
    /// A transformers <c>*ForSequenceClassification</c> checkpoint (a reward model, a classifier, a reranker): a score head
    /// (<see cref="ClassifierHead"/>) where a causal model has its LM head, so it classifies texts and does not generate.
    /// </summary>
    public bool IsSequenceClassifier => Architecture?.EndsWith(SequenceClassification, StringComparison.Ordinal) == true;

    private const string SequenceClassification = "ForSequenceClassification";

    /// <summary>The ends of transformers' architecture names whose heads QwenSharp does not run.</summary>
    private static readonly string[] s_otherHeads = ["ForTokenClassification", "ForQuestionAnswering", "ForRewardModel", "ForProcessRewardModel"];

    /// <summary>torch_dtype as written (informational: the stored tensors' dtypes are what count).</summary>
    public string? TorchDtype { get; init; }

    /// <summary>
    /// Qwen2-VL's M-RoPE: how many of the head's d/2 rotary frequencies follow the temporal, height and width
    /// position (<c>rope_scaling.mrope_section</c>, e.g. [16, 24, 24]); null for plain RoPE.
    /// </summary>
    public IReadOnlyList<int>? MRopeSection { get; init; }

    /// <summary>
    /// <c>rope_scaling</c>'s linear, YaRN or Llama 3.1 stretch of the rotary frequencies (GGUF: <c>{arch}.rope.scaling.*</c>
    /// and <c>rope_freqs.weight</c>); null for plain RoPE.
    /// </summary>
    public RopeScaling? RopeScaling { get; init; }

    /// <summary>
    /// Whether the model was trained with causal attention: config.json's <c>is_causal</c> (false for gte-Qwen2-7B-instruct,
    /// as vLLM's <c>--hf-overrides</c> sets it), GGUF's <c>{arch}.attention.causal</c>; true when absent. Generation is
    /// causal regardless; embeddings follow it (<see cref="EmbeddingConfig.Bidirectional"/>).
    /// </summary>
    public bool IsCausal { get; init; } = true;

    /// <summary>The vision tower of a Qwen2-VL model; null for text-only models.</summary>
    public Qwen2VL.VisionConfig? Vision { get; init; }

    /// <summary>The <c>&lt;|image_pad|&gt;</c> id whose embeddings the vision features replace (Qwen2-VL).</summary>
    public int? ImageTokenId { get; init; }

    /// <summary>The <c>&lt;|vision_start|&gt;</c> id that opens each picture in a prompt (Qwen2-VL).</summary>
    public int? VisionStartTokenId { get; init; }

    /// <summary>Width of all query heads together: num_attention_heads * head_dim.</summary>
    public int QDim => NumAttentionHeads * HeadDim;

    /// <summary>Width of all key (or value) heads together: num_key_value_heads * head_dim.</summary>
    public int KvDim => NumKeyValueHeads * HeadDim;

    /// <summary>Query heads per key/value head (grouped-query attention).</summary>
    public int GroupSize => NumAttentionHeads / NumKeyValueHeads;

    public static Qwen2Config Load(string path) => FromJson(JsonFile.Read(path, ConfigJsonContext.Default.ConfigJson), Path.GetFileName(path));

    public static Qwen2Config Parse(string json, string fileName = FileName) =>
        FromJson(JsonFile.Parse(System.Text.Encoding.UTF8.GetBytes(json), fileName, ConfigJsonContext.Default.ConfigJson), fileName);

    internal static Qwen2Config FromJson(ConfigJson json, string file)
    {
        string modelType = json.ModelType ?? Fail<string>($"{file}: missing field 'model_type' (expected \"qwen2\", \"qwen2_vl\" or \"llama\")");
        bool isVision = modelType == "qwen2_vl";
        if (json.Architectures is [string head, ..] && s_otherHeads.FirstOrDefault(h => head.EndsWith(h, StringComparison.Ordinal)) is string other)
        {
            QwenThrow.NotSupported($"{file}: architectures names {head}, whose {other[3..]} head QwenSharp does not run (a ForCausalLM model generates, a {SequenceClassification} one classifies)");
        }
        bool isQwen2 = modelType == "qwen2" || isVision;
        if (!isQwen2 && modelType != "llama")
        {
            string hint = modelType == "qwen2_5_vl" ? " (Qwen2.5-VL's vision tower differs from Qwen2-VL's: window attention, RMSNorm, SwiGLU)" : "";
            QwenThrow.NotSupported($"{file}: model_type '{modelType}' is not supported{hint} (QwenSharp runs \"qwen2\", \"qwen2_vl\" and \"llama\" models)");
        }

        int hidden = Positive(json.HiddenSize, "hidden_size", file);
        int heads = Positive(json.NumAttentionHeads, "num_attention_heads", file);
        int kvHeads = json.NumKeyValueHeads is null ? heads : Positive(json.NumKeyValueHeads, "num_key_value_heads", file);
        if (heads % kvHeads != 0)
        {
            QwenThrow.InvalidData($"{file}: num_attention_heads {heads} is not a multiple of num_key_value_heads {kvHeads}");
        }

        int headDim;
        if (json.HeadDim is null)
        {
            if (hidden % heads != 0)
            {
                QwenThrow.InvalidData($"{file}: hidden_size {hidden} is not a multiple of num_attention_heads {heads}, and no head_dim is given");
            }

            headDim = hidden / heads;
        }
        else
        {
            headDim = Positive(json.HeadDim, "head_dim", file);
        }

        if (headDim % 2 != 0)
        {
            QwenThrow.InvalidData($"{file}: head_dim {headDim} is odd; rotary embeddings rotate pairs of dimensions");
        }

        string act = json.HiddenAct ?? "silu";
        if (act is not ("silu" or "swish"))
        {
            QwenThrow.NotSupported($"{file}: hidden_act '{act}' is not supported (the MLP is SwiGLU: silu)");
        }

        if (json.UseSlidingWindow == true)
        {
            QwenThrow.NotSupported($"{file}: use_sliding_window true is not supported (sliding-window attention would change the results)");
        }

        if (json.MlpBias == true)
        {
            QwenThrow.NotSupported($"{file}: mlp_bias true is not supported");
        }

        if (json.PartialRotaryFactor is double factor && factor != 1.0)
        {
            QwenThrow.NotSupported($"{file}: partial_rotary_factor {factor} is not supported (rotary embeddings over the whole head)");
        }

        (double ropeTheta, int[]? mropeSection, (string Field, string Type, JsonElement Value)? scalingJson) = ReadRope(json, file);
        if (mropeSection is not null)
        {
            if (!isVision)
            {
                QwenThrow.NotSupported($"{file}: rope_scaling with mrope_section belongs to Qwen2-VL (model_type qwen2_vl), not to model_type '{modelType}'");
            }

            if (mropeSection.Length != 3 || mropeSection.Any(s => s < 0) || mropeSection.Sum() != headDim / 2)
            {
                QwenThrow.InvalidData(
                    $"{file}: rope_scaling.mrope_section [{string.Join(", ", mropeSection)}] must be three counts (temporal, height, width) adding up to head_dim/2 = {headDim / 2}");
            }
        }
        else if (isVision)
        {
            QwenThrow.InvalidData($"{file}: model_type qwen2_vl needs rope_scaling with type \"mrope\" and its mrope_section");
        }

        // transformers' defaults for a missing field: 32768 in Qwen2Config, 2048 in LlamaConfig.
        int maxPositions = json.MaxPositionEmbeddings is null ? (isQwen2 ? 32768 : 2048) : Positive(json.MaxPositionEmbeddings, "max_position_embeddings", file);
        RopeScaling? scaling = null;
        if (scalingJson is var (scalingField, scalingType, scalingValue))
        {
            if (isVision)
            {
                QwenThrow.NotSupported($"{file}: {scalingField} type '{scalingType}' on a Qwen2-VL model is not supported (its M-RoPE is not scaled)");
            }

            scaling = RopeScalingJson.Read(scalingValue, scalingType, $"{file}: {scalingField}", headDim, ropeTheta, maxPositions);

            // YaRN stretches the trained context by its factor; Qwen2.5's model cards add rope_scaling alone (factor 4 over
            // 32768) and leave max_position_embeddings at 32768, so the context is the longer of the two, as vLLM takes it.
            if (scaling.Kind == RopeScalingKind.Yarn)
            {
                maxPositions = (int)Math.Min(int.MaxValue, Math.Max(maxPositions, Math.Floor(scaling.Factor * scaling.OriginalContext)));
            }
        }

        double eps = json.RmsNormEps ?? 1e-6;
        if (!(eps > 0))
        {
            QwenThrow.InvalidData($"{file}: rms_norm_eps {eps} must be positive");
        }

        return new Qwen2Config
        {
            ModelType = modelType,
            HiddenSize = hidden,
            IntermediateSize = Positive(json.IntermediateSize, "intermediate_size", file),
            NumHiddenLayers = Positive(json.NumHiddenLayers, "num_hidden_layers", file),
            NumAttentionHeads = heads,
            NumKeyValueHeads = kvHeads,
            HeadDim = headDim,
            VocabSize = Positive(json.VocabSize, "vocab_size", file),
            MaxPositionEmbeddings = maxPositions,
            RmsNormEps = eps,
            RopeTheta = ropeTheta,
            RopeScaling = scaling,
            TieWordEmbeddings = json.TieWordEmbeddings ?? false,
            IsCausal = json.IsCausal ?? true,
            QkvBias = isQwen2 || json.AttentionBias == true,
            OProjBias = !isQwen2 && json.AttentionBias == true,
            BosTokenId = json.BosTokenId is { Length: > 0 } bos ? bos[0] : null,
            EosTokenIds = json.EosTokenId ?? [],
            Architecture = json.Architectures is { Length: > 0 } arch ? arch[0] : null,
            TorchDtype = json.TorchDtype ?? json.Dtype,
            MRopeSection = mropeSection,
            Vision = isVision ? Qwen2VL.VisionConfig.FromJson(json.VisionConfig, hidden, file) : null,
            ImageTokenId = isVision ? json.ImageTokenId ?? Fail<int>($"{file}: missing field 'image_token_id' (Qwen2-VL)") : null,
            VisionStartTokenId = isVision ? json.VisionStartTokenId ?? Fail<int>($"{file}: missing field 'vision_start_token_id' (Qwen2-VL)") : null,
        };
    }

    /// <summary>
    /// rope_theta, from the top level or (transformers v5) from <c>rope_parameters</c>, Qwen2-VL's <c>mrope_section</c>,
    /// and a linear, YaRN or llama3 scaling's object (read once head_dim is known); any other RoPE scaling is refused,
    /// since it changes every position's rotation.
    /// </summary>
    private static (double Theta, int[]? MRopeSection, (string Field, string Type, JsonElement Value)? Scaling) ReadRope(ConfigJson json, string file)
    {
        double theta = json.RopeTheta ?? 10000.0;
        int[]? section = null;
        (string, string, JsonElement)? scaling = null;
        foreach (var (field, element) in new[] { ("rope_scaling", json.RopeScaling), ("rope_parameters", json.RopeParameters) })
        {
            if (element is not JsonElement value || value.ValueKind == JsonValueKind.Null)
            {
                continue;
            }

            if (value.ValueKind != JsonValueKind.Object)
            {
                QwenThrow.InvalidData($"{file}: {field} is a JSON {value.ValueKind}, expected an object or null");
            }

            string? type = null;
            if (value.TryGetProperty("rope_type", out JsonElement t) || value.TryGetProperty("type", out t))
            {
                type = t.ValueKind == JsonValueKind.String ? t.GetString() : t.GetRawText();
            }

            if (value.TryGetProperty("mrope_section", out JsonElement m) && m.ValueKind == JsonValueKind.Array)
            {
                section = [.. m.EnumerateArray().Select(e => e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int n)
                    ? n : Fail<int>($"{file}: {field}.mrope_section holds {e.GetRawText()}, expected integers"))];
            }

            if (type == "mrope" && section is null)
            {
                QwenThrow.InvalidData($"{file}: {field} type \"mrope\" needs an mrope_section list");
            }

            if (RopeScalingJson.IsScaling(type))
            {
                scaling = (field, type!, value);
            }
            else if (type is not (null or "default" or "mrope"))
            {
                string why = RopeScalingJson.Refusal(type) is string reason ? $": {reason}" : "";
                QwenThrow.NotSupported($"{file}: {field} with rope_type '{type}' is not supported{why} (QwenSharp runs plain RoPE and the linear, yarn and llama3 scalings)");
            }

            if (value.TryGetProperty("rope_theta", out JsonElement inner) && inner.ValueKind == JsonValueKind.Number)
            {
                theta = inner.GetDouble();
            }
        }

        if (!(theta > 0))
        {
            QwenThrow.InvalidData($"{file}: rope_theta {theta} must be positive");
        }

        return (theta, section, scaling);
    }

    /// <summary>A required positive integer field of <paramref name="file"/> (also vision_config's).</summary>
    internal static int Positive(int? value, string field, string file)
    {
        if (value is null)
        {
            QwenThrow.InvalidData($"{file}: missing required field '{field}'");
        }

        if (value <= 0)
        {
            QwenThrow.InvalidData($"{file}: {field} is {value}, expected a positive integer");
        }

        return value.Value;
    }

    private static T Fail<T>(string message)
    {
        QwenThrow.InvalidData(message);
        return default!;
    }
}
