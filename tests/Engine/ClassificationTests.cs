using LLama.Native;
using QwenSharp.Formats;
using QwenSharp.Generation;
using QwenSharp.Qwen2;
using QwenSharp.Tests.Cli;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Engine;

/// <summary>
/// Sequence classifiers (<c>*ForSequenceClassification</c>: reward models, classifiers): the score head over the hidden
/// state of a text's last token that is not padding, checked against llama.cpp's last hidden state of the same text mapped
/// by the head in float64; the pipeline's scores; and what a classifier cannot do, refused by name.
/// </summary>
public sealed class ClassificationTests
{
    private const string Text = "Once upon a time, there was a little girl";

    /// <summary>A pad id the demo tokenizer never gives a plain text.</summary>
    internal const int Pad = 0;

    /// <summary>The demo model saved as transformers saves its <c>LlamaForSequenceClassification</c>: config.json naming it, and a score head of k/64 weights in place of an LM head.</summary>
    internal static string ClassifierFolder(int labels, string dtype = "F32", string extraConfig = "", int seed = 11, bool withLabels = true)
    {
        string names = string.Join(", ", Enumerable.Range(0, labels).Select(i => $"\"{i}\": \"{LabelName(labels, i)}\""));
        string config = File.ReadAllText(Path.Combine(Fixtures.DemoModel, Qwen2Config.FileName))
            .Replace("\"LlamaForCausalLM\"", "\"LlamaForSequenceClassification\"", StringComparison.Ordinal)
            .Replace("\"model_type\"", $"{(withLabels ? $"\"id2label\": {{{names}}}, " : "")}\"pad_token_id\": {Pad}, {extraConfig}\"model_type\"", StringComparison.Ordinal);
        string folder = EmbeddingTests.DemoWith((Qwen2Config.FileName, config));
        File.Delete(Path.Combine(folder, SafeTensorsCheckpoint.SingleFileName));

        using SafeTensorsFile demo = SafeTensorsFile.Open(Path.Combine(Fixtures.DemoModel, SafeTensorsCheckpoint.SingleFileName));
        var entries = new List<SafeTensorsWriter.Entry>();
        foreach (string name in demo.Tensors.Keys.Order(StringComparer.Ordinal))
        {
            Assert.True(demo.TryGetView(name, out TensorView? view));
            Assert.Equal(DType.F32, view.DType);
            entries.Add(new(name, "F32", view.Shape, view.Bytes.ToArray()));
        }

        entries.Add(new(ClassifierHead.TensorName, dtype, [labels, 64], Bytes(HeadWeights(labels, seed), dtype)));
        SafeTensorsWriter.Write(Path.Combine(folder, SafeTensorsCheckpoint.SingleFileName), [.. entries]);
        return folder;
    }

    private static string LabelName(int labels, int i) => labels == 1 ? "reward" : ((string[])["negative", "neutral", "positive"])[i];

    /// <summary>Weights of k/64, |k| ≤ 32: exact in f32, f16 and bf16, so the file holds the very numbers the reference uses.</summary>
    private static float[] HeadWeights(int labels, int seed)
    {
        var random = new Random(seed);
        return [.. Enumerable.Range(0, labels * 64).Select(_ => random.Next(-32, 33) / 64f)];
    }

    private static byte[] Bytes(float[] v, string dtype) => dtype switch
    {
        "F32" => SafeTensorsWriter.F32(v),
        "F16" => [.. v.SelectMany(x => BitConverter.GetBytes(BitConverter.HalfToUInt16Bits((Half)x)))],
        _ => [.. v.SelectMany(x => BitConverter.GetBytes((ushort)(BitConverter.SingleToUInt32Bits(x) >> 16)))],
    };

    /// <summary>The head as torch runs it, in float64, over llama.cpp's last hidden state of <paramref name="ids"/>.</summary>
    internal static double[] ReferenceLogits(IReadOnlyList<int> ids, int labels, int seed = 11)
    {
        float[] hidden = LlamaCpp.Embedding(GgufFixture.Write(Fixtures.DemoModel), ids, LLamaPoolingType.Last);
        float[] weight = HeadWeights(labels, seed);
        return [.. Enumerable.Range(0, labels).Select(l => Enumerable.Range(0, 64).Sum(i => (double)weight[(l * 64) + i] * hidden[i]))];
    }

    private static void AssertClose(double[] expected, IReadOnlyList<float> actual, string what)
    {
        Assert.Equal(expected.Length, actual.Count);
        double error = expected.Zip(actual, (e, a) => Math.Abs(e - a)).Max();

        // llama.cpp's hidden state is within 1e-5 of ours (the embedding tests); 64 products of weights below 1 carry that on.
        Assert.True(error <= 1e-4 * Math.Max(1, expected.Max(Math.Abs)), $"{what}: differs by {error:E3}");
    }

    public static TheoryData<string, string> Devices() => new()
    {
        { "cpu", "F32" },
        { "cpu", "BF16" },
        { TestBackends.Gpu, "F16" },
    };

    [SkippableTheory]
    [MemberData(nameof(Devices))]
    public async Task ClassifyAsync_IsTheScoreHeadOverLlamaCppsLastHiddenState_WithThePipelinesSoftmax(string device, string dtype)
    {
        TestBackends.RequireDevice(device);
        using QwenModel model = await QwenModel.LoadAsync(ClassifierFolder(3, dtype), new QwenModelOptions { Device = device, Threads = 2 });

        IReadOnlyList<TextClassification> results = await model.ClassifyAsync([Text, Text[..10]]);

        for (int t = 0; t < 2; t++)
        {
            int[] ids = model.Tokenizer.Encode(t == 0 ? Text : Text[..10], addSpecialTokens: true);
            double[] logits = ReferenceLogits(ids, 3);
            AssertClose(logits, results[t].Logits, $"text {t} logits");
            double max = logits.Max(), total = logits.Sum(l => Math.Exp(l - max));
            AssertClose([.. logits.Select(l => Math.Exp(l - max) / total)], results[t].Scores, $"text {t} softmax");
            Assert.Equal(["negative", "neutral", "positive"], results[t].Labels);
            Assert.Equal(results[t].Labels[Array.IndexOf(logits, max)], results[t].Label);
            Assert.Equal(ids.Length, results[t].TokenCount);
        }
    }

    [Fact]
    public void Logits_PoolTheLastTokenThatIsNotPadding_AsTransformersPicksIt()
    {
        using QwenModel model = QwenModel.Load(ClassifierFolder(3));
        int[] ids = model.Tokenizer.Encode(Text, addSpecialTokens: true);
        Assert.DoesNotContain(Pad, ids);
        using var embedder = new Embedder(model.Model);

        float[][] logits = SequenceClassification.Logits(embedder, [ids, [.. ids, Pad, Pad], [.. ids[..4], Pad, .. ids[4..], Pad]]);

        double[] expected = ReferenceLogits(ids, 3);
        AssertClose(expected, logits[0], "no padding");
        AssertClose(expected, logits[1], "two pad tokens after the text");

        // A pad id inside the text is read as any token: only trailing ones are left out.
        AssertClose(ReferenceLogits([.. ids[..4], Pad, .. ids[4..]], 3), logits[2], "a pad id inside the text");
    }

    public static TheoryData<int, string, string> ScoreFunctions() => new()
    {
        { 1, "", "sigmoid" },                                                 // a reward model: one logit
        { 3, "\"problem_type\": \"multi_label_classification\", ", "sigmoid" },
        { 3, "\"problem_type\": \"regression\", ", "none" },
        { 3, "\"problem_type\": \"single_label_classification\", ", "softmax" },
    };

    [Theory]
    [MemberData(nameof(ScoreFunctions))]
    public void Scores_FollowTheProblemType_AsTransformersPipelineDoes(int labels, string problemType, string function)
    {
        using QwenModel model = QwenModel.Load(ClassifierFolder(labels, extraConfig: problemType));
        TextClassification result = model.Classify(Text);

        double[] logits = ReferenceLogits(model.Tokenizer.Encode(Text, addSpecialTokens: true), labels);
        AssertClose(logits, result.Logits, "logits");
        double max = logits.Max(), total = logits.Sum(l => Math.Exp(l - max));
        double[] scores = function switch
        {
            "sigmoid" => [.. logits.Select(l => 1 / (1 + Math.Exp(-l)))],
            "none" => logits,
            _ => [.. logits.Select(l => Math.Exp(l - max) / total)],
        };
        AssertClose(scores, result.Scores, function);
        Assert.Equal(function, model.Model.Classifier!.ScoreFunction);
    }

    /// <summary>
    /// The folder with a chat template in its tokenizer_config.json (the demo tokenizer has none), as a reward model's
    /// carries one: each message as "role: content" on its line, and "assistant:" when the turn is opened.
    /// </summary>
    internal static string WithChatTemplate(string folder)
    {
        string template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";
        string config = File.ReadAllText(Path.Combine(Fixtures.DemoModel, "tokenizer_config.json")).TrimEnd().TrimEnd('}')
            + $", \"chat_template\": {System.Text.Json.JsonSerializer.Serialize(template)}}}";
        File.Delete(Path.Combine(folder, "tokenizer_config.json"));
        File.WriteAllText(Path.Combine(folder, "tokenizer_config.json"), config);
        return folder;
    }

    [Fact]
    public async Task ClassifyConversationAsync_RatesTheConversationAsTheChatTemplateRendersIt()
    {
        using QwenModel model = QwenModel.Load(WithChatTemplate(ClassifierFolder(1)));

        TextClassification result = await model.ClassifyConversationAsync([("user", "Hi"), ("assistant", "Once upon a time")]);

        int[] ids = model.Tokenizer.Encode("user: Hi\nassistant: Once upon a time\n");
        AssertClose(ReferenceLogits(ids, 1), result.Logits, "the rendered conversation, no assistant turn opened");
        Assert.Equal(["reward"], result.Labels);
    }

    [Fact]
    public async Task AClassifier_DoesNotGenerate_AndAGenerator_DoesNotClassify_SayingWhy()
    {
        using QwenModel classifier = QwenModel.Load(ClassifierFolder(3));
        var generate = await Assert.ThrowsAsync<NotSupportedException>(() => classifier.GenerateBatchAsync(["Once"], new TextGenerationOptions { MaxNewTokens = 2 }));
        Assert.Contains("the model is a LlamaForSequenceClassification, whose score head gives a text a logit per label, not next-token logits", generate.Message, StringComparison.Ordinal);
        Assert.Contains("not next-token logits", Assert.Throws<NotSupportedException>(() => classifier.Score([1, 403, 407])).Message, StringComparison.Ordinal);

        var draft = Assert.Throws<ArgumentException>(() => QwenModel.Load(ClassifierFolder(3), new QwenModelOptions { DraftModel = Fixtures.DemoModel }));
        Assert.Contains("which classifies and does not generate: a draft model", draft.Message, StringComparison.Ordinal);

        using QwenModel generator = QwenModel.Load(Fixtures.DemoModel);
        var classify = await Assert.ThrowsAsync<NotSupportedException>(() => generator.ClassifyAsync([Text]));
        Assert.Contains("the model is a LlamaForCausalLM, which generates; ClassifyAsync needs a *ForSequenceClassification model", classify.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Classifiers_ThatContradictThemselves_AreLoadErrorsNamingTheFileAndField()
    {
        string unnamed = ClassifierFolder(3, withLabels: false);
        using (QwenModel model = QwenModel.Load(unnamed))
        {
            Assert.Equal(["LABEL_0", "LABEL_1", "LABEL_2"], model.Model.Classifier!.Labels);
        }

        string count = ClassifierFolder(2);
        File.WriteAllText(Path.Combine(count, Qwen2Config.FileName), File.ReadAllText(Path.Combine(ClassifierFolder(3), Qwen2Config.FileName)));
        string gap = ClassifierFolder(3, extraConfig: "");
        File.WriteAllText(Path.Combine(gap, Qwen2Config.FileName), File.ReadAllText(Path.Combine(gap, Qwen2Config.FileName)).Replace("\"2\": \"positive\"", "\"3\": \"positive\"", StringComparison.Ordinal));
        string problem = ClassifierFolder(3, extraConfig: "\"problem_type\": \"ranking\", ");
        string pad = ClassifierFolder(3);
        File.WriteAllText(Path.Combine(pad, Qwen2Config.FileName), File.ReadAllText(Path.Combine(pad, Qwen2Config.FileName)).Replace($"\"pad_token_id\": {Pad}", "\"pad_token_id\": \"eos\"", StringComparison.Ordinal));
        string noHead = EmbeddingTests.DemoWith((Qwen2Config.FileName, File.ReadAllText(Path.Combine(ClassifierFolder(3), Qwen2Config.FileName))));

        Assert.Contains("config.json: id2label names 3 label(s), and 'score.weight' has 2 rows (one per label)", Assert.Throws<InvalidDataException>(() => QwenModel.Load(count)).Message, StringComparison.Ordinal);
        Assert.Contains("config.json: id2label's ids are 0, 1, 3, expected 0 to 2 with none missing", Assert.Throws<InvalidDataException>(() => QwenModel.Load(gap)).Message, StringComparison.Ordinal);
        Assert.Contains("config.json: problem_type is \"ranking\", expected regression", Assert.Throws<InvalidDataException>(() => QwenModel.Load(problem)).Message, StringComparison.Ordinal);
        Assert.Contains("config.json: pad_token_id is \"eos\", expected a token id", Assert.Throws<InvalidDataException>(() => QwenModel.Load(pad)).Message, StringComparison.Ordinal);
        Assert.Contains("tensor 'score.weight' not found (a sequence classifier's head", Assert.Throws<InvalidDataException>(() => QwenModel.Load(noHead)).Message, StringComparison.Ordinal);

        // Heads QwenSharp does not run are refused by name, not run as a model that generates.
        string token = EmbeddingTests.DemoWith((Qwen2Config.FileName, File.ReadAllText(Path.Combine(Fixtures.DemoModel, Qwen2Config.FileName))
            .Replace("LlamaForCausalLM", "LlamaForTokenClassification", StringComparison.Ordinal)));
        Assert.Contains("config.json: architectures names LlamaForTokenClassification, whose TokenClassification head QwenSharp does not run",
            Assert.Throws<NotSupportedException>(() => QwenModel.Load(token)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Quantize_RefusesAClassifier_WritingNothing()
    {
        string output = Path.Combine(Fixtures.TempDirectory(), "classifier.gguf");

        var e = Assert.Throws<NotSupportedException>(() => GgufExport.Write(ClassifierFolder(3), output));

        Assert.Contains("a LlamaForSequenceClassification has a score head (score.weight), which a GGUF file of a llama model has no place for", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(output));
        Assert.False(File.Exists(output + ".partial"));
    }

    [Fact]
    public void Cli_Classify_PrintsEachInputsScoresAndLogits_AndRefusesWhatItCannotDo()
    {
        string folder = ClassifierFolder(3);
        string texts = Path.Combine(Fixtures.TempDirectory(), "texts.txt");
        File.WriteAllText(texts, Text[..10] + "\n\n" + Text + "\n");

        CliRunner.Result json = CliRunner.Run("classify", "--model", folder, "--text", Text, "--file", texts, "--json", "--threads", "2");

        Assert.True(json.ExitCode == 0, json.Stderr);
        Assert.Equal(["negative", "neutral", "positive"], json.Json.GetProperty("labels").EnumerateArray().Select(l => l.GetString()));
        Assert.Equal("softmax", json.Json.GetProperty("score_function").GetString());
        System.Text.Json.JsonElement[] results = [.. json.Json.GetProperty("results").EnumerateArray()];
        Assert.Equal(3, results.Length);
        var tokenizer = Tokenization.Tokenizer.FromDirectory(folder);
        foreach ((int index, string input) in ((int, string)[])[(0, Text), (1, Text[..10]), (2, Text)])
        {
            int[] ids = tokenizer.Encode(input, addSpecialTokens: true);
            AssertClose(ReferenceLogits(ids, 3), [.. results[index].GetProperty("logits").EnumerateArray().Select(v => v.GetSingle())], $"input {index}");
            Assert.Equal(ids.Length, results[index].GetProperty("tokens").GetInt32());
        }

        CliRunner.Result text = CliRunner.Run("classify", "--model", folder, Text, "--threads", "2");
        Assert.Equal(0, text.ExitCode);
        Assert.StartsWith("# 1 input(s), LlamaForSequenceClassification: softmax scores, then logits, of negative, neutral, positive\n0: ", text.Stdout, StringComparison.Ordinal);

        CliRunner.Result info = CliRunner.Run("info", "--model", folder, "--json");
        Assert.Equal(0, info.ExitCode);
        Assert.Equal(["negative", "neutral", "positive"], info.Json.GetProperty("classifier").GetProperty("labels").EnumerateArray().Select(l => l.GetString()));
        Assert.Equal(Pad, info.Json.GetProperty("classifier").GetProperty("pad_token_id").GetInt32());

        CliRunner.Result generate = CliRunner.Run("generate", "--model", folder, "--prompt", "Once", "--max-new-tokens", "2");
        Assert.Equal(2, generate.ExitCode);
        Assert.Contains("it classifies texts (qwensharp classify", Assert.Single(generate.ErrorLines), StringComparison.Ordinal);
        Assert.Equal("", generate.Stdout);

        CliRunner.Result generator = CliRunner.Run("classify", "--model", Fixtures.DemoModel, Text);
        Assert.Equal(2, generator.ExitCode);
        Assert.Contains("the model is a LlamaForCausalLM, which generates; classify needs a *ForSequenceClassification model", Assert.Single(generator.ErrorLines), StringComparison.Ordinal);

        CliRunner.Result none = CliRunner.Run("classify", "--model", folder);
        Assert.Equal(2, none.ExitCode);
        Assert.Contains("classify needs a text or a conversation", Assert.Single(none.ErrorLines), StringComparison.Ordinal);
    }
}
