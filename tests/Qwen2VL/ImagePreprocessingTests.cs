using System.Text.Json;
using QwenSharp.Images;
using QwenSharp.Qwen2;
using QwenSharp.Qwen2VL;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Metadata.Profiles.Exif;
using SixLabors.ImageSharp.PixelFormats;

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

    [Fact]
    public void A_transparent_png_is_composited_on_white_as_pillow_does()
    {
        using var image = new Image<Rgba32>(3, 1);
        image[0, 0] = new Rgba32(200, 100, 50, 255);
        image[1, 0] = new Rgba32(200, 100, 50, 128);
        image[2, 0] = new Rgba32(10, 20, 30, 0);
        using var stream = new MemoryStream();
        image.SaveAsPng(stream);

        RgbImage rgb = ImageDecoder.Decode(stream.ToArray(), "rgba.png", long.MaxValue);

        // Pillow's alpha_composite over white, worked by hand for alpha 128: coef1 = 16384, coef2 = 16256, then
        // SHIFTFORDIV255 and >> 7: 227, 177, 152 (the float formula gives 227.4, 177.2, 152.1).
        Assert.Equal(new byte[] { 200, 100, 50, 227, 177, 152, 255, 255, 255 }, rgb.Rgb);
    }

    [Fact]
    public void Exif_orientation_is_applied()
    {
        // Left half red, right half blue, stored 16x8 with orientation 6 ("rotate 90 clockwise to display").
        using var image = new Image<Rgba32>(16, 8);
        for (int y = 0; y < 8; y++)
        {
            for (int x = 0; x < 16; x++)
            {
                image[x, y] = x < 8 ? new Rgba32(255, 0, 0) : new Rgba32(0, 0, 255);
            }
        }

        image.Metadata.ExifProfile = new ExifProfile();
        image.Metadata.ExifProfile.SetValue(ExifTag.Orientation, (ushort)6);
        using var stream = new MemoryStream();
        image.SaveAsJpeg(stream, new SixLabors.ImageSharp.Formats.Jpeg.JpegEncoder { Quality = 100 });

        RgbImage rgb = ImageDecoder.Decode(stream.ToArray(), "rotated.jpg", long.MaxValue);

        // Displayed 8 wide and 16 high: the red half on top, the blue half below.
        Assert.Equal((8, 16), (rgb.Width, rgb.Height));
        byte[] top = rgb.Rgb[(3 * ((2 * 8) + 4))..((3 * ((2 * 8) + 4)) + 3)];
        byte[] bottom = rgb.Rgb[(3 * ((13 * 8) + 4))..((3 * ((13 * 8) + 4)) + 3)];
        Assert.True(top[0] > 200 && top[2] < 60, $"top pixel {string.Join(",", top)} is not red");
        Assert.True(bottom[2] > 200 && bottom[0] < 60, $"bottom pixel {string.Join(",", bottom)} is not blue");
    }

    [Fact]
    public void A_processor_template_in_chat_template_json_is_used()
    {
        // A folder whose tokenizer_config.json has no template: the processor's chat_template.json renders the prompt.
        string dir = Support.Fixtures.TempDirectory();
        File.Copy(Path.Combine(VisionFixture.ModelDirectory, "tokenizer.json"), Path.Combine(dir, "tokenizer.json"));
        File.Copy(Path.Combine(VisionFixture.ModelDirectory, "chat_template.json"), Path.Combine(dir, "chat_template.json"));
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(VisionFixture.ModelDirectory, "tokenizer_config.json")))!.AsObject();
        config.Remove("chat_template");
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), config.ToJsonString());

        var tokenizer = Tokenization.Tokenizer.FromDirectory(dir);
        using JsonDocument messages = JsonDocument.Parse(File.ReadAllBytes(VisionFixture.Messages("2_image_b")));
        using JsonDocument reference = VisionFixture.Case("2_image_b");
        string expected = reference.RootElement.GetProperty("prompt_text").GetString()!;
        Assert.Equal(expected, tokenizer.ApplyChatTemplate(messages.RootElement.GetProperty("messages"), null, addGenerationPrompt: true));
    }
}
