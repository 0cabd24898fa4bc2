using System.Text.Json;
using QwenSharp.Qwen2;
using QwenSharp.Qwen2VL;
using QwenSharp.Tokenization;

namespace QwenSharp.Images;

/// <summary>
/// Conversations with pictures for Qwen2-VL, shared by the CLI, the Engine and its chat client: which content items
/// are pictures (as the chat template counts them), where their bytes come from, decoding and processing them, and
/// the prompt ids with each picture's pad expanded.
/// </summary>
public static class PicturePrompts
{
    /// <summary>
    /// The pictures of a conversation in the order the chat template writes their pads: every content item whose
    /// <c>type</c> is "image" or that has an "image" or "image_url" key (Qwen2-VL's template's test), as the string it
    /// names (a path, <c>file://</c> URL or <c>data:</c> URL; <c>image_url</c>'s <c>url</c>).
    /// </summary>
    public static List<string> References(JsonElement messages)
    {
        var references = new List<string>();
        if (messages.ValueKind != JsonValueKind.Array)
        {
            return references;
        }

        int m = 0;
        foreach (JsonElement message in messages.EnumerateArray())
        {
            m++;
            if (message.ValueKind != JsonValueKind.Object || !message.TryGetProperty("content", out JsonElement content) || content.ValueKind != JsonValueKind.Array)
            {
                continue;
            }

            int i = 0;
            foreach (JsonElement item in content.EnumerateArray())
            {
                i++;
                if (item.ValueKind != JsonValueKind.Object)
                {
                    continue;
                }

                bool typed = item.TryGetProperty("type", out JsonElement type) && type.ValueKind == JsonValueKind.String && type.GetString() == "image";
                bool hasImage = item.TryGetProperty("image", out JsonElement image);
                bool hasUrl = item.TryGetProperty("image_url", out JsonElement url);
                if (!typed && !hasImage && !hasUrl)
                {
                    continue;
                }

                string? reference = hasImage && image.ValueKind == JsonValueKind.String ? image.GetString()
                    : hasUrl && url.ValueKind == JsonValueKind.String ? url.GetString()
                    : hasUrl && url.ValueKind == JsonValueKind.Object && url.TryGetProperty("url", out JsonElement inner) && inner.ValueKind == JsonValueKind.String ? inner.GetString()
                    : null;
                references.Add(reference ?? throw new InvalidDataException(
                    $"message {m}, content item {i}: a picture item needs \"image\": PATH (or \"image_url\": {{\"url\": ...}})"));
            }
        }

        return references;
    }

    /// <summary>The largest picture decoded: transformers' max_pixels times 64 (beyond it, a decompression bomb).</summary>
    public static long MaxDecodedPixels(ImageProcessorConfig processor) => processor.MaxPixels * 64;

    /// <summary>
    /// Decodes the picture a reference names: a file path (relative to <paramref name="baseDirectory"/>), a
    /// <c>file://</c> URL or a <c>data:image/...;base64,</c> URL.
    /// </summary>
    public static RgbImage Load(string reference, string baseDirectory, ImageProcessorConfig processor)
    {
        long maxPixels = MaxDecodedPixels(processor);
        if (reference.StartsWith("data:", StringComparison.Ordinal))
        {
            int comma = reference.IndexOf(',', StringComparison.Ordinal);
            if (comma < 0 || !reference.AsSpan(0, comma).EndsWith(";base64", StringComparison.Ordinal))
            {
                throw new InvalidDataException("a data: URL picture must be base64 (data:image/png;base64,...)");
            }

            byte[] bytes;
            try
            {
                bytes = Convert.FromBase64String(reference[(comma + 1)..]);
            }
            catch (FormatException e)
            {
                throw new InvalidDataException("a data: URL picture is not valid base64", e);
            }

            return ImageDecoder.Decode(bytes, "data: URL picture", maxPixels);
        }

        if (reference.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || reference.StartsWith("https://", StringComparison.OrdinalIgnoreCase))
        {
            throw new NotSupportedException($"picture '{reference}': QwenSharp does not download; save the picture and give its path");
        }

        string path = reference.StartsWith("file://", StringComparison.OrdinalIgnoreCase) ? new Uri(reference).LocalPath : reference;
        return ImageDecoder.Load(Path.IsPathRooted(path) ? path : Path.Combine(baseDirectory, path), maxPixels);
    }

    /// <summary>How many merged tokens a picture becomes (after the processor's resize), without processing its pixels.</summary>
    public static int TokensOf(RgbImage image, ImageProcessorConfig processor)
    {
        (int h, int w) = ImageProcessor.SmartResize(image.Height, image.Width, processor.Factor, processor.MinPixels, processor.MaxPixels, image.Source);
        return h / processor.Factor * (w / processor.Factor);
    }

    /// <summary>
    /// Prompt ids of a rendered chat with its pictures' pads expanded, and the pictures laid out for the model
    /// (null without pictures). A model without a vision tower refuses pictures.
    /// </summary>
    public static (int[] Ids, VisionPrompt? Vision) Encode(Qwen2Model model, Tokenizer tokenizer, string rendered, IReadOnlyList<RgbImage> pictures)
    {
        int[] ids = tokenizer.Encode(rendered, addSpecialTokens: false);
        if (pictures.Count == 0)
        {
            return (ids, null);
        }

        if (model.Vision is null || model.ImageProcessor is null)
        {
            throw new NotSupportedException($"this model (model_type {model.Config.ModelType}) has no vision tower: it takes no pictures");
        }

        ImagePatches[] patches = [.. pictures.Select(p => ImageProcessor.Process(p, model.ImageProcessor))];
        List<int> expanded = VisionPrompt.ExpandImagePads(ids, patches, model.Config);
        return ([.. expanded], VisionPrompt.Create(model, expanded, patches));
    }
}
