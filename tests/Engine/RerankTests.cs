using QwenSharp.Tests.Cli;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Engine;

/// <summary>
/// <see cref="QwenModel.RerankAsync"/> on a one-label sequence classifier: each document's logit against llama.cpp's last
/// hidden state of the query and document as the tokenizer pairs them (or as a template writes them), mapped by the score
/// head in float64; its sigmoid the score; the most relevant first; and the models that cannot rerank, refused by name.
/// </summary>
public sealed class RerankTests
{
    internal const string Query = "Where did the little girl play?";

    internal static readonly string[] Documents =
    [
        "Once upon a time, there was a little girl named Lily. She liked to play in the park.",
        "The dog ran fast.",
        "Tom had a big red ball and he played with it in the garden every day.",
        "Lily",
    ];

    /// <summary>The reference logit of each document, the pair encoded as the demo tokenizer's pair template says: <c>&lt;s&gt; query &lt;s&gt; document</c>.</summary>
    internal static double[] ReferenceLogits(Tokenization.Tokenizer tokenizer, string query, IEnumerable<string> documents) =>
        [.. documents.Select(d => ClassificationTests.ReferenceLogits([1, .. tokenizer.Encode(query), 1, .. tokenizer.Encode(d)], 1)[0])];

    internal static void AssertRanked(double[] logits, IReadOnlyList<DocumentRelevance> ranked, string what)
    {
        Assert.Equal(logits.Length, ranked.Count);
        int[] order = [.. Enumerable.Range(0, logits.Length).OrderByDescending(i => logits[i])];
        Assert.Equal(order, ranked.Select(r => r.Index));
        foreach (DocumentRelevance r in ranked)
        {
            double expected = logits[r.Index];
            Assert.True(Math.Abs(expected - r.Logit) <= 1e-4 * Math.Max(1, Math.Abs(expected)), $"{what}: document {r.Index} logit {r.Logit}, expected {expected}");
            Assert.Equal(1 / (1 + Math.Exp(-expected)), r.Score, 1e-4);
        }
    }

    [Fact]
    public async Task RerankAsync_ScoresEachQueryAndDocumentPair_MostRelevantFirst()
    {
        using QwenModel model = QwenModel.Load(ClassificationTests.ClassifierFolder(1));

        IReadOnlyList<DocumentRelevance> ranked = await model.RerankAsync(Query, Documents);

        double[] logits = ReferenceLogits(model.Tokenizer, Query, Documents);
        Assert.True(logits.Distinct().Count() == logits.Length, "the fixture's documents must score apart for the order to say anything");
        AssertRanked(logits, ranked, "the pairs");
        Assert.All(ranked, r => Assert.Equal(model.Tokenizer.EncodePair(Query, Documents[r.Index]).Length, r.TokenCount));
    }

    [Fact]
    public async Task RerankAsync_WithATemplate_ReadsTheFilledTemplate_WithNoSpecialTokensAdded()
    {
        using QwenModel model = QwenModel.Load(ClassificationTests.ClassifierFolder(1));
        const string Template = "Question: {query}\nStory: {document}\nAnswer:";

        IReadOnlyList<DocumentRelevance> ranked = await model.RerankAsync(Query, Documents, Template);

        double[] logits = [.. Documents.Select(d => ClassificationTests.ReferenceLogits(model.Tokenizer.Encode($"Question: {Query}\nStory: {d}\nAnswer:"), 1)[0])];
        AssertRanked(logits, ranked, "the filled template");
        Assert.Contains(ReferenceLogits(model.Tokenizer, Query, Documents).Zip(logits), p => Math.Abs(p.First - p.Second) > 1e-3);
    }

    [Fact]
    public async Task ModelsThatCannotRerank_AndBadTemplates_AreRefusedByName()
    {
        using (QwenModel classifier = QwenModel.Load(ClassificationTests.ClassifierFolder(3)))
        {
            var labels = await Assert.ThrowsAsync<NotSupportedException>(() => classifier.RerankAsync(Query, Documents));
            Assert.Contains("RerankAsync needs a reranker, a classifier with one label (its logit the relevance); this classifier has 3: negative, neutral, positive", labels.Message, StringComparison.Ordinal);
        }

        using (QwenModel generator = QwenModel.Load(Fixtures.DemoModel))
        {
            var generates = await Assert.ThrowsAsync<NotSupportedException>(() => generator.RerankAsync(Query, Documents));
            Assert.Contains("the model is a LlamaForCausalLM, which generates; RerankAsync needs a reranker (a *ForSequenceClassification model with one label) or an embedding model", generates.Message, StringComparison.Ordinal);
        }

        using QwenModel reranker = QwenModel.Load(ClassificationTests.ClassifierFolder(1));
        var template = await Assert.ThrowsAsync<ArgumentException>(() => reranker.RerankAsync(Query, Documents, "Query: {query}"));
        Assert.Contains("the rerank template has no {document}", template.Message, StringComparison.Ordinal);
        Assert.Empty(await reranker.RerankAsync(Query, []));
    }

