using QwenSharp.Qwen2;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Qwen2;

public sealed class Qwen2ConfigTests
{
    [Fact]
    public void Load_Qwen25Config_ReadsEveryField()
    {
        Qwen2Config c = Qwen2Config.Load(Fixtures.File("qwen2.5-0.5b-instruct", "config.json"));

        Assert.Equal("qwen2", c.ModelType);
        Assert.Equal((896, 4864, 24, 14, 2, 64, 151936, 32768), (c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers,
            c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, c.VocabSize, c.MaxPositionEmbeddings));
        Assert.Equal(1e-6, c.RmsNormEps);
        Assert.Equal(1_000_000.0, c.RopeTheta);
        Assert.True(c.TieWordEmbeddings);
        Assert.True(c.QkvBias);
        Assert.False(c.OProjBias);
        Assert.Equal([151645], c.EosTokenIds);
        Assert.Equal(7, c.GroupSize);
    }

    [Fact]
    public void Load_LlamaConfig_HasNoBiasesAndExplicitHeadDim()
    {
        Qwen2Config c = Qwen2Config.Load(Path.Combine(Fixtures.DemoModel, "config.json"));

        Assert.Equal("llama", c.ModelType);
        Assert.False(c.QkvBias);
        Assert.Equal(8, c.HeadDim);
        Assert.Equal(1e-5, c.RmsNormEps);
    }

    [Theory]
    [InlineData("\"hidden_size\": 8,", "", "config.json: missing required field 'hidden_size'")]
    [InlineData("\"num_hidden_layers\": 1,", "\"num_hidden_layers\": 0,", "num_hidden_layers is 0, expected a positive integer")]
    [InlineData("\"num_key_value_heads\": 1,", "\"num_key_value_heads\": 3,", "num_attention_heads 2 is not a multiple of num_key_value_heads 3")]
    [InlineData("\"hidden_size\": 8,", "\"hidden_size\": \"eight\",", "config.json (line 1): 'hidden_size' is \"eight\", expected an integer")]
    public void Parse_BadField_ThrowsInvalidDataNamingIt(string find, string replace, string expected)
    {
        string json = TinyCheckpoint.Config.Replace(find, replace, StringComparison.Ordinal);
        var e = Assert.Throws<InvalidDataException>(() => Qwen2Config.Parse(json));
        Assert.Contains(expected, e.Message);
    }

    [Theory]
    [InlineData("\"model_type\": \"qwen2\"", "\"model_type\": \"qwen2_moe\"", "model_type 'qwen2_moe' is not supported")]
    [InlineData("\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"", "hidden_act 'gelu' is not supported")]
    [InlineData("\"rope_theta\": 10000.0", "\"rope_theta\": 10000.0, \"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 4.0}", "rope_scaling with rope_type 'dynamic' is not supported: dynamic NTK scaling changes every frequency with the sequence length")]
    [InlineData("\"rope_theta\": 10000.0", "\"rope_theta\": 10000.0, \"rope_scaling\": {\"rope_type\": \"longrope\", \"factor\": 4.0}", "rope_scaling with rope_type 'longrope' is not supported: LongRoPE")]
    [InlineData("\"rope_theta\": 10000.0", "\"rope_parameters\": {\"rope_type\": \"proportional\", \"rope_theta\": 10000.0}", "rope_parameters with rope_type 'proportional' is not supported (QwenSharp runs plain RoPE and the linear, yarn and llama3 scalings)")]
    [InlineData("\"rope_theta\": 10000.0", "\"rope_theta\": 10000.0, \"use_sliding_window\": true", "use_sliding_window true is not supported")]
    public void Parse_UnsupportedFeature_ThrowsNotSupportedNamingIt(string find, string replace, string expected)
    {
        string json = TinyCheckpoint.Config.Replace(find, replace, StringComparison.Ordinal);
        Assert.NotEqual(TinyCheckpoint.Config, json);
        var e = Assert.Throws<NotSupportedException>(() => Qwen2Config.Parse(json));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Parse_RopeParametersOfTransformersV5_GiveTheta()
    {
        string json = TinyCheckpoint.Config.Replace("\"rope_theta\": 10000.0", "\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 500000.0}", StringComparison.Ordinal);
        Assert.Equal(500000.0, Qwen2Config.Parse(json).RopeTheta);
    }

    [Fact]
    public void Parse_MissingOptionalFields_TakeTransformersDefaults()
    {
        string json = """{"model_type": "qwen2", "hidden_size": 8, "intermediate_size": 12, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 16}""";
        Qwen2Config c = Qwen2Config.Parse(json);

        Assert.Equal(2, c.NumKeyValueHeads);   // num_key_value_heads defaults to num_attention_heads
        Assert.Equal(4, c.HeadDim);            // hidden_size / num_attention_heads
        Assert.Equal(32768, c.MaxPositionEmbeddings);
        Assert.Equal(10000.0, c.RopeTheta);
        Assert.Equal(1e-6, c.RmsNormEps);
        Assert.False(c.TieWordEmbeddings);
    }

    [Fact]
    public void GenerationConfig_Qwen25_ListsBothEosIdsAndSamplingDefaults()
    {
        GenerationConfig g = GenerationConfig.Load(Fixtures.File("qwen2.5-0.5b-instruct", "generation_config.json"));

        Assert.Equal([151645, 151643], g.EosTokenIds);
        Assert.Equal(151643, g.PadTokenId);
        Assert.True(g.DoSample);
        Assert.Equal((0.7, 0.8, 20, 1.1), (g.Temperature!.Value, g.TopP!.Value, g.TopK!.Value, g.RepetitionPenalty!.Value));
    }

    [Fact]
    public void GenerationConfig_SingleEosId_ReadsAsList()
    {
        GenerationConfig g = GenerationConfig.Parse("""{"eos_token_id": 2, "max_length": 512}""");
        Assert.Equal([2], g.EosTokenIds);
        Assert.Equal(512, g.MaxLength);
    }
}
