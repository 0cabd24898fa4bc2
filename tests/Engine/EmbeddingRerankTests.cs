using System.Net;
using System.Text.Json;
using LLama.Native;
using QwenSharp.Qwen2;
using QwenSharp.Tests.Cli;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Engine;

/// <summary>
/// Ranking with an embedding model (a bi-encoder), as vLLM ranks and scores with one: the query and each document
/// embedded alone, after the prompts sentence-transformers' encode_query and encode_document pick (<c>query</c>;
/// <c>passage</c>), compared by the model's <c>similarity_fn_name</c> — each similarity against llama.cpp's embeddings of
/// the same texts, compared here in float64 — through <see cref="QwenModel.RerankAsync"/>, <c>qwensharp rerank</c>, and
/// the server's <c>/rerank</c> and <c>/score</c>.
/// </summary>
public sealed class EmbeddingRerankTests
{
    private const string QueryPrompt = "Question: ";
    private const string PassagePrompt = "Story: ";

    /// <summary>The demo model as a mean-pooling embedding model (not normalized, so cosine and dot differ) with query and passage prompts.</summary>
    private static string EmbeddingFolder(string? similarity) => EmbeddingTests.DemoWith(
        EmbeddingTests.Modules("Transformer", "Pooling"), EmbeddingTests.Pooling("pooling_mode_mean_tokens"),
        (EmbeddingPrompts.FileName, $$"""{"prompts": {"query": "{{QueryPrompt}}", "passage": "{{PassagePrompt}}", "classification": "Topic: "}{{(similarity is null ? "" : $", \"similarity_fn_name\": \"{similarity}\"")}}}"""));

    /// <summary>llama.cpp's mean-pooled embedding of a text, encoded as the demo tokenizer encodes it with its special tokens.</summary>
    private static float[] LlamaCppEmbedding(string text)
    {
        string gguf = GgufFixture.Write(Fixtures.DemoModel);
        return LlamaCpp.Embedding(gguf, TestTokenizers.Stories.Encode(text, addSpecialTokens: true), LLamaPoolingType.Mean);
    }

    /// <summary>The reference similarity of the query's and each document's llama.cpp embeddings, as sentence-transformers defines it.</summary>
    internal static double[] ReferenceSimilarities(string? similarity, string query, IEnumerable<string> documents)
    {
        float[] q = LlamaCppEmbedding(QueryPrompt + query);
        return [.. documents.Select(d =>
        {
            float[] e = LlamaCppEmbedding(PassagePrompt + d);
            double dot = q.Zip(e, (x, y) => (double)x * y).Sum();
            return similarity switch
            {
                null => dot / (Math.Sqrt(q.Sum(x => (double)x * x)) * Math.Sqrt(e.Sum(x => (double)x * x))),
                "dot" => dot,
                "manhattan" => -q.Zip(e, (x, y) => Math.Abs((double)x - y)).Sum(),
                _ => throw new ArgumentException(similarity, nameof(similarity)),
            };
        })];
    }

    private static void AssertNear(double expected, double actual, string what) =>
        Assert.True(Math.Abs(expected - actual) <= 1e-4 * Math.Max(1, Math.Abs(expected)), $"{what}: {actual}, expected {expected}");

