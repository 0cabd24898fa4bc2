using System.Text.Json;
using System.Text.Json.Serialization;
using QwenSharp.Formats;

namespace QwenSharp.Qwen2;

/// <summary>config.json exactly as Hugging Face writes it; <see cref="Qwen2Config"/> is the validated form.</summary>
internal sealed class ConfigJson
{
    [JsonPropertyName("model_type")] public string? ModelType { get; set; }
    [JsonPropertyName("architectures")] public string[]? Architectures { get; set; }
    [JsonPropertyName("hidden_size")] public int? HiddenSize { get; set; }
    [JsonPropertyName("intermediate_size")] public int? IntermediateSize { get; set; }
    [JsonPropertyName("num_hidden_layers")] public int? NumHiddenLayers { get; set; }
    [JsonPropertyName("num_attention_heads")] public int? NumAttentionHeads { get; set; }
    [JsonPropertyName("num_key_value_heads")] public int? NumKeyValueHeads { get; set; }
    [JsonPropertyName("head_dim")] public int? HeadDim { get; set; }
    [JsonPropertyName("vocab_size")] public int? VocabSize { get; set; }
    [JsonPropertyName("max_position_embeddings")] public int? MaxPositionEmbeddings { get; set; }
    [JsonPropertyName("rms_norm_eps")] public double? RmsNormEps { get; set; }
    [JsonPropertyName("rope_theta")] public double? RopeTheta { get; set; }
    [JsonPropertyName("rope_scaling")] public JsonElement? RopeScaling { get; set; }
    [JsonPropertyName("rope_parameters")] public JsonElement? RopeParameters { get; set; }
    [JsonPropertyName("partial_rotary_factor")] public double? PartialRotaryFactor { get; set; }
    [JsonPropertyName("tie_word_embeddings")] public bool? TieWordEmbeddings { get; set; }
    [JsonPropertyName("attention_bias")] public bool? AttentionBias { get; set; }
    [JsonPropertyName("mlp_bias")] public bool? MlpBias { get; set; }
    [JsonPropertyName("hidden_act")] public string? HiddenAct { get; set; }
    [JsonPropertyName("use_sliding_window")] public bool? UseSlidingWindow { get; set; }
    [JsonPropertyName("is_causal")] public bool? IsCausal { get; set; }
    [JsonPropertyName("bos_token_id")] [JsonConverter(typeof(TokenIdsJsonConverter))] public int[]? BosTokenId { get; set; }
    [JsonPropertyName("eos_token_id")] [JsonConverter(typeof(TokenIdsJsonConverter))] public int[]? EosTokenId { get; set; }
    [JsonPropertyName("torch_dtype")] public string? TorchDtype { get; set; }
    [JsonPropertyName("dtype")] public string? Dtype { get; set; }
    [JsonPropertyName("vision_config")] public VisionConfigJson? VisionConfig { get; set; }
    [JsonPropertyName("image_token_id")] public int? ImageTokenId { get; set; }
    [JsonPropertyName("video_token_id")] public int? VideoTokenId { get; set; }
    [JsonPropertyName("vision_start_token_id")] public int? VisionStartTokenId { get; set; }
    [JsonPropertyName("vision_end_token_id")] public int? VisionEndTokenId { get; set; }
}

/// <summary>The <c>vision_config</c> of a Qwen2-VL config.json; <see cref="Qwen2VL.VisionConfig"/> is the validated form.</summary>
internal sealed class VisionConfigJson
{
    [JsonPropertyName("depth")] public int? Depth { get; set; }
    [JsonPropertyName("embed_dim")] public int? EmbedDim { get; set; }
    [JsonPropertyName("mlp_ratio")] public double? MlpRatio { get; set; }
    [JsonPropertyName("num_heads")] public int? NumHeads { get; set; }
    [JsonPropertyName("in_chans")] public int? InChans { get; set; }
    [JsonPropertyName("in_channels")] public int? InChannels { get; set; }
    [JsonPropertyName("hidden_size")] public int? HiddenSize { get; set; }
    [JsonPropertyName("hidden_act")] public string? HiddenAct { get; set; }
    [JsonPropertyName("patch_size")] public int? PatchSize { get; set; }
    [JsonPropertyName("spatial_patch_size")] public int? SpatialPatchSize { get; set; }
    [JsonPropertyName("spatial_merge_size")] public int? SpatialMergeSize { get; set; }
    [JsonPropertyName("temporal_patch_size")] public int? TemporalPatchSize { get; set; }
}

