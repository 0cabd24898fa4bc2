using System.Text;
using QwenSharp.Backend;
using QwenSharp.Formats.Gguf;
using QwenSharp.Qwen2;
using QwenSharp.Tests.Model;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Qwen2;

/// <summary>
/// config.json's <c>rope_scaling</c> and a GGUF file's <c>rope.scaling.*</c> read with transformers' and llama.cpp's
/// fields and defaults, and what is wrong named by field. (What the scalings compute is held to llama.cpp in
/// <see cref="RopeScalingModelTests"/>.)
/// </summary>
public sealed class RopeScalingConfigTests
{
    private static Qwen2Config Parse(string scaling, string modelType = "qwen2") =>
        Qwen2Config.Parse(TinyCheckpoint.Config
            .Replace("\"qwen2\"", $"\"{modelType}\"", StringComparison.Ordinal)
            .Replace("\"rope_theta\": 10000.0", $"\"rope_theta\": 10000.0, \"rope_scaling\": {scaling}", StringComparison.Ordinal));

    [Fact]
    public void Yarn_TakesTransformersDefaults()
    {
        // No original_max_position_embeddings: transformers takes max_position_embeddings (64 here).
        RopeScaling yarn = Parse("""{"type": "yarn", "factor": 4}""").RopeScaling!;
        Assert.Equal((RopeScalingKind.Yarn, 4.0, 64, 32.0, 1.0, true), (yarn.Kind, yarn.Factor, yarn.OriginalContext, yarn.BetaFast, yarn.BetaSlow, yarn.Truncate));
        Assert.Equal(1 + (0.1 * Math.Log(4)), yarn.AttentionFactor, 14);
        Assert.Equal(256, Parse("""{"type": "yarn", "factor": 4}""").MaxPositionEmbeddings);
    }

    [Fact]
    public void Yarn_NamedFieldsOverrideTheDefaults()
    {
        RopeScaling yarn = Parse("""{"rope_type": "yarn", "factor": 40, "original_max_position_embeddings": 16, "beta_fast": 16, "beta_slow": 2, "mscale": 1.0, "mscale_all_dim": 0.5, "truncate": false}""").RopeScaling!;
        Assert.Equal((16, 16.0, 2.0, false), (yarn.OriginalContext, yarn.BetaFast, yarn.BetaSlow, yarn.Truncate));
        // DeepSeek's form: get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim).
        Assert.Equal((1 + (0.1 * Math.Log(40))) / (1 + (0.05 * Math.Log(40))), yarn.AttentionFactor, 14);
        Assert.Equal(1.25, Parse("""{"type": "yarn", "factor": 4, "attention_factor": 1.25, "mscale": 2, "mscale_all_dim": 1}""").RopeScaling!.AttentionFactor);
    }

    [Fact]
    public void Linear_DividesEveryFrequencyAndKeepsTheContext()
    {
        Qwen2Config config = Parse("""{"type": "linear", "factor": 2}""");
        Assert.Equal(64, config.MaxPositionEmbeddings);
        double[] plain = RopeAngles.InverseFrequencies(4, 10000);
        Assert.Equal(plain.Select(f => f / 2), config.RopeScaling!.InverseFrequencies(4, 10000));
        Assert.Equal(1.0, config.RopeScaling.AttentionFactor);
    }

    [Fact]
    public void Llama3_InverseFrequenciesAreTransformersOnLlama31sSettings()
    {
        // Llama 3.1 8B: head_dim 128, rope_theta 500000, factor 8, low/high_freq_factor 1/4, original context 8192.
        Qwen2Config config = Qwen2Config.Parse(TinyCheckpoint.Config
            .Replace("\"qwen2\"", "\"llama\"", StringComparison.Ordinal)
            .Replace("\"hidden_size\": 8,", "\"hidden_size\": 256, \"head_dim\": 128,", StringComparison.Ordinal)
            .Replace("\"rope_theta\": 10000.0", "\"rope_theta\": 500000.0, \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}", StringComparison.Ordinal));
        double[] ours = config.RopeScaling!.InverseFrequencies(128, 500000);

        // transformers' _compute_llama3_parameters, written in its own (inverse-frequency) form.
        double[] plain = RopeAngles.InverseFrequencies(128, 500000);
        int kept = 0, divided = 0, blended = 0;
        for (int i = 0; i < plain.Length; i++)
        {
            double wavelength = 2 * Math.PI / plain[i], expected;
            if (wavelength < 8192 / 4.0)
            {
                expected = plain[i];
                kept++;
            }
            else if (wavelength > 8192 / 1.0)
            {
                expected = plain[i] / 8;
                divided++;
            }
            else
            {
                double smooth = ((8192 / wavelength) - 1) / (4 - 1);
                expected = ((1 - smooth) * plain[i] / 8) + (smooth * plain[i]);
                blended++;
            }

            Assert.Equal(expected, ours[i], expected * 1e-12);
        }

        Assert.True(kept > 0 && divided > 0 && blended > 0, $"{kept} kept, {divided} divided, {blended} blended");
        Assert.Equal(64, config.MaxPositionEmbeddings);
    }

