using System.Text.Json.Nodes;
using QwenSharp.Qwen2;

namespace QwenSharp.Tests.Qwen2VL;

/// <summary>Qwen2-VL's config.json: what it reads, and each fault refused with the field named.</summary>
public sealed class Qwen2VLConfigTests
{
    private static JsonObject FixtureConfig() =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(VisionFixture.ModelDirectory, "config.json")))!.AsObject();

    [Fact]
    public void Reads_the_vision_tower_m_rope_and_the_picture_token_ids()
    {
        Qwen2Config config = Qwen2Config.Parse(FixtureConfig().ToJsonString());
        Assert.Equal("qwen2_vl", config.ModelType);
        Assert.True(config.QkvBias);
        Assert.Equal([2, 3, 3], config.MRopeSection);
        Assert.Equal(151655, config.ImageTokenId);
        Assert.Equal(151652, config.VisionStartTokenId);
        Assert.Equal((2, 32, 2, 16, 64, 64), (config.Vision!.Depth, config.Vision.EmbedDim, config.Vision.NumHeads, config.Vision.HeadDim, config.Vision.MlpDim, config.Vision.HiddenSize));
        Assert.Equal(3 * 2 * 14 * 14, config.Vision.PatchValues);
    }

    [Theory]
    [InlineData("mrope_sum", "must be three counts (temporal, height, width) adding up to head_dim/2 = 8")]
    [InlineData("no_vision", "needs a 'vision_config' object")]
    [InlineData("vision_width", "vision_config.hidden_size 32 differs from the text model's hidden_size 64")]
    [InlineData("no_mrope", "needs rope_scaling with type \"mrope\"")]
    [InlineData("act", "vision_config.hidden_act 'gelu' is not supported")]
    [InlineData("heads", "vision_config.embed_dim 32 over num_heads 3")]
    [InlineData("qwen2_5_vl", "model_type 'qwen2_5_vl' is not supported (Qwen2.5-VL's vision tower differs")]
    [InlineData("mrope_on_qwen2", "rope_scaling with mrope_section belongs to Qwen2-VL")]
    public void A_bad_config_names_the_field(string fault, string expected)
    {
        JsonObject config = FixtureConfig();
        JsonObject vision = config["vision_config"]!.AsObject();
        switch (fault)
        {
            case "mrope_sum": config["rope_scaling"]!["mrope_section"] = new JsonArray(2, 3, 4); break;
            case "no_vision": config.Remove("vision_config"); break;
            case "vision_width": vision["hidden_size"] = 32; break;
            case "no_mrope": config.Remove("rope_scaling"); break;
            case "act": vision["hidden_act"] = "gelu"; break;
            case "heads": vision["num_heads"] = 3; break;
            case "qwen2_5_vl": config["model_type"] = "qwen2_5_vl"; break;
            case "mrope_on_qwen2": config["model_type"] = "qwen2"; break;
        }

        Exception error = Assert.ThrowsAny<Exception>(() => Qwen2Config.Parse(config.ToJsonString()));
        Assert.True(error is InvalidDataException or NotSupportedException, error.GetType().Name);
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
        Assert.StartsWith("config.json", error.Message, StringComparison.Ordinal);
    }
}
