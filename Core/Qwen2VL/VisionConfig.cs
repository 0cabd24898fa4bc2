using QwenSharp.Errors;
using QwenSharp.Qwen2;

namespace QwenSharp.Qwen2VL;

/// <summary>
/// The vision tower of a Qwen2-VL model (config.json's <c>vision_config</c>): a ViT over 14x14 patches of two
/// frames, <see cref="Depth"/> pre-norm blocks of width <see cref="EmbedDim"/>, and a merger that turns each 2x2
/// group of patches into one token of the text model's width <see cref="HiddenSize"/>.
/// </summary>
public sealed record VisionConfig
{
    public required int Depth { get; init; }

    public required int EmbedDim { get; init; }

    public required int NumHeads { get; init; }

    public required int MlpDim { get; init; }

    public required int InChannels { get; init; }

    /// <summary>The text model's width, which the merger projects to.</summary>
    public required int HiddenSize { get; init; }

    public required int PatchSize { get; init; }

    public required int SpatialMergeSize { get; init; }

    public required int TemporalPatchSize { get; init; }

    public int HeadDim => EmbedDim / NumHeads;

    /// <summary>Values of one flattened patch: channels x frames x patch x patch (the Conv3d's input).</summary>
    public int PatchValues => InChannels * TemporalPatchSize * PatchSize * PatchSize;

    /// <summary>Patches merged into one token.</summary>
    public int MergeUnit => SpatialMergeSize * SpatialMergeSize;

    /// <summary>LayerNorm epsilon of the blocks and the merger (fixed in transformers' Qwen2-VL code).</summary>
    public const double LayerNormEps = 1e-6;

    /// <summary>Rotary base of the vision attention (fixed in transformers' VisionRotaryEmbedding).</summary>
    public const double RopeTheta = 10000.0;

    internal static VisionConfig FromJson(VisionConfigJson? json, int textHidden, string file)
    {
        if (json is null)
        {
            QwenThrow.InvalidData($"{file}: model_type qwen2_vl needs a 'vision_config' object");
        }

        int embed = Qwen2Config.Positive(json.EmbedDim, "vision_config.embed_dim", file);
        int heads = Qwen2Config.Positive(json.NumHeads, "vision_config.num_heads", file);
        if (embed % heads != 0 || (embed / heads) % 4 != 0)
        {
            QwenThrow.InvalidData(
                $"{file}: vision_config.embed_dim {embed} over num_heads {heads} must give a head width that is a multiple of 4 (its rotary angles split between rows and columns)");
        }

        double ratio = json.MlpRatio ?? 4.0;
        if (!(ratio > 0) || Math.Abs((embed * ratio) - Math.Round(embed * ratio)) > 1e-9)
        {
            QwenThrow.InvalidData($"{file}: vision_config.mlp_ratio {ratio} times embed_dim {embed} is not a whole width");
        }

        string act = json.HiddenAct ?? "quick_gelu";
        if (act != "quick_gelu")
        {
            QwenThrow.NotSupported($"{file}: vision_config.hidden_act '{act}' is not supported (Qwen2-VL's vision MLP uses quick_gelu)");
        }

        int hidden = Qwen2Config.Positive(json.HiddenSize, "vision_config.hidden_size", file);
        if (hidden != textHidden)
        {
            QwenThrow.InvalidData($"{file}: vision_config.hidden_size {hidden} differs from the text model's hidden_size {textHidden}; the merger's output replaces token embeddings");
        }

        int patch = Qwen2Config.Positive(json.PatchSize ?? json.SpatialPatchSize, "vision_config.patch_size", file);
        if (json.SpatialPatchSize is int spatial && spatial != patch)
        {
            QwenThrow.InvalidData($"{file}: vision_config.spatial_patch_size {spatial} differs from patch_size {patch}");
        }

        return new VisionConfig
        {
            Depth = Qwen2Config.Positive(json.Depth, "vision_config.depth", file),
            EmbedDim = embed,
            NumHeads = heads,
            MlpDim = (int)Math.Round(embed * ratio),
            InChannels = Qwen2Config.Positive(json.InChans ?? json.InChannels ?? 3, "vision_config.in_chans", file),
            HiddenSize = hidden,
            PatchSize = patch,
            SpatialMergeSize = Qwen2Config.Positive(json.SpatialMergeSize ?? 2, "vision_config.spatial_merge_size", file),
            TemporalPatchSize = Qwen2Config.Positive(json.TemporalPatchSize ?? 2, "vision_config.temporal_patch_size", file),
        };
    }
}
