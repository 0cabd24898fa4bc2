using QwenSharp.Cpu;
using QwenSharp.Qwen2;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Qwen2;

public sealed class WeightBindingTests
{
    [Fact]
    public void Load_CompleteCheckpoint_TiesHeadToEmbedding()
    {
        using var backend = new CpuBackend(new CpuBackendOptions { Threads = 1 });
        using Qwen2Model model = Qwen2Model.Load(TinyCheckpoint.Write(), backend);

        Assert.Same(model.Weights.EmbedTokens, model.Weights.LmHead);
    }

    [Fact]
    public void Load_MissingTensor_ThrowsNamingFileAndTensor()
    {
        using var backend = new CpuBackend(new CpuBackendOptions { Threads = 1 });
        var e = Assert.Throws<InvalidDataException>(() => Qwen2Model.Load(TinyCheckpoint.Write(skip: "model.layers.0.self_attn.k_proj.bias"), backend));
        Assert.Equal("model.safetensors: tensor 'model.layers.0.self_attn.k_proj.bias' not found", e.Message);
    }

    [Fact]
    public void Load_WrongShape_ThrowsWithFoundAndExpectedShape()
    {
        using var backend = new CpuBackend(new CpuBackendOptions { Threads = 1 });
        var e = Assert.Throws<InvalidDataException>(() =>
            Qwen2Model.Load(TinyCheckpoint.Write(reshape: ("model.layers.0.self_attn.q_proj.weight", [8, 7])), backend));
        Assert.Equal(
            "model.safetensors: tensor 'model.layers.0.self_attn.q_proj.weight' has shape [8, 7], expected [8, 8] (num_attention_heads*head_dim, hidden_size)",
            e.Message);
    }

    [Fact]
    public void Load_UntiedWithoutLmHead_ThrowsSayingWhyItIsNeeded()
    {
        using var backend = new CpuBackend(new CpuBackendOptions { Threads = 1 });
        string config = TinyCheckpoint.Config.Replace("\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false", StringComparison.Ordinal);
        var e = Assert.Throws<InvalidDataException>(() => Qwen2Model.Load(TinyCheckpoint.Write(config: config), backend));
        Assert.Contains("tensor 'lm_head.weight' not found (tie_word_embeddings is false", e.Message);
    }

    [Fact]
    public void Load_MissingFolder_ThrowsDirectoryNotFound()
    {
        using var backend = new CpuBackend(new CpuBackendOptions { Threads = 1 });
        var e = Assert.Throws<DirectoryNotFoundException>(() => Qwen2Model.Load("/nonexistent/model", backend));
        Assert.Contains("model folder '/nonexistent/model' not found", e.Message);
    }
}
