namespace QwenSharp.Qwen2VL;

/// <summary>
/// A decoded picture as the image processor takes it: 8-bit RGB, rows top to bottom, pixels left to right,
/// channels interleaved (HWC, what <c>np.array(pil_image)</c> gives for an RGB image).
/// </summary>
public sealed class RgbImage
{
    public RgbImage(int width, int height, byte[] rgb, string source)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
        if (rgb.LongLength != 3L * width * height)
        {
            throw new ArgumentException($"{source}: {rgb.LongLength} bytes for a {width}x{height} RGB image, expected {3L * width * height}", nameof(rgb));
        }

        Width = width;
        Height = height;
        Rgb = rgb;
        Source = source;
    }

    public int Width { get; }

    public int Height { get; }

    /// <summary>[Height, Width, 3] bytes.</summary>
    public byte[] Rgb { get; }

    /// <summary>Where the picture came from (a path, "image 2 of the request"), for error messages.</summary>
    public string Source { get; }
}
