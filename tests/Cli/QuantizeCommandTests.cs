using QwenSharp.Backend;
using QwenSharp.Formats;
using QwenSharp.Qwen2;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Cli;

/// <summary>qwensharp quantize writes GGUF files llama.cpp loads; --quantize at load gives the same model as loading that file.</summary>
public sealed class QuantizeCommandTests
{
    [Theory]
    [InlineData("q8_0", "Q8_0")]
    [InlineData("q4_0", "Q4_0")]
    [InlineData("q4_1", "Q4_1")]
    [InlineData("q5_1", "Q5_1")]
    public void Quantize_LlamaCppLoadsTheFileAndAgrees(string type, string stored)
    {
        Reference reference = Reference.Load("tiny-qwen2");
        string output = Path.Combine(Fixtures.TempDirectory(), $"tiny-{type}.gguf");

        CliRunner.Result result = CliRunner.Run("quantize", "--model", TestTokenizers.TinyQwenWithTokenizer, "--type", type, "--out", output);

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Matches($@"^wrote .*tiny-{type}\.gguf: \d+ tensors \(\d+ {stored}, \d+ F32\), ", result.Stdout);
        float[][] theirs = LlamaCpp.Logits(output, reference.PromptIds);
        using IBackend backend = TestBackends.Create("cpu");
        using Qwen2Model model = Qwen2Model.Load(output, backend);
        float[][] ours = Model.ReferenceModelTests.AllPositionLogits(model, reference.PromptIds);
        for (int p = 0; p < ours.Length; p++)
        {
            // llama.cpp's Q8_0 products round the activations to 8 bits too (see LlamaCppOracleTests).
            double scale = ours[p].Max(Math.Abs), error = ours[p].Zip(theirs[p], (a, b) => (double)Math.Abs(a - b)).Max();
            Assert.True(error <= 5e-2 * Math.Max(1, scale), $"position {p}: {error:E3}");
        }
    }

    [Fact]
    public void QuantizeAtLoad_EqualsLoadingTheQuantizedFile()
    {
        Reference reference = Reference.Load("stories260K-qwen2-bf16");
        string output = Path.Combine(Fixtures.TempDirectory(), "s.gguf");
        Assert.Equal(0, CliRunner.Run("quantize", "--model", Fixtures.Directory("stories260K-qwen2-bf16"), "--type", "q8_0", "--out", output).ExitCode);

        float[][] fromFile, atLoad;
        using (IBackend backend = TestBackends.Create("cpu"))
        using (Qwen2Model model = Qwen2Model.Load(output, backend))
        {
            fromFile = Model.ReferenceModelTests.AllPositionLogits(model, reference.PromptIds);
        }

        using (IBackend backend = TestBackends.Create("cpu"))
        using (Qwen2Model model = Qwen2Model.Load(Fixtures.Directory("stories260K-qwen2-bf16"), backend, DType.Q8_0))
        {
            atLoad = Model.ReferenceModelTests.AllPositionLogits(model, reference.PromptIds);
        }

        Assert.Equal(fromFile, atLoad);
    }

    [SkippableTheory]
    [InlineData("cpu", DType.Q8_0, true)]
    [InlineData("cpu", DType.Q5_0, false)]
    [InlineData("cpu", DType.Q4_1, false)]
    [InlineData(TestBackends.Gpu, DType.Q8_0, false)]
    public void QuantizeAtLoad_FreesWhatTheBackendCopied_AndGivesTheFilesLogits(string backendName, DType type, bool backendReadsThem)
    {
        // --quantize's matrices stay in memory only where the backend multiplies them from there (the CPU's Q8_0, zero-copy);
        // where it copied them (the GPU; the CPU's Q5_0 widened to Q8_0, Q4_1 split into codes and minimums) they are freed
        // once uploaded, their views kept for info without bytes, and the model still gives the logits of loading the same
        // file as quantize writes it.
        TestBackends.RequireDevice(backendName);
        string folder = Fixtures.Directory("stories260K-qwen2-bf16");
        Reference reference = Reference.Load("stories260K-qwen2-bf16");
        string file = Path.Combine(Fixtures.TempDirectory(), $"s-{DTypes.Name(type)}.gguf");
        Assert.Equal(0, CliRunner.Run("quantize", "--model", folder, "--type", DTypes.Name(type).ToLowerInvariant(), "--out", file).ExitCode);

        float[][] fromFile, atLoad;
        using (IBackend backend = TestBackends.Create(backendName))
        using (Qwen2Model model = Qwen2Model.Load(file, backend))
        {
            fromFile = Model.ReferenceModelTests.AllPositionLogits(model, reference.PromptIds);
        }

        using (IBackend backend = TestBackends.Create(backendName))
        using (var source = new QuantizingTensorSource(SafeTensorsCheckpoint.Open(folder), type))
        using (var model = new Qwen2Model(Qwen2Config.Load(Path.Combine(folder, Qwen2Config.FileName)), source, backend))
        {
            Assert.Equal(backendReadsThem, source.ConvertedBytes > 0);
            TensorView[] matrices = [.. model.Weights.DistinctTensors().Where(t => t.DType == type)];
            Assert.NotEmpty(matrices);
            Assert.All(matrices, t => Assert.Equal(backendReadsThem, t.Data != 0));
            atLoad = Model.ReferenceModelTests.AllPositionLogits(model, reference.PromptIds);
        }

        Assert.Equal(fromFile, atLoad);
    }

    [Fact]
    public void Quantize_BadInput_OneLineAndNothingOverwritten()
    {
        string existing = Path.Combine(Fixtures.TempDirectory(), "keep.gguf");
        File.WriteAllText(existing, "mine");

        foreach ((string[] args, string message) in new (string[], string)[]
        {
            (["quantize", "--model", Fixtures.DemoModel, "--type", "q8_0", "--out", existing], "already exists; quantize does not overwrite anything"),
            (["quantize", "--model", Fixtures.DemoModel, "--type", "q3", "--out", existing + "2"], "--type 'q3' is not one of q8_0, q4_0, q5_0, q4_1, q5_1, q4_k, q5_k, q6_k, f16, bf16, f32"),
            (["quantize", "--model", existing, "--type", "q8_0", "--out", existing + "3"], "is a file: quantize reads a Hugging Face model folder"),
            (["quantize", "--type", "q8_0", "--out", existing + "4"], "quantize needs --model DIR"),
            (["generate", "--prompt-ids", "1", "--quantize", "q4"], "--quantize 'q4' is not one of q8_0, q4_0, q5_0, q4_1, q5_1, q4_k, q5_k, q6_k"),
            (["quantize", "--model", Fixtures.DemoModel, "--type", "q3_k", "--out", existing + "5"], "--type 'q3_k' is not one of q8_0, q4_0, q5_0, q4_1, q5_1, q4_k, q5_k, q6_k, f16, bf16, f32"),
            (["bench", "--config", Path.Combine(Fixtures.DemoModel, "config.json"), "--random-weights", "--dtype", "q8_0"], "--dtype 'q8_0' is not one of bf16, f16, f32"),
        })
        {
            CliRunner.Result result = CliRunner.Run(args);
            Assert.Equal(2, result.ExitCode);
            Assert.Contains(message, Assert.Single(result.ErrorLines), StringComparison.Ordinal);
        }

        Assert.Equal("mine", File.ReadAllText(existing));
    }
}
