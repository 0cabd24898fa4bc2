using QwenSharp.Errors;
using QwenSharp.Formats;
using QwenSharp.Qwen2;

namespace QwenSharp.Qwen2VL;

/// <summary>
/// preprocessor_config.json of a Qwen2-VL folder (transformers' <c>Qwen2VLImageProcessor</c>): the pixel budget of
/// a resized picture, the patch geometry and the normalization. Options that would change the pixels in a way
/// QwenSharp does not implement (another resample filter, no resize) are refused.
/// </summary>
public sealed record ImageProcessorConfig
{
    public const string FileName = "preprocessor_config.json";

    public required long MinPixels { get; init; }

    public required long MaxPixels { get; init; }

    public required int PatchSize { get; init; }

    public required int TemporalPatchSize { get; init; }

    public required int MergeSize { get; init; }

    public required IReadOnlyList<double> ImageMean { get; init; }

    public required IReadOnlyList<double> ImageStd { get; init; }

    public required double RescaleFactor { get; init; }

    public required bool DoRescale { get; init; }

    public required bool DoNormalize { get; init; }

    /// <summary>Side of the square a merged token covers (patch x merge: 28); resized sides are multiples of it.</summary>
    public int Factor => PatchSize * MergeSize;

    /// <summary>transformers' defaults (Qwen2-VL's released processor), for a folder without the file.</summary>
    public static ImageProcessorConfig Default(VisionConfig vision) => new()
    {
        MinPixels = 56 * 56,
        MaxPixels = 28 * 28 * 1280 * 10,
        PatchSize = vision.PatchSize,
        TemporalPatchSize = vision.TemporalPatchSize,
        MergeSize = vision.SpatialMergeSize,
        ImageMean = [0.48145466, 0.4578275, 0.40821073],
        ImageStd = [0.26862954, 0.26130258, 0.27577711],
        RescaleFactor = 1 / 255.0,
        DoRescale = true,
        DoNormalize = true,
    };

    /// <summary>Reads <c>preprocessor_config.json</c> of <paramref name="directory"/>, or the defaults when it has none; checked against the vision tower.</summary>
    public static ImageProcessorConfig LoadOrDefault(string directory, VisionConfig vision)
    {
        string path = Path.Combine(directory, FileName);
        return File.Exists(path)
            ? FromJson(JsonFile.Read(path, ConfigJsonContext.Default.PreprocessorConfigJson), vision, FileName)
            : Default(vision);
    }

    internal static ImageProcessorConfig FromJson(PreprocessorConfigJson json, VisionConfig vision, string file)
    {
        ImageProcessorConfig defaults = Default(vision);
        if (json.ImageProcessorType is string type && type is not ("Qwen2VLImageProcessor" or "Qwen2VLImageProcessorFast"))
        {
            QwenThrow.NotSupported($"{file}: image_processor_type '{type}' is not supported (QwenSharp implements Qwen2VLImageProcessor)");
        }

        if (json.DoResize == false)
        {
            QwenThrow.NotSupported($"{file}: do_resize false is not supported (the vision tower needs sides that are multiples of {defaults.Factor})");
        }

        if (json.Resample is int resample && resample != 3)
        {
            QwenThrow.NotSupported($"{file}: resample {resample} is not supported (3, bicubic, is what Qwen2-VL uses)");
        }

        if (json.DoConvertRgb == false)
        {
            QwenThrow.NotSupported($"{file}: do_convert_rgb false is not supported");
        }

        var config = new ImageProcessorConfig
        {
            MinPixels = json.MinPixels ?? json.Size?.MinPixels ?? json.Size?.ShortestEdge ?? defaults.MinPixels,
            MaxPixels = json.MaxPixels ?? json.Size?.MaxPixels ?? json.Size?.LongestEdge ?? defaults.MaxPixels,
            PatchSize = json.PatchSize ?? defaults.PatchSize,
            TemporalPatchSize = json.TemporalPatchSize ?? defaults.TemporalPatchSize,
            MergeSize = json.MergeSize ?? defaults.MergeSize,
            ImageMean = json.ImageMean ?? defaults.ImageMean,
            ImageStd = json.ImageStd ?? defaults.ImageStd,
            RescaleFactor = json.RescaleFactor ?? defaults.RescaleFactor,
            DoRescale = json.DoRescale ?? true,
            DoNormalize = json.DoNormalize ?? true,
        };

        if (config.MinPixels <= 0 || config.MaxPixels < config.MinPixels)
        {
            QwenThrow.InvalidData($"{file}: min_pixels {config.MinPixels} and max_pixels {config.MaxPixels} must be positive with min <= max");
        }

        if (config.PatchSize != vision.PatchSize || config.TemporalPatchSize != vision.TemporalPatchSize || config.MergeSize != vision.SpatialMergeSize)
        {
            QwenThrow.InvalidData(
                $"{file}: patch_size {config.PatchSize}, temporal_patch_size {config.TemporalPatchSize} and merge_size {config.MergeSize} must equal config.json's vision_config ({vision.PatchSize}, {vision.TemporalPatchSize}, {vision.SpatialMergeSize})");
        }

        if (config.ImageMean.Count != vision.InChannels || config.ImageStd.Count != vision.InChannels || config.ImageStd.Any(s => !(s > 0)))
        {
            QwenThrow.InvalidData($"{file}: image_mean and image_std need {vision.InChannels} values each, and every std must be positive");
        }

        return config;
    }
}
