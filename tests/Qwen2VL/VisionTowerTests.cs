using System.Text.Json;
using QwenSharp.Backend;
using QwenSharp.Formats;
using QwenSharp.Qwen2;
using QwenSharp.Qwen2VL;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Qwen2VL;

/// <summary>The vision tower against the float64 reference: patch embedding, the blocks and the merged features.</summary>
public sealed class VisionTowerTests
{
    [SkippableTheory]
    [MemberData(nameof(CasesWithImages))]
    public void Features_match_the_reference_within_1e3(string name, string backendName)
    {
        using IBackend backend = TestBackends.Create(backendName);
        Qwen2Config config = Qwen2Config.Load(Path.Combine(VisionFixture.ModelDirectory, "config.json"));
        using SafeTensorsCheckpoint source = SafeTensorsCheckpoint.Open(VisionFixture.ModelDirectory);
        using var tower = new VisionTower(config.Vision!, source, backend);
        using JsonDocument json = VisionFixture.Case(name);
        JsonElement root = json.RootElement;

        VisionEncoding encoding = tower.Encode(ReferencePatches(root, config.Vision!), keepIntermediates: true);

        AssertClose(VisionFixture.Floats(Path.Combine("ref", root.GetProperty("vision_patch_embed_file").GetString()!)), encoding.PatchEmbeddings!, 1e-4, "patch embedding");
        AssertClose(VisionFixture.Floats(Path.Combine("ref", root.GetProperty("vision_pre_merger_file").GetString()!)), encoding.PreMerger!, 1e-3, "pre-merger");
        AssertClose(VisionFixture.Floats(Path.Combine("ref", root.GetProperty("vision_file").GetString()!)), encoding.Features, 1e-3, "features");
    }

    public static TheoryData<string, string> CasesWithImages()
    {
        var data = new TheoryData<string, string>();
        foreach (string name in VisionFixture.Cases[..3])
        {
            foreach (string backend in KernelPathsAndCpu)
            {
                data.Add(name, backend);
            }
        }

        return data;
    }

    private static string[] KernelPathsAndCpu => [.. TestBackends.All];

    /// <summary>The reference's pixel_values cut per picture by its grid.</summary>
    internal static List<ImagePatches> ReferencePatches(JsonElement root, VisionConfig vision)
    {
        float[] all = VisionFixture.Floats(Path.Combine("ref", root.GetProperty("pixel_values_file").GetString()!));
        var images = new List<ImagePatches>();
        int offset = 0;
        foreach (JsonElement grid in root.GetProperty("image_grid_thw").EnumerateArray())
        {
            int[] thw = VisionFixture.Ints(grid);
            int count = thw[0] * thw[1] * thw[2] * vision.PatchValues;
            images.Add(new ImagePatches(all[offset..(offset + count)], thw[0], thw[1], thw[2], thw[2] * vision.PatchSize, thw[1] * vision.PatchSize));
            offset += count;
        }

        Assert.Equal(all.Length, offset);
        return images;
    }

    internal static void AssertClose(float[] expected, float[] actual, double tolerance, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worst = 0;
        int at = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double d = Math.Abs(expected[i] - (double)actual[i]);
            if (d > worst || double.IsNaN(d))
            {
                worst = double.IsNaN(d) ? double.PositiveInfinity : d;
                at = i;
            }
        }

        Assert.True(worst <= tolerance, $"{what}: differs by {worst:G3} at {at} (expected {expected[at]}, got {actual[at]})");
    }
}
