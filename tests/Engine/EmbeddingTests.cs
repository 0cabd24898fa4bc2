using LLama.Native;
using Microsoft.Extensions.AI;
using QwenSharp.Generation;
using QwenSharp.Qwen2;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Engine;

/// <summary>
/// Embeddings through the library: a folder's sentence-transformers files choose the pooling and normalizing, which
/// llama.cpp, told the same, reproduces; the file <c>quantize</c> writes carries the pooling to llama.cpp; the
/// IEmbeddingGenerator; and what cannot be computed is refused naming the file.
/// </summary>
public sealed class EmbeddingTests
{
    private const string Text = "Once upon a time, there was a little girl";

    /// <summary>The demo model's files linked into a new folder, with <paramref name="extra"/> files written beside them.</summary>
    internal static string DemoWith(params (string Path, string Json)[] extra)
    {
        string directory = Fixtures.TempDirectory();
        // Files given are written in place of the model's (never through a link into the fixture).
        foreach (string file in Directory.GetFiles(Fixtures.DemoModel).Where(f => !extra.Any(e => e.Path == Path.GetFileName(f))))
        {
            File.CreateSymbolicLink(Path.Combine(directory, Path.GetFileName(file)), file);
        }

        foreach ((string path, string json) in extra)
        {
            string full = Path.Combine(directory, path);
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            File.WriteAllText(full, json);
        }

        return directory;
    }

    internal static (string, string) Modules(params string[] modules) =>
        (EmbeddingConfig.ModulesFileName, "[" + string.Join(",", modules.Select((m, i) => $$"""{"idx": {{i}}, "name": "{{i}}", "path": "{{(m == "Pooling" ? "1_Pooling" : m == "Transformer" ? "" : $"{i}_{m}")}}", "type": "sentence_transformers.models.{{m}}"}""")) + "]");

    internal static (string, string) Pooling(string mode) =>
        ("1_Pooling/config.json", $$"""{"word_embedding_dimension": 64, "pooling_mode_cls_token": false, "pooling_mode_mean_tokens": false, "{{mode}}": true, "include_prompt": true}""");

    internal static float[] Normalized(float[] v)
    {
        double norm = Math.Sqrt(v.Sum(x => (double)x * x));
        return [.. v.Select(x => (float)(x / norm))];
    }

    private static void AssertClose(float[] expected, float[] actual, string what, double tolerance = 1e-5)
    {
        Assert.Equal(expected.Length, actual.Length);
        double error = expected.Zip(actual, (a, b) => (double)Math.Abs(a - b)).Max();
        Assert.True(error <= tolerance, $"{what}: differs by {error:E3}");
    }

    public static TheoryData<string, LLamaPoolingType, bool> Folders() => new()
    {
        { "none", LLamaPoolingType.Last, true },
        { "pooling_mode_mean_tokens", LLamaPoolingType.Mean, false },
        { "pooling_mode_lasttoken", LLamaPoolingType.Last, true },
        { "pooling_mode_cls_token", LLamaPoolingType.CLS, true },
    };

    [Theory]
    [MemberData(nameof(Folders))]
    public async Task EmbedAsync_PoolsAndNormalizesAsTheFolderSays_AsLlamaCppToldTheSame(string mode, LLamaPoolingType theirs, bool normalize)
    {
        string folder = mode == "none" ? DemoWith()
            : normalize ? DemoWith(Modules("Transformer", "Pooling", "Normalize"), Pooling(mode)) : DemoWith(Modules("Transformer", "Pooling"), Pooling(mode));
        using QwenModel model = QwenModel.Load(folder);
        int[] ids = model.Tokenizer.Encode(Text, addSpecialTokens: true);

        TextEmbeddings ours = await model.EmbedAsync([Text, Text[..10]]);

        string gguf = Support.GgufFixture.Write(Fixtures.DemoModel);
        float[] expected = LlamaCpp.Embedding(gguf, ids, theirs);
        AssertClose(normalize ? Normalized(expected) : expected, ours.Vectors[0], $"{mode}, normalize {normalize}");
        Assert.Equal(ids.Length + model.Tokenizer.Encode(Text[..10], addSpecialTokens: true).Length, ours.TokenCount);
        Assert.Equal(ours.Vectors[0], model.Embed(Text));
    }