    [Theory]
    [InlineData("""{"type": "yarn"}""", "rope_scaling: rope type 'yarn' needs 'factor'")]
    [InlineData("""{"type": "linear", "factor": 0.5}""", "rope_scaling.factor is 0.5; a linear scaling stretches the context, so it must be at least 1")]
    [InlineData("""{"type": "yarn", "factor": "four"}""", "rope_scaling.factor is \"four\", expected a number")]
    [InlineData("""{"type": "yarn", "factor": 4, "original_max_position_embeddings": 0}""", "rope_scaling.original_max_position_embeddings is 0, expected a positive integer")]
    [InlineData("""{"type": "yarn", "factor": 4, "beta_fast": 1, "beta_slow": 2}""", "rope_scaling: beta_fast 1 must exceed beta_slow 2 > 0")]
    [InlineData("""{"type": "llama3", "factor": 8, "low_freq_factor": 1, "original_max_position_embeddings": 8192}""", "rope_scaling: rope type 'llama3' needs 'high_freq_factor'")]
    [InlineData("""{"type": "llama3", "factor": 8, "low_freq_factor": 4, "high_freq_factor": 1, "original_max_position_embeddings": 8192}""", "rope_scaling: high_freq_factor 1 must exceed low_freq_factor 4 > 0")]
    public void BadScaling_ThrowsNamingTheField(string scaling, string expected)
    {
        var e = Assert.Throws<InvalidDataException>(() => Parse(scaling));
        Assert.StartsWith("config.json: " + expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void GgufScalingTypeLlamaCppHasButWeDoNot_IsRefusedNamingTheKey()
    {
        string gguf = GgufFixture.Write(RopeScalingModelTests.DemoWithScaling("""{"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 2000}"""));
        Patch(gguf, "llama.rope.scaling.type", "yarn"u8, "long"u8);

        var e = Assert.Throws<NotSupportedException>(() => GgufCheckpoint.Open(gguf).Dispose());
        Assert.Equal($"{Path.GetFileName(gguf)}: llama.rope.scaling.type 'long' is not supported (QwenSharp runs none, linear and yarn)", e.Message);
    }

    [Fact]
    public void GgufDivisorOfZero_IsRefusedNamingTheTensor()
    {
        string folder = RopeScalingModelTests.DemoWithScaling("""{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 96}""");
        string gguf = GgufFixture.Write(folder);
        float[] divisors = [.. Qwen2Config.Load(Path.Combine(folder, Qwen2Config.FileName)).RopeScaling!.Divisors.Select(d => (float)d)];
        byte[] stored = System.Runtime.InteropServices.MemoryMarshal.AsBytes(divisors.AsSpan()).ToArray();
        divisors[1] = 0;
        Patch(gguf, null, stored, System.Runtime.InteropServices.MemoryMarshal.AsBytes(divisors.AsSpan()));

        var e = Assert.Throws<InvalidDataException>(() => GgufCheckpoint.Open(gguf).Dispose());
        Assert.Equal($"{Path.GetFileName(gguf)}: tensor 'rope_freqs.weight' holds 0 at 1, expected positive divisors", e.Message);
    }

    [Fact]
    public void ScalingOnQwen2VL_IsRefused()
    {
        string json = File.ReadAllText(Path.Combine(Fixtures.Directory("qwen2-vl"), "tiny-qwen2-vl", "config.json"));
        json = json.Replace("\"rope_scaling\": {", "\"rope_parameters\": {\"rope_type\": \"yarn\", \"factor\": 4}, \"rope_scaling\": {", StringComparison.Ordinal);
        var e = Assert.Throws<NotSupportedException>(() => Qwen2Config.Parse(json));
        Assert.Contains("rope_parameters type 'yarn' on a Qwen2-VL model is not supported", e.Message, StringComparison.Ordinal);
    }

    /// <summary>Replaces the first <paramref name="find"/> after <paramref name="after"/> (a key's name) in the file, same length.</summary>
    private static void Patch(string path, string? after, ReadOnlySpan<byte> find, ReadOnlySpan<byte> replace)
    {
        byte[] bytes = File.ReadAllBytes(path);
        int start = after is null ? 0 : bytes.AsSpan().IndexOf(Encoding.UTF8.GetBytes(after));
        Assert.True(start >= 0, $"no '{after}' in the file");
        int at = bytes.AsSpan(start).IndexOf(find);
        Assert.True(at >= 0, "the bytes to patch are not in the file");
        replace.CopyTo(bytes.AsSpan(start + at));
        File.WriteAllBytes(path, bytes);
    }
}
