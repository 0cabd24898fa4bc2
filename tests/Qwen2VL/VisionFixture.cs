using System.Text.Json;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Qwen2VL;

/// <summary>
/// tests/fixtures/qwen2-vl (see its README.md): the tiny Qwen2-VL folder, its pictures and prompts, and the
/// float64 references of an independent implementation of transformers' processor and model.
/// </summary>
internal static class VisionFixture
{
    public static string Root => Fixtures.Directory("qwen2-vl");

    public static string ModelDirectory => Path.Combine(Root, "tiny-qwen2-vl");

    public static string Image(string file) => Path.Combine(Root, "images", file);

    public static string Messages(string name) => Path.Combine(Root, "messages", name + ".json");

    public static string[] Cases => ["1_image_a", "2_image_b", "3_images_c_d", "4_text_only"];

    public static string[] ImageFiles => ["a_56x56_rgb.png", "b_100x70_rgb.png", "c_64x200_gray.png", "d_90x90.jpg"];

    public static JsonDocument PixelsJson() => JsonDocument.Parse(File.ReadAllBytes(Path.Combine(ModelDirectory, "pixels", "pixels.json")));

    /// <summary>The entry of pixels.json for <paramref name="file"/>.</summary>
    public static JsonElement PixelsEntry(JsonDocument pixels, string file) =>
        pixels.RootElement.GetProperty("images").EnumerateArray().Single(e => e.GetProperty("file").GetString() == file);

    public static byte[] Bytes(string relative) => File.ReadAllBytes(Path.Combine(ModelDirectory, relative));

    public static float[] Floats(string relative)
    {
        byte[] raw = Bytes(relative);
        var values = new float[raw.Length / 4];
        Buffer.BlockCopy(raw, 0, values, 0, raw.Length);
        return values;
    }

    public static JsonDocument Case(string name) => JsonDocument.Parse(Bytes(Path.Combine("ref", name + ".json")));

    public static int[] Ints(JsonElement array) => [.. array.EnumerateArray().Select(e => e.GetInt32())];
}
