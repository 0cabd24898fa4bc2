using QwenSharp.Cpu;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;
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

    [Theory]
    [InlineData(true, "bf16", 2.0)]
    [InlineData(false, "bf16", 2.0)]
    [InlineData(true, "q8_0", 34.0 / 32)]
    public void PerDecodeStep_CountsEveryLayerMatrixAndTheHeadOnce(bool tied, string dtype, double bytesPerWeight)
    {
        // By hand from the config: q and o are 64 × 64, k and v 32 × 64 (2 KV heads of 16), gate, up and down 96 × 64, in
        // each of 3 layers; the head is 160 × 64 whether it is the embedding itself (tied) or a matrix of its own, and
        // the embedding is not read whole.
        Qwen2Config config = Qwen2Config.Parse($$"""
            {"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 3, "num_attention_heads": 4,
             "num_key_value_heads": 2, "vocab_size": 160, "tie_word_embeddings": {{(tied ? "true" : "false")}}}
            """);
        long perLayer = (2L * 64 * 64) + (2L * 32 * 64) + (3L * 96 * 64);
        double expected = ((3 * perLayer) + (160L * 64)) * bytesPerWeight;
        Assert.True(DTypes.TryParse(dtype, out DType type));
        using var random = new RandomTensorSource(config, DType.BF16);
        using ITensorSource stored = type == DType.BF16 ? random : new QuantizingTensorSource(random, type);

        Assert.Equal(expected, Qwen2WeightBytes.PerDecodeStep(Qwen2WeightBinder.Bind(config, stored)));
    }

    [Fact]
    public void DecodeStepBytes_CountWhatTheCpusOneTokenProductsRead()
    {
        // By hand from RandomKQuantModel's shapes: per layer q and o 256 × 256, k and v 128 × 256, gate and up 512 × 256,
        // down 256 × 512, in 2 layers, and a head of 512 × 256 of its own: 1,310,720 weights, every matrix whole panels of
        // 16 rows and 64 columns. Q4_0 stores 18 bytes per 32; where one token reads the repacked panels (PanelDecode), 20,
        // or 18 where they keep f16 scales (PanelScales, chosen at load).
        const long weights = (2 * ((2L * 256 * 256) + (2L * 128 * 256) + (3L * 512 * 256))) + (512L * 256);
        foreach (bool halves in new[] { false, true })
        {
            using var backend = new CpuBackend(new CpuBackendOptions { Threads = 1 });
            Qwen2Model Load()
            {
                using ThreadOverride<PanelDecode.Switch>.Scope panels = PanelDecode.Assume(true);
                using ThreadOverride<PanelDecode.HalfScalesSwitch>.Scope scales = PanelDecode.AssumeHalfScales(halves);
                return Qwen2Model.Load(RandomKQuantModel.Folder.Value, backend, quantize: DType.Q4_0);
            }

            using Qwen2Model model = Load();
            using (PanelDecode.Assume(false))
            {
                Assert.Equal(weights / 32 * 18, model.DecodeStepBytes);
            }

            using (PanelDecode.Assume(true))
            {
                // The panels' kernels need AVX2 and FMA; elsewhere one token reads the rows. The one-token loop runs without
                // vpdpbusd only: with it the panels keep f32 scales.
                bool reads = PanelDecode.Pays(KernelPaths.Default, DType.Q4_0);
                int panelBlock = halves && PanelDecode.HasKernel(KernelPaths.Default) ? 18 : 20;
                Assert.Equal(weights / 32 * (reads ? panelBlock : 18), model.DecodeStepBytes);
            }
        }
    }

    [Fact]
    public void Load_MissingFolder_ThrowsDirectoryNotFound()
    {
        using var backend = new CpuBackend(new CpuBackendOptions { Threads = 1 });
        var e = Assert.Throws<DirectoryNotFoundException>(() => Qwen2Model.Load("/nonexistent/model", backend));
        Assert.Contains("model folder '/nonexistent/model' not found", e.Message);
    }
}
