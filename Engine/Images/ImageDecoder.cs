using QwenSharp.Qwen2VL;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats;
using SixLabors.ImageSharp.Formats.Jpeg;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;

namespace QwenSharp.Images;

/// <summary>
/// PNG and JPEG files to the RGB pixels Qwen2-VL's processor takes, as transformers gets them from Pillow:
/// EXIF orientation applied, grayscale and palette images expanded to RGB, transparency composited on white
/// (<see cref="AlphaComposite"/>). The size is read from the header first, so a decompression bomb is refused
/// before any pixel is decoded.
/// </summary>
/// <remarks>
/// SixLabors.ImageSharp 2.1 (managed, so it compiles into the one AOT binary and needs no native library beside it;
/// StbImageSharp is not served by our package source, and SkiaSharp would put a native library beside the binary).
/// Only its PNG and JPEG decoders are enabled: every other format is refused before it is parsed.
/// </remarks>
public static class ImageDecoder
{
    /// <summary>Files larger than this are refused unread: no PNG or JPEG within the pixel limit comes near it.</summary>
    public const long MaxFileBytes = 512L << 20;

    private static readonly Configuration Formats = new(new PngConfigurationModule(), new JpegConfigurationModule());

    /// <summary>Decodes the file at <paramref name="path"/>, refusing pictures of more than <paramref name="maxPixels"/> pixels.</summary>
    public static RgbImage Load(string path, long maxPixels)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"image '{path}' not found", path);
        }

        long length = new FileInfo(path).Length;
        if (length > MaxFileBytes)
        {
            throw new InvalidDataException($"{path}: {length} bytes is too large for an image file (at most {MaxFileBytes >> 20} MiB)");
        }

        return Decode(File.ReadAllBytes(path), path, maxPixels);
    }

    /// <summary>Decodes an encoded PNG or JPEG held in memory; <paramref name="source"/> names it in errors.</summary>
    public static RgbImage Decode(byte[] encoded, string source, long maxPixels)
    {
        ArgumentNullException.ThrowIfNull(encoded);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxPixels);
        IImageInfo? info;
        try
        {
            info = Image.Identify(Formats, encoded, out IImageFormat? format);
            if (info is null || format is null)
            {
                throw new InvalidDataException($"{source}: not a PNG or JPEG image");
            }
        }
        catch (Exception e) when (e is UnknownImageFormatException or ImageFormatException or NotSupportedException)
        {
            throw new InvalidDataException($"{source}: not a readable PNG or JPEG image ({e.Message.TrimEnd('.')})", e);
        }

        if ((long)info.Width * info.Height > maxPixels)
        {
            throw new InvalidDataException(
                $"{source}: {info.Width}x{info.Height} is {(long)info.Width * info.Height} pixels, more than the {maxPixels} this model's processor accepts decoded");
        }

        Image<Rgba32> image;
        try
        {
            image = Image.Load<Rgba32>(Formats, encoded);
        }
        catch (Exception e) when (e is ImageFormatException or NotSupportedException or InvalidOperationException or IndexOutOfRangeException or ArgumentException)
        {
            throw new InvalidDataException($"{source}: the image data is corrupt or truncated ({e.Message.TrimEnd('.')})", e);
        }

        using (image)
        {
            image.Mutate(x => x.AutoOrient());
            int width = image.Width, height = image.Height;
            byte[] rgb = GC.AllocateUninitializedArray<byte>(checked(3 * width * height));
            image.ProcessPixelRows(rows =>
            {
                for (int y = 0; y < rows.Height; y++)
                {
                    Span<Rgba32> row = rows.GetRowSpan(y);
                    Span<byte> target = rgb.AsSpan(3 * width * y, 3 * width);
                    for (int x = 0; x < row.Length; x++)
                    {
                        Rgba32 p = row[x];
                        target[3 * x] = AlphaComposite.OnWhite(p.R, p.A);
                        target[(3 * x) + 1] = AlphaComposite.OnWhite(p.G, p.A);
                        target[(3 * x) + 2] = AlphaComposite.OnWhite(p.B, p.A);
                    }
                }
            });
            return new RgbImage(width, height, rgb, source);
        }
    }
}
