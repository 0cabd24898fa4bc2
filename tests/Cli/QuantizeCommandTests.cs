using QwenSharp.Backend;
using QwenSharp.Formats;
using QwenSharp.Formats.Gguf;
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
        // llama.cpp rounds the activations to 8 bits inside every product with these weights (see LlamaCppOracleTests), as
        // our one-token steps do on every CPU; our prefill keeps them in f32 where the CPU has no VNNI, and on an AVX2-only
        // Zen 3 that alone put one Q4_1 position 7% past this bound (all positions at once: 0.149 on logits up to 2.79; one
        // token a step: at most 77% of it).
        float[][] ours = Model.ReferenceModelTests.OneTokenPerStepLogits(model, reference.PromptIds);
        for (int p = 0; p < ours.Length; p++)
        {
            double scale = ours[p].Max(Math.Abs), error = ours[p].Zip(theirs[p], (a, b) => (double)Math.Abs(a - b)).Max();
            Assert.True(error <= 5e-2 * Math.Max(1, scale), $"position {p}: {error:E3}");
        }
    }

    [Theory]
    [InlineData("stories260K-qwen2-bf16", "q8_0")]
    [InlineData("twelve layers", "q4_k_m")]
    [InlineData("twelve layers", "q4_k_s")]
    public void QuantizeAtLoad_EqualsLoadingTheQuantizedFile(string fixture, string type)
    {
        string folder = fixture == "twelve layers" ? RandomKQuantModel.TwelveLayerFolder.Value : Fixtures.Directory(fixture);
        int[] ids = fixture == "twelve layers" ? [1, 20, 300, 4, 55, 6, 77, 8] : Reference.Load(fixture).PromptIds;
        string output = Path.Combine(Fixtures.TempDirectory(), $"{type}.gguf");
        Assert.Equal(0, CliRunner.Run("quantize", "--model", folder, "--type", type, "--out", output).ExitCode);
        Assert.True(QuantizationMix.TryParse(type, out QuantizationMix? mix));

        float[][] fromFile, atLoad;
        DType[] fileTypes, loadTypes;
        using (IBackend backend = TestBackends.Create("cpu"))
        using (Qwen2Model model = Qwen2Model.Load(output, backend))
        {
            fromFile = Model.ReferenceModelTests.AllPositionLogits(model, ids);
            fileTypes = [.. model.Weights.Layers.SelectMany(l => new[] { l.VProj.DType, l.DownProj.DType })];
        }

        using (IBackend backend = TestBackends.Create("cpu"))
        using (Qwen2Model model = Qwen2Model.Load(folder, backend, mix))
        {
            atLoad = Model.ReferenceModelTests.AllPositionLogits(model, ids);
            loadTypes = [.. model.Weights.Layers.SelectMany(l => new[] { l.VProj.DType, l.DownProj.DType })];
        }

        Assert.Equal(fromFile, atLoad);
        Assert.Equal(fileTypes, loadTypes);
        // A mix stores some layers' value and down projections with more bits than others.
        Assert.True(mix.IsPure || fileTypes.Distinct().Count() == 2, string.Join(", ", fileTypes));
    }

    [Fact]
    public void LibraryOptions_TakeATypeOrAMix()
    {
        // QwenModelOptions.Quantize takes a DType as before (every matrix in it) or one of llama-quantize's mixes.
        string folder = RandomKQuantModel.TwelveLayerFolder.Value;
        using (QwenModel single = QwenModel.Load(folder, new QwenModelOptions { Quantize = DType.Q8_0, Threads = 1 }))
        {
            Assert.All(single.Model.Weights.Layers, l => Assert.Equal((DType.Q8_0, DType.Q8_0), (l.VProj.DType, l.DownProj.DType)));
        }

        QuantizationMix q4km = QuantizationMix.Mixes.Single(m => m.Name == "q4_k_m");
        using QwenModel mixed = QwenModel.Load(folder, new QwenModelOptions { Quantize = q4km, Threads = 1 });
        // llama.cpp's use_more_bits for 12 layers: 0 (first eighth), 10 and 11 (last eighth), 3, 6 and 9 (every third).
        int[] raised = [0, 3, 6, 9, 10, 11];
        DType[] expected = [.. Enumerable.Range(0, 12).Select(l => raised.Contains(l) ? DType.Q6_K : DType.Q4_K)];
        Assert.Equal(expected, mixed.Model.Weights.Layers.Select(l => l.VProj.DType));
        Assert.Equal(expected, mixed.Model.Weights.Layers.Select(l => l.DownProj.DType));
    }

    [SkippableTheory]
    [MemberData(nameof(TestBackends.DevicesData), MemberType = typeof(TestBackends))]
    public void Iq3AtLoad_GivesTheLogitsOfItsFile(string device)
    {
        // --quantize iq3_m holds each IQ3_S matrix as the Q6_K that has its values, as loading the IQ3_M file does.
        TestBackends.RequireDevice(device);
        string folder = RandomKQuantModel.Folder.Value, file = Path.Combine(Fixtures.TempDirectory(), "iq3_m.gguf");
        Assert.Equal(0, CliRunner.Run("quantize", "--model", folder, "--type", "iq3_m", "--out", file).ExitCode);
        using (GgufFile written = GgufFile.Open(file))
        {
            Assert.Equal(GgmlType.IQ3_S, (GgmlType)written.Tensors["blk.0.ffn_up.weight"].Type);
        }

        int[] ids = [1, 17, 300, 42, 511, 7];
        Assert.True(QuantizationMix.TryParse("iq3_m", out QuantizationMix? mix));
        float[][] fromFile, atLoad;
        using (IBackend backend = TestBackends.Create(device))
        using (Qwen2Model model = Qwen2Model.Load(file, backend))
        {
            fromFile = Model.ReferenceModelTests.AllPositionLogits(model, ids);
        }

        using (IBackend backend = TestBackends.Create(device))
        using (Qwen2Model model = Qwen2Model.Load(folder, backend, mix))
        {
            Assert.Equal(DType.Q6_K, model.Weights.Layers[0].UpProj.DType);
            atLoad = Model.ReferenceModelTests.AllPositionLogits(model, ids);
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

    public static TheoryData<string, string, LLama.Native.LLamaFtype> Mixes() => new()
    {
        // 12 layers with 256-wide rows, untied: the mixes' rules by layer.
        { "twelve layers", "q4_k_m", LLama.Native.LLamaFtype.MOSTLY_Q4_K_M },
        { "twelve layers", "q4_k_s", LLama.Native.LLamaFtype.MOSTLY_Q4_K_S },
        { "twelve layers", "q5_k_m", LLama.Native.LLamaFtype.MOSTLY_Q5_K_M },
        { "twelve layers", "q5_k_s", LLama.Native.LLamaFtype.MOSTLY_Q5_K_S },
        { "twelve layers", "q3_k_m", LLama.Native.LLamaFtype.MOSTLY_Q3_K_M },
        { "twelve layers", "q3_k_l", LLama.Native.LLamaFtype.MOSTLY_Q3_K_L },
        { "twelve layers", "q3_k_s", LLama.Native.LLamaFtype.MOSTLY_Q3_K_S },
        // Q2_K's value projection by the query heads a key/value head serves: 4 here (Q4_K), 2 in the two-layer model (Q3_K).
        { "twelve layers", "q2_k", LLama.Native.LLamaFtype.MOSTLY_Q2_K },
        { "two layers", "q2_k", LLama.Native.LLamaFtype.MOSTLY_Q2_K },
        // 32-wide rows and an embedding tied to the output: every choice falls back, the embedding takes the output's Q8_0.
        { "tiny-qwen2", "q4_k_m", LLama.Native.LLamaFtype.MOSTLY_Q4_K_M },
        { "tiny-qwen2", "q5_k_s", LLama.Native.LLamaFtype.MOSTLY_Q5_K_S },
        // IQ4: the value projection in Q5_K with 4 query heads a key/value head, and (no importance matrix) the first
        // eighth's down projection; IQ4_XS falls back to IQ4_NL on 32-wide rows.
        { "twelve layers", "iq4_xs", LLama.Native.LLamaFtype.MOSTLY_IQ4_XS },
        { "twelve layers", "iq4_nl", LLama.Native.LLamaFtype.MOSTLY_IQ4_NL },
        { "two layers", "iq4_xs", LLama.Native.LLamaFtype.MOSTLY_IQ4_XS },
        { "tiny-qwen2", "iq4_xs", LLama.Native.LLamaFtype.MOSTLY_IQ4_XS },
        // IQ3: IQ3_S matrices; IQ3_M's value, attention-output and first eighth's down projections Q4_K; 32-wide rows fall
        // back to IQ4_NL. (IQ3_XS's IQ3_XXS matrices need an importance matrix: ImatrixTests.)
        { "twelve layers", "iq3_s", LLama.Native.LLamaFtype.MOSTLY_IQ3_S },
        { "twelve layers", "iq3_m", LLama.Native.LLamaFtype.MOSTLY_IQ3_M },
        { "two layers", "iq3_s", LLama.Native.LLamaFtype.MOSTLY_IQ3_S },
        { "tiny-qwen2", "iq3_m", LLama.Native.LLamaFtype.MOSTLY_IQ3_M },
    };

    [Theory]
    [MemberData(nameof(Mixes))]
    public void Mix_StoresEveryTensorAsLlamaCppsQuantizeDoes(string model, string mix, LLama.Native.LLamaFtype ftype)
    {
        // llama.cpp's quantize on the same numbers in F32 is the oracle: each tensor of its file must have the same type and
        // bytes in ours.
        string folder = model switch
        {
            "tiny-qwen2" => TestTokenizers.TinyQwenWithTokenizer,
            "two layers" => RandomKQuantModel.Folder.Value,
            _ => RandomKQuantModel.TwelveLayerFolder.Value,
        };
        string theirsPath = LlamaCpp.Quantize(GgufFixture.Write(folder, dequantized: true), ftype);
        string oursPath = Path.Combine(Fixtures.TempDirectory(), $"{mix}.gguf");

        CliRunner.Result result = CliRunner.Run("quantize", "--model", folder, "--type", mix, "--out", oursPath);

        Assert.True(result.ExitCode == 0, result.Stderr);
        using GgufFile ours = GgufFile.Open(oursPath);
        AssertSameTensors(theirsPath, oursPath);

        Assert.Equal(Convert.ToUInt32(ftype, System.Globalization.CultureInfo.InvariantCulture), Convert.ToUInt32(ours.Metadata["general.file_type"], System.Globalization.CultureInfo.InvariantCulture));
        Assert.Matches(@"\d+ (Q6_K|Q8_0|Q5_K|Q4_K|Q3_K)", result.Stdout);
    }

    /// <summary>Every tensor of llama.cpp's file in ours, of the same type and bytes.</summary>
    private static void AssertSameTensors(string theirsPath, string oursPath)
    {
        using GgufFile theirs = GgufFile.Open(theirsPath);
        using GgufFile ours = GgufFile.Open(oursPath);
        Assert.Equal(theirs.Tensors.Keys.Order(StringComparer.Ordinal), ours.Tensors.Keys.Order(StringComparer.Ordinal));
        foreach (GgufTensorInfo tensor in theirs.Tensors.Values)
        {
            GgufTensorInfo mine = ours.Tensors[tensor.Name];
            Assert.True(tensor.Type == mine.Type, $"{tensor.Name}: llama.cpp stores it as {GgmlTypes.Name(tensor.Type)}, we as {GgmlTypes.Name(mine.Type)}");
            unsafe
            {
                var expected = new ReadOnlySpan<byte>((void*)theirs.DataOf(tensor), checked((int)tensor.ByteLength));
                var actual = new ReadOnlySpan<byte>((void*)ours.DataOf(mine), checked((int)mine.ByteLength));
                Assert.True(expected.SequenceEqual(actual), $"{tensor.Name} ({GgmlTypes.Name(tensor.Type)}): bytes differ from llama.cpp's");
            }
        }
    }

    public static TheoryData<string, string, string[], LLama.Native.GGMLType?, LLama.Native.GGMLType?, bool> OverrideCases => new()
    {
        // An untied head and embedding: each given its own type.
        { "two layers", "q4_k_m", ["--output-tensor-type", "q8_0", "--token-embedding-type", "q5_k"], LLama.Native.GGMLType.GGML_TYPE_Q8_0, LLama.Native.GGMLType.GGML_TYPE_Q5_K, true },
        { "two layers", "q3_k_m", ["--leave-output-tensor"], null, null, false },
        { "two layers", "q5_k_m", ["--token-embedding-type", "q4_0"], null, LLama.Native.GGMLType.GGML_TYPE_Q4_0, true },
        // An embedding tied to the head: the output type reaches it through the mix; an embedding type overrides that by name.
        { "tiny-qwen2", "q4_k_m", ["--output-tensor-type", "q8_0"], LLama.Native.GGMLType.GGML_TYPE_Q8_0, null, true },
        { "tiny-qwen2", "q4_k_m", ["--output-tensor-type", "q8_0", "--token-embedding-type", "q4_0"], LLama.Native.GGMLType.GGML_TYPE_Q8_0, LLama.Native.GGMLType.GGML_TYPE_Q4_0, true },
    };

    [Theory]
    [MemberData(nameof(OverrideCases))]
    public void OutputAndEmbeddingTypes_AsLlamaQuantizesOptionsSetThem(string model, string mix, string[] options,
        LLama.Native.GGMLType? outputType, LLama.Native.GGMLType? embeddingType, bool quantizeOutput)
    {
        string folder = model == "tiny-qwen2" ? TestTokenizers.TinyQwenWithTokenizer : RandomKQuantModel.Folder.Value;
        LLama.Native.LLamaFtype ftype = mix switch
        {
            "q3_k_m" => LLama.Native.LLamaFtype.MOSTLY_Q3_K_M,
            "q5_k_m" => LLama.Native.LLamaFtype.MOSTLY_Q5_K_M,
            _ => LLama.Native.LLamaFtype.MOSTLY_Q4_K_M,
        };
        string theirsPath = LlamaCpp.Quantize(GgufFixture.Write(folder, dequantized: true), ftype, outputType, embeddingType, quantizeOutput);
        string oursPath = Path.Combine(Fixtures.TempDirectory(), $"{mix}-overridden.gguf");

        CliRunner.Result result = CliRunner.Run(["quantize", "--model", folder, "--type", mix, .. options, "--out", oursPath]);

        Assert.True(result.ExitCode == 0, result.Stderr);
        AssertSameTensors(theirsPath, oursPath);
    }

    [Fact]
    public void TensorTypePatterns_SetTheTypesOfTheMatricesTheyFind()
    {
        // llama.cpp's --tensor-type reaches its library as a C++ vector, which LLamaSharp cannot pass: checked here by its
        // definition (the first pattern found sets the type in place of the mix's; the patterns are regular expressions),
        // the bytes by ggml's own quantizer.
        string folder = RandomKQuantModel.Folder.Value, directory = Fixtures.TempDirectory();
        string plain = Path.Combine(directory, "plain.gguf"), patterned = Path.Combine(directory, "patterned.gguf"), rules = Path.Combine(directory, "rules.txt");
        File.WriteAllText(rules, "ATTN_V=q4_k\nblk\\.1\\.ffn_down=q8_0  attn_q=q3_k ffn_down=q5_k\n");
        Assert.Equal(0, CliRunner.Run("quantize", "--model", folder, "--type", "q4_k_m", "--out", plain).ExitCode);

        CliRunner.Result result = CliRunner.Run("quantize", "--model", folder, "--type", "q4_k_m", "--tensor-type", "attn_k=q5_0", "--tensor-type-file", rules, "--out", patterned);

        Assert.True(result.ExitCode == 0, result.Stderr);
        using GgufFile before = GgufFile.Open(plain), after = GgufFile.Open(patterned);
        var expected = new Dictionary<string, GgmlType>
        {
            ["blk.0.attn_k.weight"] = GgmlType.Q5_0, ["blk.1.attn_k.weight"] = GgmlType.Q5_0,
            ["blk.1.attn_v.weight"] = GgmlType.Q4_K,                    // Q6_K by the mix (use_more_bits' last layer), then the pattern
            ["blk.0.attn_v.weight"] = GgmlType.Q4_K,                    // the mix's type already
            ["blk.1.ffn_down.weight"] = GgmlType.Q8_0,                  // Q6_K by the mix: the first pattern found wins
            ["blk.0.ffn_down.weight"] = GgmlType.Q5_K,
            ["blk.0.attn_q.weight"] = GgmlType.Q3_K, ["blk.1.attn_q.weight"] = GgmlType.Q3_K,    // a k-quant name --tensor-type once refused
        };
        Assert.Equal(GgmlType.Q6_K, (GgmlType)before.Tensors["blk.1.attn_v.weight"].Type);
        Assert.Equal(GgmlType.Q6_K, (GgmlType)before.Tensors["blk.1.ffn_down.weight"].Type);
        foreach (GgufTensorInfo tensor in after.TensorOrder)
        {
            GgmlType type = (GgmlType)tensor.Type;
            GgmlType want = expected.TryGetValue(tensor.Name, out GgmlType given) ? given : (GgmlType)before.Tensors[tensor.Name].Type;
            Assert.True(want == type, $"{tensor.Name}: {type}, expected {want}");
        }

        using SafeTensorsCheckpoint checkpoint = SafeTensorsCheckpoint.Open(folder);
        Assert.True(checkpoint.TryGetView("model.layers.1.mlp.down_proj.weight", out TensorView? down));
        GgufTensorInfo written = after.Tensors["blk.1.ffn_down.weight"];
        byte[] ggml = Ggml.QuantizeChunk(written.Type, TensorValues.ToSingle(down), (int)down.Shape[0], (int)down.Shape[1], null, (int)(written.ByteLength / down.Shape[0]));
        unsafe
        {
            Assert.True(new ReadOnlySpan<byte>((void*)after.DataOf(written), (int)written.ByteLength).SequenceEqual(ggml));
        }
    }

    [Theory]
    [InlineData("q4_k_m", LLama.Native.LLamaFtype.MOSTLY_Q4_K_M)]
    [InlineData("q5_k_s", LLama.Native.LLamaFtype.MOSTLY_Q5_K_S)]
    [InlineData("q8_0", LLama.Native.LLamaFtype.MOSTLY_Q8_0)]
    public void GgufFile_QuantizedAsLlamaQuantizeDoes_TensorsAndMetadata(string mix, LLama.Native.LLamaFtype ftype)
    {
        // An F16 GGUF file (matrices in F16, vectors in F32, as llama.cpp's converter writes --outtype f16) given to both.
        string source = GgufFixture.Write(RandomKQuantModel.TwelveLayerFolder.Value, DType.F16);
        string theirsPath = LlamaCpp.Quantize(source, ftype);
        string oursPath = Path.Combine(Fixtures.TempDirectory(), $"from-f16-{mix}.gguf");

        CliRunner.Result result = CliRunner.Run("quantize", "--model", source, "--type", mix, "--out", oursPath);

        Assert.True(result.ExitCode == 0, result.Stderr);
        using GgufFile theirs = GgufFile.Open(theirsPath);
        using GgufFile ours = GgufFile.Open(oursPath);
        Assert.Equal(theirs.TensorOrder.Select(t => t.Name).Order(StringComparer.Ordinal), ours.TensorOrder.Select(t => t.Name).Order(StringComparer.Ordinal));
        foreach (GgufTensorInfo tensor in theirs.TensorOrder)
        {
            GgufTensorInfo mine = ours.Tensors[tensor.Name];
            Assert.True(tensor.Type == mine.Type, $"{tensor.Name}: llama.cpp stores it as {GgmlTypes.Name(tensor.Type)}, we as {GgmlTypes.Name(mine.Type)}");
            Assert.Equal(tensor.Dimensions, mine.Dimensions);
            unsafe
            {
                Assert.True(new ReadOnlySpan<byte>((void*)theirs.DataOf(tensor), checked((int)tensor.ByteLength)).SequenceEqual(new ReadOnlySpan<byte>((void*)ours.DataOf(mine), checked((int)mine.ByteLength))),
                    $"{tensor.Name}: bytes differ from llama.cpp's");
            }
        }

        // Every key llama-quantize wrote, with its type and value (the source's carried over, the file type and quantization version its own).
        foreach (GgufRawValue value in theirs.RawMetadata)
        {
            GgufRawValue? mine = ours.RawMetadata.FirstOrDefault(v => v.Key == value.Key);
            Assert.True(mine is not null, $"{value.Key} is missing");
            Assert.True(value.Type == mine.Type && theirs.RawBytes(value).SequenceEqual(ours.RawBytes(mine)), $"{value.Key}: {ours.Metadata[value.Key]} against llama.cpp's {theirs.Metadata[value.Key]}");
        }

        Assert.Equal(theirs.RawMetadata.Select(v => v.Key).Order(StringComparer.Ordinal), ours.RawMetadata.Select(v => v.Key).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void GgufFile_AlreadyQuantized_RefusedUnlessAllowed()
    {
        string q8 = GgufFixture.Write(RandomKQuantModel.TwelveLayerFolder.Value, DType.Q8_0);
        string refused = Path.Combine(Fixtures.TempDirectory(), "refused.gguf"), allowed = Path.Combine(Fixtures.TempDirectory(), "allowed.gguf");

        CliRunner.Result result = CliRunner.Run("quantize", "--model", q8, "--type", "q4_k_m", "--out", refused);

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("is already Q8_0; quantizing a quantized file again loses more", Assert.Single(result.ErrorLines), StringComparison.Ordinal);
        Assert.False(File.Exists(refused));

        Assert.Equal(0, CliRunner.Run("quantize", "--model", q8, "--type", "q4_k_m", "--out", allowed, "--allow-requantize").ExitCode);

        // A GGUF file of another architecture (a LoRA adapter is "general.type adapter" of its model's; a projector is "clip").
        byte[] bytes = File.ReadAllBytes(q8);
        int at = bytes.AsSpan().IndexOf("llama"u8);
        "clip!"u8.CopyTo(bytes.AsSpan(at));
        string clip = Path.Combine(Fixtures.TempDirectory(), "clip.gguf");
        File.WriteAllBytes(clip, bytes);
        CliRunner.Result other = CliRunner.Run("quantize", "--model", clip, "--type", "q4_k_m", "--out", refused);
        Assert.Equal(2, other.ExitCode);
        Assert.Contains("general.architecture 'clip!'; quantize reads GGUF files of \"qwen2\" and \"llama\" models", Assert.Single(other.ErrorLines), StringComparison.Ordinal);
        using GgufFile written = GgufFile.Open(allowed);
        Assert.Equal((int)GgmlType.Q6_K, written.Tensors["blk.0.attn_v.weight"].Type);
        Assert.Equal((int)GgmlType.Q4_K, written.Tensors["blk.1.attn_v.weight"].Type);
    }

    [Fact]
    public void SplitOutput_IsPartsThatRunFromTheFirst_AsTheWholeFileRuns_AndSplitInputQuantizesWhole()
    {
        string folder = Fixtures.TempDirectory();
        string whole = Path.Combine(folder, "stories-q8_0.gguf"), split = Path.Combine(folder, "parts", "stories-q8_0.gguf");
        Directory.CreateDirectory(Path.GetDirectoryName(split)!);
        Assert.Equal(0, CliRunner.Run("quantize", "--model", Fixtures.DemoModel, "--type", "q8_0", "--out", whole).ExitCode);

        CliRunner.Result result = CliRunner.Run("quantize", "--model", Fixtures.DemoModel, "--type", "q8_0", "--out", split, "--split-max-tensors", "16");

        Assert.True(result.ExitCode == 0, result.Stderr);
        string[] parts = [.. Directory.GetFiles(Path.GetDirectoryName(split)!).Order(StringComparer.Ordinal)];
        using (GgufFile one = GgufFile.Open(whole))
        {
            int count = (one.TensorOrder.Count + 15) / 16;
            Assert.Equal(Enumerable.Range(1, count).Select(i => Path.Combine(folder, "parts", $"stories-q8_0-{i:D5}-of-{count:D5}.gguf")), parts);
            Assert.StartsWith($"wrote {parts[0]} to stories-q8_0-{count:D5}-of-{count:D5}.gguf ({count} files; load the first): {one.TensorOrder.Count} tensors (", result.Stdout, StringComparison.Ordinal);
        }

        string[] generate = ["generate", "--prompt", "Once upon a time", "--max-new-tokens", "12", "--greedy"];
        CliRunner.Result fromParts = CliRunner.Run([.. generate, "--model", parts[0]]);
        Assert.True(fromParts.ExitCode == 0, fromParts.Stderr);
        Assert.Equal(CliRunner.Run([.. generate, "--model", whole]).Stdout, fromParts.Stdout);
        Assert.Contains($"split into    {parts.Length} files ({Path.GetFileName(parts[1])}, ", CliRunner.Run("info", "--model", parts[0]).Stdout, StringComparison.Ordinal);

        // A limit the whole model fits in: one part, named as a part (as llama-gguf-split does).
        string fits = Path.Combine(folder, "fits.gguf");
        CliRunner.Result fitted = CliRunner.Run("quantize", "--model", Fixtures.DemoModel, "--type", "q8_0", "--out", fits, "--split-max-size", "1G");
        Assert.True(fitted.ExitCode == 0, fitted.Stderr);
        Assert.StartsWith($"wrote {Path.Combine(folder, "fits-00001-of-00001.gguf")}: ", fitted.Stdout, StringComparison.Ordinal);

        // A split file as the input: read whole, written as one file (no split keys carried over), the same tensors.
        string again = Path.Combine(folder, "again.gguf");
        Assert.Equal(0, CliRunner.Run("quantize", "--model", parts[0], "--type", "q8_0", "--out", again).ExitCode);
        using GgufFile rewritten = GgufFile.Open(again), original = GgufFile.Open(whole);
        Assert.DoesNotContain(rewritten.Metadata.Keys, GgufSplit.IsSplitKey);
        Assert.Equal(original.TensorOrder.Select(t => (t.Name, t.Type, t.ByteLength)), rewritten.TensorOrder.Select(t => (t.Name, t.Type, t.ByteLength)));
    }

    [Fact]
    public void TypeCopy_MergesASplitModel_AndSplitsAWholeOne_AsStored_WhichLlamaCppLoads()
    {
        string folder = Fixtures.TempDirectory();
        string whole = GgufFixture.Write(TestTokenizers.TinyQwenWithTokenizer, DType.Q8_0);
        string[] parts = Ggml.SplitAsGgufSplit(whole, Path.Combine(folder, "tiny"), tensorsPerPart: 7);

        // Merged (llama-gguf-split --merge): the whole file's tensors, bytes and metadata.
        string merged = Path.Combine(folder, "merged.gguf");
        CliRunner.Result merge = CliRunner.Run("quantize", "--model", parts[0], "--type", "copy", "--out", merged);
        Assert.True(merge.ExitCode == 0, merge.Stderr);
        using (GgufFile original = GgufFile.Open(whole), copy = GgufFile.Open(merged))
        {
            Assert.Equal(original.TensorOrder.Select(t => (t.Name, t.Type)), copy.TensorOrder.Select(t => (t.Name, t.Type)));
            foreach (GgufTensorInfo tensor in original.TensorOrder)
            {
                Assert.True(Bytes(original, tensor).SequenceEqual(Bytes(copy, copy.Tensors[tensor.Name])), tensor.Name);
            }

            Assert.Equal(original.RawMetadata.Select(k => k.Key), copy.RawMetadata.Select(k => k.Key));
            Assert.All(original.RawMetadata, k => Assert.True(original.RawBytes(k).SequenceEqual(copy.RawBytes(copy.RawMetadata.Single(c => c.Key == k.Key))), k.Key));
        }

        // Split again (llama-gguf-split --split-max-tensors): llama.cpp reads the parts as the whole file.
        string prefix = Path.Combine(folder, "again", "tiny");
        Directory.CreateDirectory(Path.GetDirectoryName(prefix)!);
        CliRunner.Result split = CliRunner.Run("quantize", "--model", merged, "--type", "copy", "--split-max-tensors", "9", "--out", prefix + ".gguf");
        Assert.True(split.ExitCode == 0, split.Stderr);
        string first = Directory.GetFiles(Path.GetDirectoryName(prefix)!).Order(StringComparer.Ordinal).First();
        int[] ids = [1, 2, 3, 4];
        Assert.Equal(LlamaCpp.Logits(whole, ids), LlamaCpp.Logits(first, ids));

        // A folder as stored (its BF16 matrices as BF16).
        string stored = Path.Combine(folder, "stored.gguf");
        Assert.Equal(0, CliRunner.Run("quantize", "--model", Fixtures.Directory("stories260K-qwen2-bf16"), "--type", "copy", "--out", stored).ExitCode);
        using (GgufFile file = GgufFile.Open(stored))
        {
            Assert.Contains(file.TensorOrder, t => t.Type == (int)GgmlType.BF16);
        }

        // --keep-split (llama-quantize's): quantized into parts that hold what the model's parts hold.
        string kept = Path.Combine(folder, "kept", "tiny-q8_0.gguf");
        Directory.CreateDirectory(Path.GetDirectoryName(kept)!);
        string f32Whole = GgufFixture.Write(TestTokenizers.TinyQwenWithTokenizer);
        string[] f32Parts = Ggml.SplitAsGgufSplit(f32Whole, Path.Combine(folder, "tiny-f32"), tensorsPerPart: 7);
        CliRunner.Result keep = CliRunner.Run("quantize", "--model", f32Parts[0], "--type", "q8_0", "--keep-split", "--out", kept);
        Assert.True(keep.ExitCode == 0, keep.Stderr);
        using (GgufFile source = GgufFile.Open(f32Parts[0]), quantized = GgufFile.Open(Path.Combine(folder, "kept", $"tiny-q8_0-00001-of-{f32Parts.Length:D5}.gguf")))
        {
            Assert.Equal(source.TensorOrder.Select(t => (t.Name, t.Part)), quantized.TensorOrder.Select(t => (t.Name, t.Part)));
            Assert.Contains(quantized.TensorOrder, t => t.Type == (int)GgmlType.Q8_0);
        }

        CliRunner.Result refused = CliRunner.Run("quantize", "--model", merged, "--type", "copy", "--imatrix", merged, "--out", Path.Combine(folder, "no.gguf"));
        Assert.Equal(2, refused.ExitCode);
        Assert.Contains("--type copy writes every tensor as stored; --imatrix changes tensors", Assert.Single(refused.ErrorLines), StringComparison.Ordinal);
    }

    private static unsafe ReadOnlySpan<byte> Bytes(GgufFile file, GgufTensorInfo tensor) => new((void*)file.DataOf(tensor), checked((int)tensor.ByteLength));

    [Fact]
    public void Quantize_BadInput_OneLineAndNothingOverwritten()
    {
        string existing = Path.Combine(Fixtures.TempDirectory(), "keep.gguf");
        File.WriteAllText(existing, "mine");
        string part = existing[..^5] + "-00001-of-00002.gguf";
        File.WriteAllText(part, "mine too");

        foreach ((string[] args, string message) in new (string[], string)[]
        {
            (["quantize", "--model", Fixtures.DemoModel, "--type", "q8_0", "--out", existing], "already exists; quantize does not overwrite anything"),
            (["quantize", "--model", Fixtures.DemoModel, "--type", "q3", "--out", existing + "2"], "--type 'q3' is not one of q2_k, q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, q5_k_s, q5_k_m, iq4_nl, iq4_xs, iq1_s, iq1_m, iq2_xxs, iq2_xs, iq2_s, iq2_m, iq3_xxs, iq3_xs, iq3_s, iq3_m, q8_0, q4_0, q5_0, q4_1, q5_1, q4_k, q5_k, q6_k, q3_k, f16, bf16, f32, copy"),
            (["quantize", "--model", existing, "--type", "q8_0", "--out", existing + "3"], "is neither a Hugging Face model folder nor a GGUF file"),
            (["quantize", "--type", "q8_0", "--out", existing + "4"], "quantize needs --model DIR"),
            (["generate", "--prompt-ids", "1", "--quantize", "q4"], "--quantize 'q4' is not one of q2_k, q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, q5_k_s, q5_k_m, iq4_nl, iq4_xs, iq1_s, iq1_m, iq2_xxs, iq2_xs, iq2_s, iq2_m, iq3_xxs, iq3_xs, iq3_s, iq3_m, q8_0, q4_0, q5_0, q4_1, q5_1, q4_k, q5_k, q6_k, q3_k"),
            (["quantize", "--model", Fixtures.DemoModel, "--type", "iq9", "--out", existing + "5"], "--type 'iq9' is not one of q2_k, q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, q5_k_s, q5_k_m, iq4_nl, iq4_xs, iq1_s, iq1_m, iq2_xxs, iq2_xs, iq2_s, iq2_m, iq3_xxs, iq3_xs, iq3_s, iq3_m, q8_0"),
            (["quantize", "--model", RandomKQuantModel.Folder.Value, "--type", "q4_k_m", "--tensor-type", "ffn_up=iq3_xxs", "--out", existing + "12"], "IQ3_XXS needs an importance matrix, as llama-quantize requires"),
            (["bench", "--config", Path.Combine(Fixtures.DemoModel, "config.json"), "--random-weights", "--dtype", "q8_0"], "--dtype 'q8_0' is not one of bf16, f16, f32"),
            (["quantize", "--model", Fixtures.DemoModel, "--type", "q4_k_m", "--output-tensor-type", "q9", "--out", existing + "6"], "--output-tensor-type: 'q9' is not one of q8_0, q4_0"),
            (["quantize", "--model", Fixtures.DemoModel, "--type", "q4_k_m", "--tensor-type", "attn_v", "--out", existing + "7"], "--tensor-type: 'attn_v' is not PATTERN=TYPE"),
            (["quantize", "--model", Fixtures.DemoModel, "--type", "q4_k_m", "--tensor-type", "(attn=q8_0", "--out", existing + "8"], "--tensor-type: tensor type pattern '(attn' is not a regular expression"),
            (["quantize", "--model", Fixtures.DemoModel, "--type", "q4_k_m", "--tensor-type", "attn_v=iq3_k", "--out", existing + "9"], "--tensor-type 'attn_v=iq3_k': 'iq3_k' is not one of"),
            (["quantize", "--model", Fixtures.DemoModel, "--type", "q4_k_m", "--leave-output-tensor", "--output-tensor-type", "q8_0", "--out", existing + "10"], "--leave-output-tensor keeps output.weight as stored"),
            (["quantize", "--model", Fixtures.DemoModel, "--type", "q4_k_m", "--tensor-type-file", existing + ".none", "--out", existing + "11"], ".none: file not found"),
            (["quantize", "--model", Fixtures.DemoModel, "--type", "q8_0", "--token-embedding-type", "q4_k", "--out", existing + "12"], "tensor 'token_embd.weight': its rows of 64 values are not whole blocks of Q4_K (256 values)"),
            (["quantize", "--model", Fixtures.DemoModel, "--type", "q8_0", "--out", Path.Combine(existing + ".none", "x.gguf")], $"--out {Path.Combine(existing + ".none", "x.gguf")}: the folder {existing}.none does not exist"),
            (["quantize", "--model", Fixtures.DemoModel, "--type", "q8_0", "--split-max-size", "4GB", "--out", existing + "13"], "--split-max-size '4GB' is not a size: a positive whole number and M (megabytes) or G (gigabytes), as 500M or 4G"),
            (["quantize", "--model", Fixtures.DemoModel, "--type", "q8_0", "--split-max-tensors", "0", "--out", existing + "14"], "--split-max-tensors '0' is not a positive whole number of tensors"),
            (["quantize", "--model", Fixtures.DemoModel, "--type", "q8_0", "--split-max-tensors", "9", "--split-max-size", "1G", "--out", existing + "15"], "--split-max-size and --split-max-tensors do not go together"),
            (["quantize", "--model", Fixtures.DemoModel, "--type", "q8_0", "--keep-split", "--out", existing + "16"], "--keep-split is for a GGUF model split across files"),
            (["quantize", "--model", Fixtures.DemoModel, "--type", "q8_0", "--keep-split", "--split-max-tensors", "9", "--out", existing + "17"], "--keep-split writes the parts --model has; --split-max-tensors would choose others"),
            (["quantize", "--model", Fixtures.DemoModel, "--type", "q8_0", "--split-max-tensors", "9", "--out", existing[..^5]], $"--out {existing[..^5]}: {existing[..^5]}-00001-of-00002.gguf already exists"),
        })
        {
            CliRunner.Result result = CliRunner.Run(args);
            Assert.Equal(2, result.ExitCode);
            Assert.Contains(message, Assert.Single(result.ErrorLines), StringComparison.Ordinal);
        }

        Assert.Equal("mine", File.ReadAllText(existing));
        Assert.Equal("mine too", File.ReadAllText(part));
        Assert.Equal(new[] { existing, part }.Order(StringComparer.Ordinal), Directory.GetFiles(Path.GetDirectoryName(existing)!).Order(StringComparer.Ordinal));
    }
}
