using System.Net;
using System.Text.Json;
using QwenSharp.Server;
using QwenSharp.Tests.Engine;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Server;

/// <summary>
/// <c>/rerank</c> over a one-label classifier, in each shape its clients send: Jina's and Cohere's (vLLM, llama-server:
/// <c>results</c> most relevant first, <c>top_n</c>, documents as strings or <c>{"text"}</c>, <c>return_documents</c>,
/// <c>raw_scores</c> for llama-server's raw logit) and Text Embeddings Inference's (<c>texts</c>: a bare list), each score
/// against llama.cpp's last hidden state of the pair mapped by the score head in float64; the server's template; and
/// what is wrong with a request or a model, answered 400 naming it.
/// </summary>
public sealed class RerankServerTests
{
    private static readonly string s_documents = JsonSerializer.Serialize(RerankTests.Documents);

    private static void AssertResults(double[] logits, JsonElement results, int count, bool raw, string scoreField, string? textField)
    {
        int[] order = [.. Enumerable.Range(0, logits.Length).OrderByDescending(i => logits[i]).Take(count)];
        Assert.Equal(order, results.EnumerateArray().Select(r => r.GetProperty("index").GetInt32()));
        foreach (JsonElement r in results.EnumerateArray())
        {
            int index = r.GetProperty("index").GetInt32();
            double expected = raw ? logits[index] : 1 / (1 + Math.Exp(-logits[index]));
            Assert.Equal(expected, r.GetProperty(scoreField).GetDouble(), raw ? 1e-4 * Math.Max(1, Math.Abs(expected)) : 1e-4);
            if (textField is null)
            {
                Assert.False(r.TryGetProperty("document", out _) || r.TryGetProperty("text", out _), r.ToString());
            }
            else
            {
                JsonElement text = textField == "document" ? r.GetProperty("document").GetProperty("text") : r.GetProperty(textField);
                Assert.Equal(RerankTests.Documents[index], text.GetString());
            }
        }
    }

