using QwenSharp.Errors;

namespace QwenSharp.Qwen2VL;

/// <summary>A picture ready for the vision tower: its patches and their grid.</summary>
/// <param name="PixelValues">[GridT * GridH * GridW, channels * temporal * patch * patch], rows in merge-major order.</param>
/// <param name="GridT">Frame groups (1 for a picture).</param>
/// <param name="GridH">Patch rows.</param>
/// <param name="GridW">Patch columns.</param>
/// <param name="ResizedWidth">Width after the resize.</param>
/// <param name="ResizedHeight">Height after the resize.</param>
public sealed record ImagePatches(float[] PixelValues, int GridT, int GridH, int GridW, int ResizedWidth, int ResizedHeight)
{
    public int Patches => GridT * GridH * GridW;
}

/// <summary>
/// transformers' <c>Qwen2VLImageProcessor</c> (its PIL path) on a decoded RGB picture: <see cref="SmartResize"/>,
/// Pillow's bicubic resample on the 8-bit pixels, rescale and normalize, the frame repeated to fill a temporal
/// patch, and patches flattened in the order the merger expects (each 2x2 group of patches consecutive).
/// </summary>
public static class ImageProcessor
{
    /// <summary>
    /// The size the picture is resized to (height, width): both multiples of <paramref name="factor"/>, nearest to
    /// the original (Python's round, half to even), scaled down to at most <paramref name="maxPixels"/> or up to at
    /// least <paramref name="minPixels"/> keeping the aspect ratio, as transformers' <c>smart_resize</c>.
    /// </summary>
    public static (int Height, int Width) SmartResize(int height, int width, int factor, long minPixels, long maxPixels, string source = "image")
    {
        if (Math.Max(height, width) > 200.0 * Math.Min(height, width))
        {
            QwenThrow.InvalidData($"{source}: {width}x{height} has an aspect ratio over 200 (Qwen2-VL's processor refuses it)");
        }

        long hBar = (long)Math.Round(height / (double)factor, MidpointRounding.ToEven) * factor;
        long wBar = (long)Math.Round(width / (double)factor, MidpointRounding.ToEven) * factor;
        hBar = Math.Max(factor, hBar);
        wBar = Math.Max(factor, wBar);
        if (hBar * wBar > maxPixels)
        {
            double beta = Math.Sqrt(height * (double)width / maxPixels);
            hBar = Math.Max(factor, (long)Math.Floor(height / beta / factor) * factor);
            wBar = Math.Max(factor, (long)Math.Floor(width / beta / factor) * factor);
        }
        else if (hBar * wBar < minPixels)
        {
            double beta = Math.Sqrt(minPixels / (height * (double)width));
            hBar = (long)Math.Ceiling(height * beta / factor) * factor;
            wBar = (long)Math.Ceiling(width * beta / factor) * factor;
        }

        return (checked((int)hBar), checked((int)wBar));
    }

    /// <summary>The picture resized with Pillow's bicubic filter to its <see cref="SmartResize"/> size.</summary>
    public static RgbImage Resize(RgbImage image, ImageProcessorConfig config)
    {
        (int height, int width) = SmartResize(image.Height, image.Width, config.Factor, config.MinPixels, config.MaxPixels, image.Source);
        return PillowResize.Bicubic(image, width, height);
    }

    /// <summary>Resize, rescale, normalize and patchify a picture.</summary>
    public static ImagePatches Process(RgbImage image, ImageProcessorConfig config)
    {
        RgbImage resized = Resize(image, config);
        return Patchify(resized, config);
    }

    /// <summary>
    /// Rescales and normalizes an already resized picture (sides multiples of the factor) and cuts it into patches:
    /// row <c>((t·H/m + bh)·W/m + bw)·m² + mh·m + mw</c> holds the patch at patch row <c>bh·m + mh</c>, column
    /// <c>bw·m + mw</c>; its values go channel, frame, y, x (the Conv3d's weight order).
    /// </summary>
    public static ImagePatches Patchify(RgbImage resized, ImageProcessorConfig config)
    {
        int factor = config.Factor, p = config.PatchSize, m = config.MergeSize, frames = config.TemporalPatchSize;
        if (resized.Width % factor != 0 || resized.Height % factor != 0)
        {
            QwenThrow.Argument($"{resized.Source}: {resized.Width}x{resized.Height} is not a multiple of {factor} on both sides", nameof(resized));
        }

        // The float each byte value becomes, per channel, as transformers computes it: rescaled in float64 and
        // cast to float32, then normalized in float32 arithmetic with the mean and std as float32.
        var lookup = new float[3, 256];
        for (int c = 0; c < 3; c++)
        {
            for (int v = 0; v < 256; v++)
            {
                float x = config.DoRescale ? (float)(v * config.RescaleFactor) : v;
                lookup[c, v] = config.DoNormalize ? (x - (float)config.ImageMean[c]) / (float)config.ImageStd[c] : x;
            }
        }

        int gridH = resized.Height / p, gridW = resized.Width / p;
        int rowWidth = 3 * frames * p * p, patches = gridH * gridW;
        var values = new float[(long)patches * rowWidth];
        byte[] rgb = resized.Rgb;
        int row = 0;
        for (int bh = 0; bh < gridH / m; bh++)
        {
            for (int bw = 0; bw < gridW / m; bw++)
            {
                for (int mh = 0; mh < m; mh++)
                {
                    for (int mw = 0; mw < m; mw++, row++)
                    {
                        int y0 = ((bh * m) + mh) * p, x0 = ((bw * m) + mw) * p;
                        Span<float> target = values.AsSpan(row * rowWidth, rowWidth);
                        int i = 0;
                        for (int c = 0; c < 3; c++)
                        {
                            // A picture is one frame, repeated to fill the temporal patch.
                            for (int t = 0; t < frames; t++)
                            {
                                for (int y = 0; y < p; y++)
                                {
                                    int at = (3 * (((y0 + y) * resized.Width) + x0)) + c;
                                    for (int x = 0; x < p; x++, i++)
                                    {
                                        target[i] = lookup[c, rgb[at + (3 * x)]];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }

        return new ImagePatches(values, 1, gridH, gridW, resized.Width, resized.Height);
    }
}