    [Theory]
    [InlineData(null)]
    [InlineData("dot")]
    [InlineData("manhattan")]
    public async Task RerankAsync_ComparesTheQuerysAndEachDocumentsEmbeddings_AsTheModelSays(string? similarity)
    {
        using QwenModel model = QwenModel.Load(EmbeddingFolder(similarity));

        IReadOnlyList<DocumentRelevance> ranked = await model.RerankAsync(RerankTests.Query, RerankTests.Documents);

        double[] expected = ReferenceSimilarities(similarity, RerankTests.Query, RerankTests.Documents);
        Assert.True(expected.Distinct().Count() == expected.Length, "the documents must score apart for the order to say anything");
        Assert.Equal(Enumerable.Range(0, expected.Length).OrderByDescending(i => expected[i]), ranked.Select(r => r.Index));
        int queryTokens = TestTokenizers.Stories.Encode(QueryPrompt + RerankTests.Query, addSpecialTokens: true).Length;
        foreach (DocumentRelevance r in ranked)
        {
            AssertNear(expected[r.Index], r.Score, $"{similarity ?? "cosine"}, document {r.Index}");
            Assert.Equal(r.Score, r.Logit);
            Assert.Equal(queryTokens + TestTokenizers.Stories.Encode(PassagePrompt + RerankTests.Documents[r.Index], addSpecialTokens: true).Length, r.TokenCount);
        }

        var template = await Assert.ThrowsAsync<ArgumentException>(() => model.RerankAsync(RerankTests.Query, RerankTests.Documents, "{query} {document}"));
        Assert.Contains("an embedding model embeds each alone", template.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ASimilarityNotKnown_IsRefusedNamingTheFile()
    {
        string folder = EmbeddingFolder("jaccard");

        var error = Assert.Throws<InvalidDataException>(() => QwenModel.Load(folder));

        Assert.Contains($"{Path.Combine(folder, EmbeddingPrompts.FileName)}: similarity_fn_name is \"jaccard\", expected one of cosine, dot, euclidean, manhattan", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Cli_Rerank_OnAnEmbeddingModel_PrintsTheSimilarities()
    {
        string folder = EmbeddingFolder(null);
        double[] expected = ReferenceSimilarities(null, RerankTests.Query, RerankTests.Documents[..2]);

        CliRunner.Result json = CliRunner.Run("rerank", "--model", folder, "--query", RerankTests.Query, RerankTests.Documents[0], RerankTests.Documents[1], "--json", "--threads", "2");

        Assert.True(json.ExitCode == 0, json.Stderr);
        Assert.Equal("cosine", json.Json.GetProperty("score_function").GetString());
        foreach (JsonElement r in json.Json.GetProperty("results").EnumerateArray())
        {
            AssertNear(expected[r.GetProperty("index").GetInt32()], r.GetProperty("relevance_score").GetDouble(), "the CLI's similarity");
        }

        CliRunner.Result text = CliRunner.Run("rerank", "--model", folder, "--query", RerankTests.Query, RerankTests.Documents[0], "--threads", "2");
        Assert.StartsWith("# 1 document(s) ranked by LlamaForCausalLM embeddings: cosine similarity to the query's", text.Stdout, StringComparison.Ordinal);

        CliRunner.Result refused = CliRunner.Run("rerank", "--model", folder, "--query", RerankTests.Query, RerankTests.Documents[0], "--rerank-template", "{query} {document}");
        Assert.Equal(2, refused.ExitCode);
        Assert.Contains("is an embedding model, which embeds each alone", Assert.Single(refused.ErrorLines), StringComparison.Ordinal);
    }

    [Fact]
    public async Task TheServersRerankAndScore_OnAnEmbeddingModel_AreTheEmbeddingsSimilarities()
    {
        await using TestServer server = await TestServer.StartAsync(EmbeddingFolder(null), null);
        double[] expected = ReferenceSimilarities(null, RerankTests.Query, RerankTests.Documents);
        int Tokens(string text) => TestTokenizers.Stories.Encode(text, addSpecialTokens: true).Length;

        JsonElement ranked = await server.PostOkAsync("/rerank", JsonSerializer.Serialize(new { query = RerankTests.Query, documents = RerankTests.Documents }));
        JsonElement[] results = [.. ranked.GetProperty("results").EnumerateArray()];
        Assert.Equal(Enumerable.Range(0, expected.Length).OrderByDescending(i => expected[i]), results.Select(r => r.GetProperty("index").GetInt32()));
        Assert.All(results, r => AssertNear(expected[r.GetProperty("index").GetInt32()], r.GetProperty("relevance_score").GetDouble(), "/rerank"));
        Assert.Equal(Tokens(QueryPrompt + RerankTests.Query) + RerankTests.Documents.Sum(d => Tokens(PassagePrompt + d)), ranked.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());

        // One text against a list: each text embedded once, however often it comes.
        string[] again = [RerankTests.Documents[1], RerankTests.Documents[0], RerankTests.Documents[1]];
        JsonElement scored = await server.PostOkAsync("/score", JsonSerializer.Serialize(new { text_1 = RerankTests.Query, text_2 = again }));
        JsonElement[] data = [.. scored.GetProperty("data").EnumerateArray()];
        Assert.Equal([0, 1, 2], data.Select(d => d.GetProperty("index").GetInt32()));
        Assert.All(data, d => AssertNear(expected[d.GetProperty("index").GetInt32() == 1 ? 0 : 1], d.GetProperty("score").GetDouble(), "/score"));
        Assert.Equal(Tokens(QueryPrompt + RerankTests.Query) + Tokens(PassagePrompt + RerankTests.Documents[0]) + Tokens(PassagePrompt + RerankTests.Documents[1]),
            scored.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());

        // A generating model still cannot rank, and says what can.
        await using TestServer generator = await TestServer.StartAsync(Fixtures.DemoModel, null);
        (HttpStatusCode status, JsonDocument body) = await generator.PostAsync("/score", """{"text_1": "a", "text_2": "b"}""");
        using (body)
        {
            Assert.Equal(HttpStatusCode.BadRequest, status);
            Assert.Contains("/score needs a reranker (a *ForSequenceClassification model with one label) or an embedding model", body.RootElement.GetProperty("error").GetProperty("message").GetString(),
                StringComparison.Ordinal);
        }
    }
}