    [Fact]
    public async Task Rerank_RanksTheDocuments_InJinasCoheresAndTeisShapes()
    {
        await using TestServer server = await TestServer.StartAsync(ClassificationTests.ClassifierFolder(1), null);
        double[] logits = RerankTests.ReferenceLogits(server.Model.Tokenizer, RerankTests.Query, RerankTests.Documents);
        int tokens = RerankTests.Documents.Sum(d => server.Model.Tokenizer.EncodePair(RerankTests.Query, d).Length);

        JsonElement all = await server.PostOkAsync("/v1/rerank", $$"""{"model": "m", "query": "{{RerankTests.Query}}", "documents": {{s_documents}}}""");
        Assert.StartsWith("rerank-", all.GetProperty("id").GetString(), StringComparison.Ordinal);
        Assert.Equal("m", all.GetProperty("model").GetString());
        AssertResults(logits, all.GetProperty("results"), logits.Length, raw: false, "relevance_score", "document");
        Assert.Equal(tokens, all.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(tokens, all.GetProperty("usage").GetProperty("total_tokens").GetInt32());

        // top_n, documents as Jina's objects, no documents back, the raw logit (llama-server's relevance_score); every path.
        string objects = JsonSerializer.Serialize(RerankTests.Documents.Select(d => new { text = d }));
        foreach (string path in (string[])["/rerank", "/v2/rerank", "/reranking", "/v1/reranking"])
        {
            JsonElement top = await server.PostOkAsync(path,
                $$"""{"query": "{{RerankTests.Query}}", "documents": {{objects}}, "top_n": 2, "return_documents": false, "raw_scores": true}""");
            AssertResults(logits, top.GetProperty("results"), 2, raw: true, "relevance_score", null);
        }

        // top_n of 0 (vLLM's "all") and above the count give all.
        Assert.Equal(4, (await server.PostOkAsync("/rerank", $$"""{"query": "{{RerankTests.Query}}", "documents": {{s_documents}}, "top_n": 0}""")).GetProperty("results").GetArrayLength());
        Assert.Equal(4, (await server.PostOkAsync("/rerank", $$"""{"query": "{{RerankTests.Query}}", "documents": {{s_documents}}, "top_n": 9}""")).GetProperty("results").GetArrayLength());

        // Text Embeddings Inference: texts in, a bare list out, text only when asked.
        JsonElement tei = await server.PostOkAsync("/rerank", $$"""{"query": "{{RerankTests.Query}}", "texts": {{s_documents}}, "return_text": true}""");
        AssertResults(logits, tei, logits.Length, raw: false, "score", "text");
        JsonElement teiRaw = await server.PostOkAsync("/rerank", $$"""{"query": "{{RerankTests.Query}}", "texts": {{s_documents}}, "raw_scores": true, "top_n": 1}""");
        AssertResults(logits, teiRaw, 1, raw: true, "score", null);

        // Each pair counts as a classified input.
        Assert.Equal(4 + (4 * 4) + 4 + 4 + 4 + 4, await server.MetricAsync("qwensharp_classify_inputs_total"));
    }

    /// <summary>vLLM's score API: one text against a list, and two lists in pairs, each pair's sigmoid score in order.</summary>
    [Fact]
    public async Task Score_ScoresEachPair_InOrder()
    {
        await using TestServer server = await TestServer.StartAsync(ClassificationTests.ClassifierFolder(1), null);
        double[] logits = RerankTests.ReferenceLogits(server.Model.Tokenizer, RerankTests.Query, RerankTests.Documents);

        JsonElement oneToMany = await server.PostOkAsync("/score", $$"""{"model": "m", "text_1": "{{RerankTests.Query}}", "text_2": {{s_documents}}}""");
        string queries = JsonSerializer.Serialize(RerankTests.Documents.Select(_ => RerankTests.Query));
        JsonElement pairs = await server.PostOkAsync("/v1/score", $$"""{"text_1": {{queries}}, "text_2": {{s_documents}}}""");

        foreach (JsonElement answer in (JsonElement[])[oneToMany, pairs])
        {
            Assert.Equal("list", answer.GetProperty("object").GetString());
            JsonElement[] data = [.. answer.GetProperty("data").EnumerateArray()];
            Assert.Equal(logits.Length, data.Length);
            for (int i = 0; i < data.Length; i++)
            {
                Assert.Equal(i, data[i].GetProperty("index").GetInt32());
                Assert.Equal("score", data[i].GetProperty("object").GetString());
                Assert.Equal(1 / (1 + Math.Exp(-logits[i])), data[i].GetProperty("score").GetDouble(), 1e-4);
            }
        }

        foreach ((string json, string param, string message) in ((string, string, string)[])[
            ("""{"text_1": "a"}""", "text_2", "'text_2' is required"),
            ("""{"text_1": ["a", "b"], "text_2": "c"}""", "text_1", "give one text as 'text_1'"),
            ("""{"text_1": ["a", "b"], "text_2": ["c"]}""", "text_2", "'text_1' has 2 texts and 'text_2' 1"),
            ("""{"text_1": "a", "text_2": []}""", "text_2", "'text_2' is an empty list"),
            ("""{"text_1": "a", "text_2": "b", "queries": "c"}""", "queries", "unknown field")])
        {
            await server.AssertRefusedAsync("/score", json, param, message);
        }
    }

    [Fact]
    public async Task Rerank_WithTheServersTemplate_ReadsTheFilledTemplate()
    {
        const string Template = "Question: {query}\nStory: {document}\nAnswer:";
        await using TestServer server = await TestServer.StartAsync(ClassificationTests.ClassifierFolder(1), new ServerOptions { RerankTemplate = Template });
        double[] logits = [.. RerankTests.Documents.Select(d =>
            ClassificationTests.ReferenceLogits(server.Model.Tokenizer.Encode($"Question: {RerankTests.Query}\nStory: {d}\nAnswer:"), 1)[0])];

        JsonElement ranked = await server.PostOkAsync("/rerank", $$"""{"query": "{{RerankTests.Query}}", "documents": {{s_documents}}}""");

        AssertResults(logits, ranked.GetProperty("results"), logits.Length, raw: false, "relevance_score", "document");
    }

    [Fact]
    public async Task BadRerankRequests_AndModelsThatCannotRerank_Are400sNamingWhy()
    {
        await using (TestServer server = await TestServer.StartAsync(ClassificationTests.ClassifierFolder(1), new ServerOptions { Context = 24 }))
        {
            foreach ((string json, string param, string message) in ((string, string, string)[])[
                ("""{"documents": ["a"]}""", "query", "'query' is required"),
                ("""{"query": "a"}""", "documents", "'documents' is required"),
                ("""{"query": "a", "documents": []}""", "documents", "'documents' must be a non-empty list of texts, not an empty list"),
                ("""{"query": "a", "documents": "b"}""", "documents", "not a string"),
                ("""{"query": "a", "documents": ["b", 3]}""", "documents[1]", "'documents[1]' must be a string or {\"text\": ...}, not a number"),
                ("""{"query": "a", "documents": [{"txt": "b"}]}""", "documents[0].txt", "unknown field 'documents[0].txt'"),
                ("""{"query": "a", "documents": [{}]}""", "documents[0].text", "'documents[0].text' is required"),
                ("""{"query": "a", "texts": [{"text": "b"}]}""", "texts[0]", "'texts[0]' must be a string, not an object"),
                ("""{"query": "a", "documents": ["b"], "texts": ["b"]}""", "texts", "give 'documents' or 'texts'"),
                ("""{"query": "a", "documents": ["b"], "return_text": true}""", "return_text", "with 'documents' it is 'return_documents'"),
                ("""{"query": "a", "texts": ["b"], "return_documents": true}""", "return_documents", "with 'texts'"),
                ("""{"query": "a", "documents": ["b"], "top_n": -1}""", "top_n", "'top_n' must be an integer from 0"),
                ("""{"query": "a", "documents": ["b"], "top": 1}""", "top", "unknown field 'top'"),
                ($$"""{"query": "a", "documents": ["b", "{{string.Join(' ', Enumerable.Repeat("little", 30))}}"]}""", "documents[1]", "'documents[1]' with the query")])
            {
                await server.AssertRefusedAsync("/rerank", json, param, message);
            }
        }

        await using (TestServer classifier = await TestServer.StartAsync(ClassificationTests.ClassifierFolder(3), null))
        {
            (HttpStatusCode status, JsonDocument body) = await classifier.PostAsync("/v1/rerank", """{"query": "a", "documents": ["b"]}""");
            using (body)
            {
                Assert.Equal(HttpStatusCode.BadRequest, status);
                Assert.Equal("model_does_not_rerank", body.RootElement.GetProperty("error").GetProperty("code").GetString());
                Assert.Contains("/rerank needs a reranker, a classifier with one label (its logit the relevance); this classifier has 3", body.RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
            }
        }

        await using TestServer generator = await TestServer.StartAsync(Fixtures.DemoModel, null);
        (HttpStatusCode refused, JsonDocument generates) = await generator.PostAsync("/rerank", """{"query": "a", "documents": ["b"]}""");
        using (generates)
        {
            Assert.Equal(HttpStatusCode.BadRequest, refused);
            Assert.Equal("model_does_not_rerank", generates.RootElement.GetProperty("error").GetProperty("code").GetString());
            Assert.Contains("which generates; /rerank needs a reranker (a *ForSequenceClassification model with one label) or an embedding model", generates.RootElement.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        }
    }
}
