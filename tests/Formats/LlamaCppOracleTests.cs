using QwenSharp.Backend;
using QwenSharp.Formats;
using QwenSharp.Formats.Gguf;
using QwenSharp.Qwen2;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Formats;

/// <summary>
/// Our GGUF files and results against llama.cpp's on the same files: the fixtures written by our GGUF writer load in
/// llama.cpp and give its logits the values ours have (and the float64 reference has), and its tokenizer reads the
/// same ids from the same metadata.
/// </summary>
public sealed class LlamaCppOracleTests
{
    public static TheoryData<string, string> Fixtures_() => new()
    {
        { "tiny-qwen2", TestTokenizers.QwenDirectory },
        { "tiny-qwen2-f16-sharded", TestTokenizers.QwenDirectory },
        { "stories260K", QwenSharp.Tests.Support.Fixtures.DemoModel },
        { "stories260K-qwen2-bf16", QwenSharp.Tests.Support.Fixtures.DemoModel },
    };

    [Theory]
    [MemberData(nameof(Fixtures_))]
    public void GgufWeWrite_LlamaCppLogits_EqualOursAndTheReference(string fixture, string tokenizer)
    {
        Reference reference = Reference.Load(fixture);
        string gguf = GgufFixture.Write(TestTokenizers.WithTokenizer(QwenSharp.Tests.Support.Fixtures.ModelDirectory(fixture), tokenizer));
        float[][] theirs = LlamaCpp.Logits(gguf, reference.PromptIds);
        using IBackend backend = TestBackends.Create("cpu");
        using Qwen2Model model = Qwen2Model.Load(gguf, backend);
        float[][] ours = Model.ReferenceModelTests.AllPositionLogits(model, reference.PromptIds);

        for (int p = 0; p < reference.PromptIds.Length; p++)
        {
            double scale = ours[p].Max(Math.Abs), error = ours[p].Zip(theirs[p], (a, b) => (double)Math.Abs(a - b)).Max();
            // llama.cpp rounds the activations to the weights' 16-bit type inside its matrix products, so with F16 weights
            // (11-bit mantissas) logits move by ~1e-3 relative and with BF16 (8 bits) by up to ~1e-2; with F32 weights it
            // matches to f32 rounding (measured: 9e-6 on logits up to 19). Both sides meet the float64 reference elsewhere.
            double relative = model.Weights.LmHead.DType switch { DType.F32 => 1e-5, DType.F16 => 5e-3, _ => 2e-2 };
            double tolerance = relative * Math.Max(1, scale);
            Assert.True(error <= tolerance, $"position {p}: llama.cpp's logits differ from ours by {error:E3} (logits up to {scale:F3})");
        }
    }

    [SkippableTheory]
    [MemberData(nameof(QuantizedFixtures))]
    public void QuantizedGguf_LogitsEqualLlamaCppsOnTheSameNumbers(string fixture, string tokenizer, DType type)
    {
        Reference reference = Reference.Load(fixture);
        string model = TestTokenizers.WithTokenizer(QwenSharp.Tests.Support.Fixtures.ModelDirectory(fixture), tokenizer);
        string quantized = GgufFixture.Write(model, type);

        // llama.cpp on the very numbers our file holds, in f32: our blocks must give the products its f32 path does. The
        // 256-bit path's prefill keeps Q8_0's activations in f32 (the 512-bit one with AVX-VNNI rounds them to 8 bits).
        float[][] ours = LogitsOf(quantized, "cpu:vector256", reference.PromptIds);
        float[][] exact = LlamaCpp.Logits(GgufFixture.Write(model, type, dequantized: true), reference.PromptIds);
        AssertClose(ours, exact, 1e-4, "llama.cpp on the dequantized weights");

        // llama.cpp on the quantized file itself also rounds the activations to 8 bits inside each product (its
        // vec_dot_q8_0_q8_0): about 1% of the logits' range here, which bounds a wrong scale or block order well. Every CPU
        // path, so the integer prefill panels (AVX-VNNI) are held to it too.
        float[][] theirs = LlamaCpp.Logits(quantized, reference.PromptIds);
        foreach (string backend in new[] { "cpu:vector256", "cpu:vector512", "cpu" })
        {
            AssertClose(LogitsOf(quantized, backend, reference.PromptIds), theirs, 5e-2, $"llama.cpp on the quantized file ({backend})");
        }

        TestBackends.RequireGpu();
        AssertClose(ours, LogitsOf(quantized, TestBackends.Gpu, reference.PromptIds), 1e-4, "the GPU");
    }

