using System.Text.Json;
using QwenSharp.Images;
using QwenSharp.Qwen2;
using QwenSharp.Qwen2VL;

namespace QwenSharp.Tests.Qwen2VL;

/// <summary>Decoding and Qwen2VLImageProcessor against the fixture's Pillow/transformers references.</summary>
public sealed class ImagePreprocessingTests
{
    private static readonly ImageProcessorConfig Config = LoadConfig();

    private static ImageProcessorConfig LoadConfig()
    {
        Qwen2Config model = Qwen2Config.Load(Path.Combine(VisionFixture.ModelDirectory, "config.json"));
        return ImageProcessorConfig.LoadOrDefault(VisionFixture.ModelDirectory, model.Vision!);
    }

    [Theory]
    [InlineData("a_56x56_rgb.png")]
    [InlineData("b_100x70_rgb.png")]
    [InlineData("c_64x200_gray.png")]
    public void Png_decodes_to_Pillows_rgb_bytes(string file)
    {
        using JsonDocument pixels = VisionFixture.PixelsJson();
        JsonElement entry = VisionFixture.PixelsEntry(pixels, file);
        RgbImage image = ImageDecoder.Load(VisionFixture.Image(file), long.MaxValue);
        int[] hw = VisionFixture.Ints(entry.GetProperty("orig_hw"));
        Assert.Equal((hw[0], hw[1]), (image.Height, image.Width));
        Assert.Equal(VisionFixture.Bytes(Path.Combine("pixels", entry.GetProperty("rgb_file").GetString()!)), image.Rgb);
    }

    [Fact]
    public void Jpeg_decodes_close_to_libjpeg_turbo()
    {
        using JsonDocument pixels = VisionFixture.PixelsJson();
        JsonElement entry = VisionFixture.PixelsEntry(pixels, "d_90x90.jpg");
        RgbImage image = ImageDecoder.Load(VisionFixture.Image("d_90x90.jpg"), long.MaxValue);
        byte[] expected = VisionFixture.Bytes(Path.Combine("pixels", entry.GetProperty("rgb_file").GetString()!));
        Assert.Equal(expected.Length, image.Rgb.Length);
        int worst = expected.Zip(image.Rgb, (a, b) => Math.Abs(a - b)).Max();
        double mean = expected.Zip(image.Rgb, (a, b) => (double)Math.Abs(a - b)).Average();
        // ImageSharp's JPEG decoder is not libjpeg-turbo: measured here up to 21 levels apart on the 4:2:0 fixture
        // (mean 2.9), where chroma is upsampled differently. The model checks run from the reference pixel_values.
        Assert.True(worst <= 24 && mean <= 3.5, $"JPEG decode differs from Pillow's by up to {worst} levels (mean {mean:F3})");
    }

    [Theory]
    [InlineData("a_56x56_rgb.png")]
    [InlineData("b_100x70_rgb.png")]
    [InlineData("c_64x200_gray.png")]
    [InlineData("d_90x90.jpg")]
    public void Resize_equals_Pillows_bicubic_bit_for_bit(string file)
    {
        using JsonDocument pixels = VisionFixture.PixelsJson();
        JsonElement entry = VisionFixture.PixelsEntry(pixels, file);
        int[] orig = VisionFixture.Ints(entry.GetProperty("orig_hw"));
        int[] resizedHw = VisionFixture.Ints(entry.GetProperty("resized_hw"));

        // From the reference's decoded bytes, so a JPEG decoder's small differences do not enter this check.
        var rgb = new RgbImage(orig[1], orig[0], VisionFixture.Bytes(Path.Combine("pixels", entry.GetProperty("rgb_file").GetString()!)), file);
        RgbImage resized = ImageProcessor.Resize(rgb, Config);
        Assert.Equal((resizedHw[0], resizedHw[1]), (resized.Height, resized.Width));
        Assert.Equal(VisionFixture.Bytes(Path.Combine("pixels", entry.GetProperty("resized_file").GetString()!)), resized.Rgb);
    }

    [Theory]
    [InlineData("a_56x56_rgb.png")]
    [InlineData("b_100x70_rgb.png")]
    [InlineData("c_64x200_gray.png")]
    [InlineData("d_90x90.jpg")]
    public void Pixel_values_match_the_processor_within_1e6(string file)
    {
        using JsonDocument pixels = VisionFixture.PixelsJson();
        JsonElement entry = VisionFixture.PixelsEntry(pixels, file);
        int[] resizedHw = VisionFixture.Ints(entry.GetProperty("resized_hw"));
        var resized = new RgbImage(resizedHw[1], resizedHw[0], VisionFixture.Bytes(Path.Combine("pixels", entry.GetProperty("resized_file").GetString()!)), file);
        ImagePatches patches = ImageProcessor.Patchify(resized, Config);
        Assert.Equal(VisionFixture.Ints(entry.GetProperty("grid_thw")), new[] { patches.GridT, patches.GridH, patches.GridW });
        float[] expected = VisionFixture.Floats(Path.Combine("pixels", entry.GetProperty("pixel_values_file").GetString()!));
        Assert.Equal(expected.Length, patches.PixelValues.Length);
        double worst = expected.Zip(patches.PixelValues, (a, b) => Math.Abs(a - (double)b)).Max();
        Assert.True(worst <= 1e-6, $"pixel_values differ by up to {worst:G3}");
    }

    [Theory]
    [InlineData(70, 100, 56, 112)]      // 2.5 and 3.57 patches of 28: 2.5 rounds half to even, down to 2
    [InlineData(200, 64, 196, 56)]
    [InlineData(90, 90, 84, 84)]
    [InlineData(10, 10, 56, 56)]        // below min_pixels 3136: scaled up
    [InlineData(14, 42, 56, 112)]      // rounds to 28x56, under min_pixels: beta = sqrt(3136/588), ceil per side
    public void Smart_resize_matches_transformers(int height, int width, int expectedHeight, int expectedWidth) =>
        Assert.Equal((expectedHeight, expectedWidth), ImageProcessor.SmartResize(height, width, 28, 3136, 12845056));

    [Fact]
    public void Smart_resize_scales_a_large_picture_under_max_pixels()
    {
        // transformers: beta = sqrt(4000*3000/1003520); h = floor(4000/beta/28)*28, w likewise.
        (int h, int w) = ImageProcessor.SmartResize(4000, 3000, 28, 3136, 1003520);
        Assert.Equal((1148, 840), (h, w));
        Assert.True((long)h * w <= 1003520);
    }

    [Fact]
    public void Alpha_composite_on_white_equals_pillows_integer_formula()
    {
        // Opaque pixels pass through; transparent ones become white; half-transparent black is Pillow's 127.
        for (int v = 0; v < 256; v++)
        {
            Assert.Equal(v, AlphaComposite.OnWhite((byte)v, 255));
            Assert.Equal(255, AlphaComposite.OnWhite((byte)v, 0));
        }

        // (0 * a + 255 * (255 - a)) / 255 rounded, for a = 128: 127.0 -> Pillow gives 127.
        Assert.Equal(127, AlphaComposite.OnWhite(0, 128));
        Assert.Equal(255, AlphaComposite.OnWhite(255, 1));
    }
}