/// <summary>preprocessor_config.json of a Qwen2-VL folder (Qwen2VLImageProcessor); <see cref="Qwen2VL.ImageProcessorConfig"/> is the validated form.</summary>
internal sealed class PreprocessorConfigJson
{
    [JsonPropertyName("image_processor_type")] public string? ImageProcessorType { get; set; }
    [JsonPropertyName("min_pixels")] public long? MinPixels { get; set; }
    [JsonPropertyName("max_pixels")] public long? MaxPixels { get; set; }
    [JsonPropertyName("size")] public PreprocessorSizeJson? Size { get; set; }
    [JsonPropertyName("patch_size")] public int? PatchSize { get; set; }
    [JsonPropertyName("temporal_patch_size")] public int? TemporalPatchSize { get; set; }
    [JsonPropertyName("merge_size")] public int? MergeSize { get; set; }
    [JsonPropertyName("image_mean")] public double[]? ImageMean { get; set; }
    [JsonPropertyName("image_std")] public double[]? ImageStd { get; set; }
    [JsonPropertyName("do_resize")] public bool? DoResize { get; set; }
    [JsonPropertyName("resample")] public int? Resample { get; set; }
    [JsonPropertyName("do_rescale")] public bool? DoRescale { get; set; }
    [JsonPropertyName("rescale_factor")] public double? RescaleFactor { get; set; }
    [JsonPropertyName("do_normalize")] public bool? DoNormalize { get; set; }
    [JsonPropertyName("do_convert_rgb")] public bool? DoConvertRgb { get; set; }
}

/// <summary>transformers' newer spelling of the pixel bounds: <c>"size": {"shortest_edge": min, "longest_edge": max}</c>.</summary>
internal sealed class PreprocessorSizeJson
{
    [JsonPropertyName("shortest_edge")] public long? ShortestEdge { get; set; }
    [JsonPropertyName("longest_edge")] public long? LongestEdge { get; set; }
    [JsonPropertyName("min_pixels")] public long? MinPixels { get; set; }
    [JsonPropertyName("max_pixels")] public long? MaxPixels { get; set; }
}

/// <summary>generation_config.json as Hugging Face writes it; <see cref="GenerationConfig"/> is the validated form.</summary>
internal sealed class GenerationConfigJson
{
    [JsonPropertyName("bos_token_id")] [JsonConverter(typeof(TokenIdsJsonConverter))] public int[]? BosTokenId { get; set; }
    [JsonPropertyName("eos_token_id")] [JsonConverter(typeof(TokenIdsJsonConverter))] public int[]? EosTokenId { get; set; }
    [JsonPropertyName("pad_token_id")] [JsonConverter(typeof(TokenIdsJsonConverter))] public int[]? PadTokenId { get; set; }
    [JsonPropertyName("do_sample")] public bool? DoSample { get; set; }
    [JsonPropertyName("temperature")] public double? Temperature { get; set; }
    [JsonPropertyName("top_k")] public int? TopK { get; set; }
    [JsonPropertyName("top_p")] public double? TopP { get; set; }
    [JsonPropertyName("min_p")] public double? MinP { get; set; }
    [JsonPropertyName("typical_p")] public double? TypicalP { get; set; }
    [JsonPropertyName("repetition_penalty")] public double? RepetitionPenalty { get; set; }
    [JsonPropertyName("max_new_tokens")] public int? MaxNewTokens { get; set; }
    [JsonPropertyName("max_length")] public int? MaxLength { get; set; }
}

/// <summary>Source-generated JSON (reflection-based JSON does not survive Native AOT).</summary>
[JsonSourceGenerationOptions(ReadCommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true,
    NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals)]
[JsonSerializable(typeof(ConfigJson))]
[JsonSerializable(typeof(GenerationConfigJson))]
[JsonSerializable(typeof(PreprocessorConfigJson))]
internal sealed partial class ConfigJsonContext : JsonSerializerContext;