    private static float[][] LogitsOf(string gguf, string backendName, int[] ids)
    {
        using IBackend backend = TestBackends.Create(backendName);
        using Qwen2Model model = Qwen2Model.Load(gguf, backend);
        return Model.ReferenceModelTests.AllPositionLogits(model, ids);
    }

    private static void AssertClose(float[][] ours, float[][] theirs, double relative, string what)
    {
        for (int p = 0; p < ours.Length; p++)
        {
            double scale = ours[p].Max(Math.Abs), error = ours[p].Zip(theirs[p], (a, b) => (double)Math.Abs(a - b)).Max();
            Assert.True(error <= relative * Math.Max(1, scale), $"position {p}: {what} differs from ours by {error:E3} (logits up to {scale:F3})");
        }
    }

    public static TheoryData<string, string, DType> QuantizedFixtures() => new()
    {
        { "tiny-qwen2", TestTokenizers.QwenDirectory, DType.Q8_0 },
        { "stories260K", QwenSharp.Tests.Support.Fixtures.DemoModel, DType.Q8_0 },
        { "stories260K-qwen2-bf16", QwenSharp.Tests.Support.Fixtures.DemoModel, DType.Q8_0 },
    };

    [Fact]
    public void GgufTokenizer_LlamaCppReadsTheSameIds()
    {
        string gguf = GgufFixture.Write(TestTokenizers.TinyQwenWithTokenizer);
        QwenSharp.Tokenization.Tokenizer ours = QwenSharp.GgufTokenizer.Load(gguf);

        using var cases = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(QwenSharp.Tests.Support.Fixtures.File("tokenizer", "qwen2.5-cases.json")));
        // llama.cpp does not apply Qwen2's NFC normalization: texts that NFC changes are left out.
        string[] texts = [.. cases.RootElement.EnumerateArray().Where(c => c.GetProperty("decoded_ok").GetBoolean()).Select(c => c.GetProperty("text").GetString()!)];
        int[][] theirs = LlamaCpp.Tokenize(gguf, texts);
        int compared = 0;
        for (int i = 0; i < texts.Length; i++)
        {
            Assert.Equal(theirs[i], ours.Encode(texts[i]));
            compared++;
        }

        Assert.True(compared > 100, $"only {compared} cases compared");
    }

    [Fact]
    public void GgufSentencepieceTokenizer_ReadsTheIdsLlamaCppAndTheFolderRead()
    {
        // The demo model's tokenizer is sentencepiece-style BPE (byte fallback): its GGUF carries tokens, scores and byte
        // tokens as tokenizer.ggml.model "llama", which we rebuild as merges ranked by score. The reference ids
        // (stories260K-cases.json, from Hugging Face tokenizers) and llama.cpp's own tokenizer on the same file must agree.
        string gguf = GgufFixture.Write(QwenSharp.Tests.Support.Fixtures.DemoModel);
        QwenSharp.Tokenization.Tokenizer ours = QwenSharp.GgufTokenizer.Load(gguf);

        using var cases = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(QwenSharp.Tests.Support.Fixtures.File("tokenizer", "stories260K-cases.json")));
        var texts = cases.RootElement.EnumerateArray().Select(c => c.GetProperty("text").GetString()!).ToList();
        texts.AddRange(["", " ", "  two  spaces", "héllo wörld ✓ 😀", "new\nline\ttab", "Lily's 3 cats!", "<s>hello</s>"]);
        int[][] theirs = LlamaCpp.Tokenize(gguf, texts);
        foreach ((System.Text.Json.JsonElement c, int i) in cases.RootElement.EnumerateArray().Select((c, i) => (c, i)))
        {
            Assert.Equal(c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()), ours.Encode(texts[i]));
        }

        for (int i = 0; i < texts.Count; i++)
        {
            Assert.True(theirs[i].SequenceEqual(ours.Encode(texts[i])), $"'{texts[i]}': llama.cpp {string.Join(",", theirs[i])}, ours {string.Join(",", ours.Encode(texts[i]))}");
            if (!texts[i].Contains("<s>", StringComparison.Ordinal))
            {
                Assert.Equal(texts[i], ours.Decode(ours.Encode(texts[i])));
            }
        }
    }

    [Fact]
    public void GgufWeWrite_Metadata_LlamaCppReadsTheConfig()
    {
        // Loading at all means llama.cpp accepted every key, name and shape; the vocabulary size must agree too.
        string gguf = GgufFixture.Write(TestTokenizers.TinyQwenWithTokenizer);
        using GgufCheckpoint checkpoint = GgufCheckpoint.Open(gguf);
        float[][] logits = LlamaCpp.Logits(gguf, [1, 2]);

        Assert.Equal(checkpoint.Config.VocabSize, logits[0].Length);
    }
}