    [Fact]
    public void Cli_Rerank_PrintsTheDocumentsMostRelevantFirst_AndRefusesWhatItCannotDo()
    {
        string folder = ClassificationTests.ClassifierFolder(1);
        string file = Path.Combine(Fixtures.TempDirectory(), "documents.txt");
        File.WriteAllText(file, $"{Documents[2]}\n\n{Documents[3]}\n");
        var tokenizer = Tokenization.Tokenizer.FromDirectory(folder);
        double[] logits = ReferenceLogits(tokenizer, Query, Documents);

        CliRunner.Result json = CliRunner.Run("rerank", "--model", folder, "--query", Query, Documents[0], "--document", Documents[1], "--file", file, "--json", "--threads", "2");

        Assert.True(json.ExitCode == 0, json.Stderr);
        Assert.Equal("sigmoid", json.Json.GetProperty("score_function").GetString());
        AssertRanked(logits, [.. json.Json.GetProperty("results").EnumerateArray().Select(r => new DocumentRelevance(r.GetProperty("index").GetInt32(),
            r.GetProperty("relevance_score").GetSingle(), r.GetProperty("logit").GetSingle(), r.GetProperty("tokens").GetInt32()))], "the CLI's pairs");

        CliRunner.Result top = CliRunner.Run("rerank", "--model", folder, "--query", Query, "--document", Documents[0], "--document", Documents[1], "--document", Documents[2], "--top-n", "1");
        Assert.True(top.ExitCode == 0, top.Stderr);
        string[] lines = top.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("# 3 document(s) ranked by LlamaForSequenceClassification: relevance (sigmoid of the logit), logit, document index, text", lines[0]);
        int best = Enumerable.Range(0, 3).MaxBy(i => logits[i]);
        Assert.EndsWith($"  {best,4}  {Documents[best]}", Assert.Single(lines[1..]), StringComparison.Ordinal);

        foreach ((string[] args, string message) in ((string[], string)[])[
            (["--model", folder, Documents[0]], "rerank needs --query Q"),
            (["--model", folder, "--query", Query], "rerank needs documents: DOCUMENT, --document D or --file F"),
            (["--model", folder, "--query", Query, "--document", ""], "text 0 is empty"),
            (["--model", folder, "--query", Query, Documents[0], "--rerank-template", "Query: {query}"], "--rerank-template: the rerank template has no {document}"),
            (["--model", folder, "--query", Query, Documents[0], "--rerank-template", "template.txt"], "--rerank-template 'template.txt': no such file, and as a template it has no {query} or {document}"),
            (["--model", folder, "--query", Query, Documents[0], "--top-n", "0"], "--top-n"),
            (["--model", ClassificationTests.ClassifierFolder(3), "--query", Query, Documents[0]], "rerank needs a reranker, a classifier with one label (its logit the relevance); this classifier has 3"),
            (["--model", Fixtures.DemoModel, "--query", Query, Documents[0]], "which generates; rerank needs a reranker (a *ForSequenceClassification model with one label) or an embedding model")])
        {
            CliRunner.Result refused = CliRunner.Run(["rerank", .. args]);
            Assert.True(refused.ExitCode == 2, $"{string.Join(' ', args)}: {refused.ExitCode} {refused.Stderr}");
            Assert.Contains(message, Assert.Single(refused.ErrorLines), StringComparison.Ordinal);
            Assert.Equal("", refused.Stdout);
        }

        CliRunner.Result serve = CliRunner.Run("serve", "--model", Fixtures.DemoModel, "--port", "0", "--rerank-template", "{query} {document}");
        Assert.Equal(2, serve.ExitCode);
        Assert.Contains("which generates; --rerank-template needs a *ForSequenceClassification model", Assert.Single(serve.ErrorLines), StringComparison.Ordinal);

        CliRunner.Result generate = CliRunner.Run("generate", "--model", folder, "--prompt", "Once", "--max-new-tokens", "2");
        Assert.Equal(2, generate.ExitCode);
        Assert.Contains("with its one label it reranks: qwensharp rerank", Assert.Single(generate.ErrorLines), StringComparison.Ordinal);
    }
}