    [Fact]
    public async Task EmbedAsync_RunsTheAdaptersACallNames_AsLlamaCppDoes()
    {
        Qwen2Config demo = Qwen2Config.Load(Path.Combine(Fixtures.DemoModel, Qwen2Config.FileName));
        string dir = Fixtures.TempDirectory();
        string alpha = RandomLoraAdapter.Make(demo, rank: 4, alpha: 8, seed: 51, QwenSharp.Lora.LoraTargets.All, layers: null).WriteGguf(Path.Combine(dir, "alpha.gguf"), demo);
        string beta = RandomLoraAdapter.Make(demo, rank: 2, alpha: 4, seed: 52, [QwenSharp.Lora.LoraTarget.Q, QwenSharp.Lora.LoraTarget.Down], layers: null)
            .WriteGguf(Path.Combine(dir, "beta.gguf"), demo);
        using QwenModel model = await QwenModel.LoadAsync(Fixtures.DemoModel, new QwenModelOptions
        {
            Threads = 2, LoraAdapters = [new LoraAdapterOptions(alpha, 0.75f), new LoraAdapterOptions(beta, 0f)],
        });
        int[] ids = model.Tokenizer.Encode(Text, addSpecialTokens: true);
        string gguf = Support.GgufFixture.Write(Fixtures.DemoModel);
        async Task<float[]> Ours(TextEmbeddingOptions options) => (await model.EmbedAsync([Text], options with { Normalize = false })).Vectors[0];

        // llama.cpp adds the adapters' products in its own order: 1e-4, as the LoRA logits tests allow.
        void AssertNear(float[] expected, float[] actual, string what) => AssertClose(expected, actual, what, 1e-4 * Math.Max(1, expected.Max(Math.Abs)));

        AssertNear(LlamaCpp.Embedding(gguf, ids, LLamaPoolingType.Last, [(alpha, 0.75f)]), await Ours(new TextEmbeddingOptions()), "the adapters' own scales");
        AssertNear(LlamaCpp.Embedding(gguf, ids, LLamaPoolingType.Last, [(beta, 1f)]), await Ours(new TextEmbeddingOptions { LoraAdapter = "beta" }), "beta alone");
        AssertNear(LlamaCpp.Embedding(gguf, ids, LLamaPoolingType.Last, [(alpha, 0.5f), (beta, 1.5f)]),
            await Ours(new TextEmbeddingOptions { LoraScales = [0.5f, 1.5f] }), "both at the call's scales");

        // Through IEmbeddingGenerator, a ModelId naming an adapter runs it alone.
        using IEmbeddingGenerator<string, Embedding<float>> generator = model.AsEmbeddingGenerator();
        float[] named = (await generator.GenerateAsync([Text], new EmbeddingGenerationOptions { ModelId = "beta" }))[0].Vector.ToArray();
        Assert.Equal((await model.EmbedAsync([Text], new TextEmbeddingOptions { LoraAdapter = "beta" })).Vectors[0], named);

        var unknown = await Assert.ThrowsAsync<ArgumentException>(() => Ours(new TextEmbeddingOptions { LoraAdapter = "gamma" }));
        Assert.Contains("'gamma' is not one of the model's ('alpha', 'beta')", unknown.Message, StringComparison.Ordinal);
        var count = await Assert.ThrowsAsync<ArgumentException>(() => Ours(new TextEmbeddingOptions { LoraScales = [1f] }));
        Assert.Contains("LoraScales gives 1 scale(s); the model has 2", count.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Quantize_CarriesTheFoldersPoolingIntoTheFile_WhichLlamaCppFollows()
    {
        string folder = DemoWith(Modules("Transformer", "Pooling"), Pooling("pooling_mode_mean_tokens"));
        string gguf = Support.GgufFixture.Write(folder);
        using QwenModel model = QwenModel.Load(gguf);
        Assert.Equal(EmbeddingPooling.Mean, model.Model.EmbeddingConfig.Pooling);
        int[] ids = model.Tokenizer.Encode(Text, addSpecialTokens: true);

        // Unspecified: llama.cpp takes the file's pooling_type.
        float[] expected = LlamaCpp.Embedding(gguf, ids, LLamaPoolingType.Unspecified);

        AssertClose(Normalized(expected), model.Embed(Text), "the GGUF file's mean pooling");
        AssertClose(Normalized(LlamaCpp.Embedding(gguf, ids, LLamaPoolingType.Mean)), Normalized(expected), "llama.cpp's mean");
    }

    [Fact]
    public void IsCausalFalse_EmbedsBidirectionally_AndQuantizeTellsLlamaCppSo()
    {
        string config = File.ReadAllText(Path.Combine(Fixtures.DemoModel, "config.json"));
        string folder = DemoWith(("config.json", config.TrimEnd().TrimEnd('}') + ", \"is_causal\": false}"));
        string gguf = Support.GgufFixture.Write(folder);
        using QwenModel fromFolder = QwenModel.Load(folder);
        using QwenModel fromFile = QwenModel.Load(gguf);
        int[] ids = fromFolder.Tokenizer.Encode(Text, addSpecialTokens: true);

        // Unspecified: llama.cpp takes the file's attention.causal (false).
        float[] expected = Normalized(LlamaCpp.Embedding(gguf, ids, LLamaPoolingType.Last, LLamaAttentionType.Unspecified));

        Assert.True(fromFolder.Model.EmbeddingConfig.Bidirectional);
        Assert.True(fromFile.Model.EmbeddingConfig.Bidirectional);
        AssertClose(expected, fromFolder.Embed(Text), "the folder's bidirectional embedding");
        AssertClose(expected, fromFile.Embed(Text), "the file's bidirectional embedding");
        AssertClose(Normalized(LlamaCpp.Embedding(gguf, ids, LLamaPoolingType.Last, LLamaAttentionType.NonCausal)), expected, "llama.cpp's non-causal");
        AssertClose(Normalized(LlamaCpp.Embedding(gguf, ids, LLamaPoolingType.Last)), fromFolder.Embed(Text, new TextEmbeddingOptions { Bidirectional = false }), "causal on request");
    }

    internal const string QueryPrompt = "Instruct: Find the story\nQuery: ";

    internal static (string, string) Prompts(string? defaultName) =>
        ("config_sentence_transformers.json", $$"""{"prompts": {"query": "Instruct: Find the story\nQuery: ", "document": ""}, "default_prompt_name": {{(defaultName is null ? "null" : $"\"{defaultName}\"")}}, "similarity_fn_name": "cosine"}""");

    [Fact]
    public async Task NamedPrompts_GoBeforeTheText_AsSentenceTransformersPutsThem()
    {
        string folder = DemoWith(Prompts(defaultName: null));
        string byDefault = DemoWith(Prompts(defaultName: "query"));
        string gguf = Support.GgufFixture.Write(Fixtures.DemoModel);
        using QwenModel model = QwenModel.Load(folder);
        using QwenModel queries = QwenModel.Load(byDefault);
        float[] LlamaCppOf(string text) => Normalized(LlamaCpp.Embedding(gguf, model.Tokenizer.Encode(text, addSpecialTokens: true), LLamaPoolingType.Last));

        AssertClose(LlamaCppOf(QueryPrompt + Text), model.Embed(Text, new TextEmbeddingOptions { PromptName = "query" }), "the query prompt");
        AssertClose(LlamaCppOf(Text), model.Embed(Text), "no default prompt");
        AssertClose(LlamaCppOf(QueryPrompt + Text), queries.Embed(Text), "the default prompt");
        AssertClose(LlamaCppOf(Text), queries.Embed(Text, new TextEmbeddingOptions { PromptName = "document" }), "the empty document prompt");
        AssertClose(LlamaCppOf("Story: " + Text), queries.Embed(Text, new TextEmbeddingOptions { Prompt = "Story: " }), "a prompt given as text");

        using IEmbeddingGenerator<string, Embedding<float>> generator = model.AsEmbeddingGenerator();
        GeneratedEmbeddings<Embedding<float>> viaGenerator = await generator.GenerateAsync([Text],
            new EmbeddingGenerationOptions { AdditionalProperties = new() { ["prompt_name"] = "query" } });
        AssertClose(LlamaCppOf(QueryPrompt + Text), viaGenerator[0].Vector.ToArray(), "the generator's prompt_name");
        Assert.Equal(model.Tokenizer.Encode(QueryPrompt + Text, addSpecialTokens: true).Length, viaGenerator.Usage!.InputTokenCount);

        var unknown = Assert.Throws<ArgumentException>(() => model.Embed(Text, new TextEmbeddingOptions { PromptName = "passage" }));
        Assert.Contains("prompt name 'passage' is not one of the model's prompts (document, query;", unknown.Message);
        using QwenModel none = QwenModel.Load(Fixtures.DemoModel);
        Assert.Contains("the model names no prompts", Assert.Throws<ArgumentException>(() => none.Embed(Text, new TextEmbeddingOptions { PromptName = "query" })).Message);
    }

    [Fact]
    public void PromptFiles_ThatCannotBeRead_OrPromptsLeftOutOfAMean_AreRefused()
    {
        string notObject = DemoWith(("config_sentence_transformers.json", """{"prompts": ["query"]}"""));
        Assert.Contains("config_sentence_transformers.json: \"prompts\" is Array", Assert.Throws<InvalidDataException>(() => QwenModel.Load(notObject)).Message);
        string badDefault = DemoWith(("config_sentence_transformers.json", """{"prompts": {"query": "q: "}, "default_prompt_name": "passage"}"""));
        Assert.Contains("default_prompt_name \"passage\" is not one of its prompts", Assert.Throws<InvalidDataException>(() => QwenModel.Load(badDefault)).Message);

        string meanWithoutPrompt = DemoWith(Modules("Transformer", "Pooling"), ("1_Pooling/config.json", """{"pooling_mode_mean_tokens": true, "include_prompt": false}"""), Prompts(defaultName: null));
        using QwenModel model = QwenModel.Load(meanWithoutPrompt);
        Assert.Contains("include_prompt is false", Assert.Throws<NotSupportedException>(() => model.Embed(Text, new TextEmbeddingOptions { PromptName = "query" })).Message);
        Assert.Equal(64, model.Embed(Text).Length);
    }

    [Fact]
    public void Truncate_CutsATextToTheModelsMaxSeqLength_KeepingItsSpecialTokens()
    {
        string folder = DemoWith(("sentence_bert_config.json", """{"max_seq_length": 6, "do_lower_case": false}"""));
        string gguf = Support.GgufFixture.Write(Fixtures.DemoModel);
        using QwenModel model = QwenModel.Load(folder);
        int[] all = model.Tokenizer.Encode(Text, addSpecialTokens: true);
        Assert.True(all.Length > 6);
        Assert.Equal(1, all[0]);   // the demo tokenizer's BOS, kept in front of the text's first 5 tokens

        float[] cut = model.Embed(Text, new TextEmbeddingOptions { Truncate = true });
        float[] whole = model.Embed(Text);

        Assert.Equal(6, model.Model.EmbeddingConfig.MaxSeqLength);
        AssertClose(Normalized(LlamaCpp.Embedding(gguf, all[..6], LLamaPoolingType.Last)), cut, "the first 6 tokens");
        AssertClose(Normalized(LlamaCpp.Embedding(gguf, all, LLamaPoolingType.Last)), whole, "untruncated");

        string bad = DemoWith(("sentence_bert_config.json", """{"max_seq_length": "long"}"""));
        Assert.Contains("sentence_bert_config.json: max_seq_length is long", Assert.Throws<InvalidDataException>(() => QwenModel.Load(bad)).Message);
    }

    [Fact]
    public async Task EmbeddingGenerator_GivesAVectorPerText_TheirTokens_AndDimensions()
    {
        using QwenModel model = QwenModel.Load(Fixtures.DemoModel);
        using IEmbeddingGenerator<string, Embedding<float>> generator = model.AsEmbeddingGenerator();
        string[] texts = [Text, "The end.", Text];

        GeneratedEmbeddings<Embedding<float>> all = await generator.GenerateAsync(texts);
        GeneratedEmbeddings<Embedding<float>> short8 = await generator.GenerateAsync(texts, new EmbeddingGenerationOptions { Dimensions = 8 });

        Assert.Equal(3, all.Count);
        Assert.Equal(texts.Sum(t => model.Tokenizer.Encode(t, addSpecialTokens: true).Length), all.Usage!.InputTokenCount);
        Assert.Equal(model.Model.Config.HiddenSize, generator.GetService<EmbeddingGeneratorMetadata>()!.DefaultModelDimensions);
        Assert.Equal(all[0].Vector.ToArray(), all[2].Vector.ToArray());
        Assert.NotEqual(all[0].Vector.ToArray(), all[1].Vector.ToArray());
        AssertClose(model.Embed(Text), all[0].Vector.ToArray(), "the generator's first vector");
        AssertClose(Normalized(all[0].Vector.ToArray()[..8]), Normalized(model.Embed(Text, new TextEmbeddingOptions { Normalize = false })[..8]), "the first 8");
        Assert.Equal(8, short8[0].Vector.Length);
        Assert.Equal(1, Math.Sqrt(short8[1].Vector.ToArray().Sum(x => (double)x * x)), 1e-6);
    }

    [Fact]
    public void WhatCannotBeComputed_IsRefusedNamingTheFile()
    {
        string asymmetric = DemoWith(Modules("Transformer", "Pooling", "Asym"), Pooling("pooling_mode_mean_tokens"));
        using (QwenModel model = QwenModel.Load(asymmetric))
        {
            var e = Assert.Throws<NotSupportedException>(() => model.Embed(Text));
            Assert.Contains("modules.json: module '2_Asym' (sentence_transformers.models.Asym) is not one QwenSharp runs", e.Message);
        }

        string max = DemoWith(Modules("Transformer", "Pooling"), Pooling("pooling_mode_max_tokens"));
        using (QwenModel model = QwenModel.Load(max))
        {
            Assert.Contains("pooling pooling_mode_max_tokens is not one QwenSharp computes", Assert.Throws<NotSupportedException>(() => model.Embed(Text)).Message);
        }

        string broken = DemoWith((EmbeddingConfig.ModulesFileName, "[{\"type\": "));
        Assert.Contains("modules.json: not valid JSON", Assert.Throws<InvalidDataException>(() => QwenModel.Load(broken)).Message);

        string escaping = DemoWith((EmbeddingConfig.ModulesFileName, """[{"type": "sentence_transformers.models.Pooling", "path": "../x"}]"""));
        Assert.Contains("path '../x' leaves the model folder", Assert.Throws<InvalidDataException>(() => QwenModel.Load(escaping)).Message);

        string missing = DemoWith(Modules("Transformer", "Pooling"));
        Assert.Contains("1_Pooling/config.json: file not found", Assert.Throws<FileNotFoundException>(() => QwenModel.Load(missing)).Message);
    }

    /// <summary>A sentence-transformers Dense module's files: config.json, and model.safetensors holding W and b.</summary>
    internal sealed record DenseModule(int In, int Out, bool Bias, string Activation, string DType, int Seed)
    {
        /// <summary>Weights of k/64, |k| ≤ 32: exact in f32, f16 and bf16, so the file holds the very numbers the reference uses.</summary>
        /// <remarks>Computed from the seed on each read, so a copy made by <c>with</c> gets its own shape's.</remarks>
        public float[] Weight => Values(In * Out, Seed);

        public float[] BiasValues => Bias ? Values(Out, Seed + 1) : [];

        private static float[] Values(int count, int seed)
        {
            var random = new Random(seed);
            return [.. Enumerable.Range(0, count).Select(_ => random.Next(-32, 33) / 64f)];
        }

        public string Config => $$"""{"in_features": {{In}}, "out_features": {{Out}}, "bias": {{(Bias ? "true" : "false")}}, "activation_function": "{{Activation}}"}""";

        public void WriteWeights(string path)
        {
            byte[] Bytes(float[] v) => DType switch
            {
                "F32" => SafeTensorsWriter.F32(v),
                "F16" => [.. v.SelectMany(x => BitConverter.GetBytes(BitConverter.HalfToUInt16Bits((Half)x)))],
                _ => [.. v.SelectMany(x => BitConverter.GetBytes((ushort)(BitConverter.SingleToUInt32Bits(x) >> 16)))],
            };
            var entries = new List<SafeTensorsWriter.Entry> { new("linear.weight", DType, [Out, In], Bytes(Weight)) };
            if (Bias)
            {
                entries.Add(new("linear.bias", DType, [Out], Bytes(BiasValues)));
            }

            SafeTensorsWriter.Write(path, [.. entries]);
        }

        /// <summary>The module as torch runs it, in float64: f(W x + b), then rounded to f32 as torch's output is.</summary>
        public float[] Reference(float[] x)
        {
            var y = new float[Out];
            float[] weight = Weight, bias = BiasValues;
            for (int o = 0; o < Out; o++)
            {
                double sum = Bias ? bias[o] : 0;
                for (int i = 0; i < In; i++)
                {
                    sum += (double)weight[(o * In) + i] * x[i];
                }

                y[o] = (float)(Activation.EndsWith("Tanh", StringComparison.Ordinal) ? Math.Tanh(sum) : sum);
            }

            return y;
        }
    }

    internal const string IdentityActivation = "torch.nn.modules.linear.Identity", TanhActivation = "torch.nn.modules.activation.Tanh";

    /// <summary>The demo model with a Pooling module of <paramref name="mode"/>, then <paramref name="dense"/> modules, then Normalize if asked.</summary>
    internal static string DenseFolder(string mode, bool normalize, params DenseModule[] dense)
    {
        string[] modules = ["Transformer", "Pooling", .. dense.Select(_ => "Dense"), .. (normalize ? (string[])["Normalize"] : [])];
        string folder = DemoWith([Modules(modules), Pooling(mode), .. dense.Select((d, i) => ($"{i + 2}_Dense/config.json", d.Config))]);
        for (int i = 0; i < dense.Length; i++)
        {
            dense[i].WriteWeights(Path.Combine(folder, $"{i + 2}_Dense", "model.safetensors"));
        }

        return folder;
    }

    public static TheoryData<string, string, bool> DenseCases() => new()
    {
        // stella_en_1.5B_v5's shape: mean pooling, a Dense module with a bias and no activation, normalized after.
        { "mean, identity with bias, normalized", "pooling_mode_mean_tokens", true },
        { "last token, tanh without bias", "pooling_mode_lasttoken", false },
        { "two modules in a row", "pooling_mode_mean_tokens", true },
    };

    [Theory]
    [MemberData(nameof(DenseCases))]
    public async Task DenseModules_MapThePooledVector_AsTorchWouldMapLlamaCppsPooledVector(string what, string mode, bool normalize)
    {
        DenseModule[] dense = what switch
        {
            "mean, identity with bias, normalized" => [new DenseModule(64, 48, Bias: true, IdentityActivation, "F32", Seed: 3)],
            "last token, tanh without bias" => [new DenseModule(64, 40, Bias: false, TanhActivation, "BF16", Seed: 4)],
            _ => [new DenseModule(64, 32, Bias: true, TanhActivation, "F16", Seed: 5), new DenseModule(32, 24, Bias: true, IdentityActivation, "BF16", Seed: 6)],
        };
        using QwenModel model = QwenModel.Load(DenseFolder(mode, normalize, dense));
        int[] ids = model.Tokenizer.Encode(Text, addSpecialTokens: true);
        string gguf = Support.GgufFixture.Write(Fixtures.DemoModel);
        float[] expected = LlamaCpp.Embedding(gguf, ids, mode == "pooling_mode_mean_tokens" ? LLamaPoolingType.Mean : LLamaPoolingType.Last);
        foreach (DenseModule module in dense)
        {
            expected = module.Reference(expected);
        }

        float[] ours = (await model.EmbedAsync([Text, Text[..10]])).Vectors[0];

        // llama.cpp's pooled vector is within 1e-5 of ours (the folder tests); a module's sums of 64 products carry that on.
        AssertClose(normalize ? Normalized(expected) : expected, ours, what, 1e-4 * Math.Max(1, expected.Max(Math.Abs)));
        Assert.Equal(dense[^1].Out, model.Model.EmbeddingDimensions);

        // Dimensions keep the first values of the module's output, normalized after.
        float[] first8 = model.Embed(Text, new TextEmbeddingOptions { Dimensions = 8, Normalize = true });
        AssertClose(Normalized(expected[..8]), first8, $"{what}, the first 8", 1e-4 * Math.Max(1, expected.Max(Math.Abs)));
        var tooMany = Assert.Throws<ArgumentOutOfRangeException>(() => model.Embed(Text, new TextEmbeddingOptions { Dimensions = dense[^1].Out + 1 }));
        Assert.Contains($"outside 1..{dense[^1].Out} (the model's embedding size)", tooMany.Message, StringComparison.Ordinal);

        using IEmbeddingGenerator<string, Embedding<float>> generator = model.AsEmbeddingGenerator();
        Assert.Equal(dense[^1].Out, generator.GetService<EmbeddingGeneratorMetadata>()!.DefaultModelDimensions);
    }

    [Fact]
    public async Task DenseModules_ThatCannotBeRun_AreRefusedNamingTheFile()
    {
        DenseModule good = new(64, 16, Bias: true, IdentityActivation, "F32", Seed: 7);

        // What QwenSharp does not run is refused when embedding; generation is unaffected.
        string relu = DenseFolder("pooling_mode_mean_tokens", false, good with { Activation = "torch.nn.modules.activation.ReLU" });
        string pickle = DemoWith(Modules("Transformer", "Pooling", "Dense"), Pooling("pooling_mode_mean_tokens"), ("2_Dense/config.json", good.Config), ("2_Dense/pytorch_model.bin", "not read"));
        string afterNormalize = DemoWith(Modules("Transformer", "Pooling", "Normalize", "Dense"), Pooling("pooling_mode_mean_tokens"));
        string beforePooling = DemoWith(Modules("Transformer", "Dense", "Pooling"), Pooling("pooling_mode_mean_tokens"));
        foreach ((string folder, string why) in ((string, string)[])[
            (relu, "2_Dense/config.json: activation_function torch.nn.modules.activation.ReLU is not one QwenSharp applies"),
            (pickle, "2_Dense/pytorch_model.bin: the Dense module's weights are a PyTorch pickle, which QwenSharp does not read; save them as model.safetensors"),
            (afterNormalize, "module '3_Dense' (sentence_transformers.models.Dense) comes after Normalize"),
            (beforePooling, "module '1_Dense' (sentence_transformers.models.Dense) comes before Pooling")])
        {
            using QwenModel model = QwenModel.Load(folder);
            Assert.Contains(why, Assert.Throws<NotSupportedException>(() => model.Embed(Text)).Message, StringComparison.Ordinal);
            Assert.Equal(2, (await model.GenerateBatchAsync(["Once"], new TextGenerationOptions { MaxNewTokens = 2 }))[0].Ids.Count);
        }

        // Files that contradict each other are load errors naming them.
        string wide = DenseFolder("pooling_mode_mean_tokens", false, good with { In = 65 });
        string chain = DenseFolder("pooling_mode_mean_tokens", false, good, good with { In = 17, Seed = 8 });
        string noBias = DenseFolder("pooling_mode_mean_tokens", false, good with { Bias = false });
        File.WriteAllText(Path.Combine(noBias, "2_Dense", "config.json"), good.Config);
        string misshapen = DenseFolder("pooling_mode_mean_tokens", false, good with { In = 65 });
        File.WriteAllText(Path.Combine(misshapen, "2_Dense", "config.json"), good.Config);
        string noWeights = DemoWith(Modules("Transformer", "Pooling", "Dense"), Pooling("pooling_mode_mean_tokens"), ("2_Dense/config.json", good.Config));
        string badConfig = DemoWith(Modules("Transformer", "Pooling", "Dense"), Pooling("pooling_mode_mean_tokens"), ("2_Dense/config.json", """{"in_features": "wide", "out_features": 16}"""));
        Assert.Contains("2_Dense/config.json: in_features is 65, and it is given 64 values (the model's hidden_size)", Assert.Throws<InvalidDataException>(() => QwenModel.Load(wide)).Message, StringComparison.Ordinal);
        Assert.Contains("3_Dense/config.json: in_features is 17, and it is given 16 values (the previous Dense module's out_features)", Assert.Throws<InvalidDataException>(() => QwenModel.Load(chain)).Message, StringComparison.Ordinal);
        Assert.Contains("2_Dense/model.safetensors: tensor 'linear.weight' is F32 [16, 65], expected F32, F16 or BF16 [16, 64]", Assert.Throws<InvalidDataException>(() => QwenModel.Load(misshapen)).Message, StringComparison.Ordinal);
        Assert.Contains("2_Dense/model.safetensors: no tensor 'linear.bias'", Assert.Throws<InvalidDataException>(() => QwenModel.Load(noBias)).Message, StringComparison.Ordinal);
        Assert.Contains("2_Dense/model.safetensors: file not found", Assert.Throws<FileNotFoundException>(() => QwenModel.Load(noWeights)).Message, StringComparison.Ordinal);
        Assert.Contains("2_Dense/config.json: in_features is \"wide\", expected a whole number", Assert.Throws<InvalidDataException>(() => QwenModel.Load(badConfig)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Quantize_RefusesAFolderWithADenseModule_WritingNothing()
    {
        string folder = DenseFolder("pooling_mode_mean_tokens", true, new DenseModule(64, 16, Bias: true, IdentityActivation, "F32", Seed: 9));
        string output = Path.Combine(Fixtures.TempDirectory(), "dense.gguf");

        var e = Assert.Throws<NotSupportedException>(() => GgufExport.Write(folder, output));

        Assert.Contains("2_Dense/config.json: a GGUF file of a qwen2 model has no place for a Dense module", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(output));
        Assert.False(File.Exists(output + ".partial"));
    }
}
