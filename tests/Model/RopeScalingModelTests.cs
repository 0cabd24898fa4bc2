using System.Text.Json.Nodes;
using QwenSharp.Backend;
using QwenSharp.Formats.Gguf;
using QwenSharp.Qwen2;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Model;

/// <summary>
/// RoPE scalings (linear, YaRN, Llama 3.1's) against llama.cpp on the same weights: the demo model's folder with a
/// <c>rope_scaling</c> added to its config.json, written as GGUF by <c>quantize</c>'s exporter (so llama.cpp reads the
/// scaling from the keys and tensor its own converter writes), over a prompt that runs well past the scaling's original
/// context. Ours from the folder and from the file, on the CPU and the GPU, must give llama.cpp's logits, and llama.cpp's
/// logits without the scaling must not (so the comparison sees the scaling).
/// </summary>
public sealed class RopeScalingModelTests
{
    /// <summary>Prompt length: past the original context of the cases that name a short one (48, 96).</summary>
    private const int Positions = 160;

    public static TheoryData<string, string> Scalings() => new()
    {
        // Original context 2000 puts YaRN's ramp over this model's pairs 1 to 3 (head_dim 8, theta 1e4), pair 2 half kept.
        { "yarn", """{"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 2000}""" },
        { "yarn-attention-factor", """{"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 48, "attention_factor": 1.5}""" },
        { "linear", """{"type": "linear", "factor": 2.5}""" },
        { "llama3", """{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 96}""" },
    };

    [Theory]
    [MemberData(nameof(Scalings))]
    public void ScaledRope_LogitsEqualLlamaCpps(string name, string scaling)
    {
        string folder = DemoWithScaling(scaling);
        string gguf = GgufFixture.Write(folder);
        int[] ids = Prompt();
        float[][] theirs = LlamaCpp.Logits(gguf, ids);

        // The comparison sees the scaling: llama.cpp without it is far from llama.cpp with it.
        float[][] plain = LlamaCpp.Logits(GgufFixture.Write(QwenSharp.Tests.Support.Fixtures.DemoModel), ids);
        Assert.True(LogitComparison.LargestRelativeError(plain, theirs) > 1e-2, $"{name}: the scaling moves llama.cpp's logits by only {LogitComparison.LargestRelativeError(plain, theirs):E2}");

        float[][] fromFolder = LogitsOf(folder, "cpu", ids);
        // llama.cpp computes the angles in f32 (ours in double), which moves the logits by ~1e-6 of their range here.
        LogitComparison.AssertClose(fromFolder, theirs, 1e-4, $"{name}: ours from the folder against llama.cpp");
        LogitComparison.AssertClose(LogitsOf(gguf, "cpu", ids), theirs, 1e-4, $"{name}: ours from the GGUF file against llama.cpp");

        TestBackends.RequireGpu();
        LogitComparison.AssertClose(LogitsOf(folder, TestBackends.Gpu, ids), fromFolder, 1e-4, $"{name}: the GPU against the CPU");
    }

    [Fact]
    public void QwenModelCardYarn_StretchesTheContextAndLoadsFromGguf()
    {
        // Qwen2.5's model cards add this rope_scaling and leave max_position_embeddings at 32768.
        string folder = DemoWithScaling("""{"factor": 4.0, "original_max_position_embeddings": 32768, "type": "yarn"}""", maxPositions: 32768);
        Qwen2Config config = Qwen2Config.Load(Path.Combine(folder, Qwen2Config.FileName));
        Assert.Equal(131072, config.MaxPositionEmbeddings);
        Assert.Equal(RopeScalingKind.Yarn, config.RopeScaling!.Kind);
        Assert.Equal(1 + (0.1 * Math.Log(4)), config.RopeScaling.AttentionFactor, 12);

        using GgufCheckpoint checkpoint = GgufCheckpoint.Open(GgufFixture.Write(folder));
        Assert.Equal(131072, checkpoint.Config.MaxPositionEmbeddings);
        Assert.Equal(config.RopeScaling with { AttentionFactor = 0 }, checkpoint.Config.RopeScaling! with { AttentionFactor = 0 });
        Assert.Equal(config.RopeScaling.AttentionFactor, checkpoint.Config.RopeScaling!.AttentionFactor, 6);
    }

    internal static string DemoWithScaling(string scaling, int? maxPositions = null)
    {
        JsonNode config = JsonNode.Parse(File.ReadAllText(Path.Combine(QwenSharp.Tests.Support.Fixtures.DemoModel, Qwen2Config.FileName)))!;
        config["rope_scaling"] = JsonNode.Parse(scaling);
        if (maxPositions is int max)
        {
            config["max_position_embeddings"] = max;
        }

        return Engine.EmbeddingTests.DemoWith((Qwen2Config.FileName, config.ToJsonString()));
    }

    private static int[] Prompt()
    {
        // The demo's tokens of a story, repeated: a prompt the model reads as text, long enough to pass the original context.
        int[] story = TestTokenizers.Stories.Encode("Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine with her dog.");
        return [.. Enumerable.Range(0, Positions).Select(i => story[i % story.Length])];
    }

    private static float[][] LogitsOf(string model, string backendName, int[] ids)
    {
        using IBackend backend = TestBackends.Create(backendName);
        using Qwen2Model loaded = Qwen2Model.Load(model, backend);
        return ReferenceModelTests.AllPositionLogits(loaded, ids);
    }
}
