using System.Text.Json;
using Microsoft.AspNetCore.Http;
using QwenSharp.Qwen2;
using QwenSharp.Server.Scheduling;

namespace QwenSharp.Server.Api;

/// <summary>
/// <c>POST /rerank</c> (and <c>/v1/rerank</c>, <c>/v2/rerank</c>, llama-server's <c>/reranking</c>): the rerank API of
/// Jina and Cohere as vLLM and llama-server serve it, for a cross-encoder reranker (a sequence classifier with one label)
/// or, as vLLM ranks with one, an embedding model. A reranker reads each document with the query
/// (<see cref="RerankPrompt"/>: the pair as the tokenizer encodes it, or the server's <c>--rerank-template</c>) and
/// scores it by the score head: <c>relevance_score</c> is the logit through a sigmoid as vLLM and Text Embeddings
/// Inference give it, <c>raw_scores: true</c> the logit itself, as llama-server gives it. An embedding model's score is
/// the similarity of the query's and the document's embeddings. The results come most relevant first, <c>top_n</c> of
/// them. Given <c>texts</c> in place of <c>documents</c>,
/// the request is Text Embeddings Inference's and so is the answer: a bare list of <c>{index, score[, text]}</c>. The
/// pairs run as /classify inputs do, and are counted with them in /metrics.
/// </summary>
internal static class RerankEndpoint
{
    private static readonly HashSet<string> s_fields =
        ["model", "query", "documents", "texts", "top_n", "return_documents", "return_text", "raw_scores", "user", "lora"];

    /// <summary>A document given as an object (Jina's and Cohere's form).</summary>
    private static readonly HashSet<string> s_documentFields = ["text"];

    public static async Task HandleAsync(HttpContext http, ServerState server)
    {
        using JsonDocument body = await RequestBody.ReadJsonAsync(http, server.Options.MaxBodyBytes).ConfigureAwait(false);
        RequestFields request = RequestFields.Of(body.RootElement, "", s_fields);
        RequireRanker(server, "/rerank");

        string model = request.String("model", 256) ?? server.ModelName;
        float[]? adapterScales = server.Adapters.ForRequest(request, model);
        request.String("user");
        string query = request.String("query") ?? throw ApiException.BadField("query", "'query' is required: the text the documents are ranked against");
        bool tei = request.Get("texts") is not null;
        if (tei && request.Get("documents") is not null)
        {
            throw ApiException.BadField("texts", "give 'documents' or 'texts' (Text Embeddings Inference's name), not both");
        }

        string field = tei ? "texts" : "documents";
        List<string> documents = Documents(request, field);
        int topN = request.Int("top_n", 0, int.MaxValue) is int n and > 0 ? Math.Min(n, documents.Count) : documents.Count;
        bool returnDocuments = !tei && (request.Bool("return_documents") ?? true);
        bool returnText = tei && (request.Bool("return_text") ?? false);
        bool rawScores = request.Bool("raw_scores") ?? false;
        if (!tei && request.Get("return_text") is not null)
        {
            throw ApiException.BadField("return_text", "'return_text' goes with 'texts' (Text Embeddings Inference's request); with 'documents' it is 'return_documents'");
        }

        if (tei && request.Get("return_documents") is not null)
        {
            throw ApiException.BadField("return_documents", "'return_documents' goes with 'documents'; with 'texts' (Text Embeddings Inference's request) it is 'return_text'");
        }

        (IReadOnlyList<DocumentRelevance> scored, long tokens) = await ScoreAsync(http, server, [.. documents.Select((d, i) => (query, d, $"{field}[{i}]"))], adapterScales)
            .ConfigureAwait(false);
        IReadOnlyList<DocumentRelevance> ranked = DocumentRelevance.Rank(scored);
        await ResponseJson.WriteAsync(http, 200, w =>
        {
            if (tei)
            {
                w.WriteStartArray();
                foreach (DocumentRelevance r in ranked.Take(topN))
                {
                    w.WriteStartObject();
                    w.WriteNumber("index", r.Index);
                    w.WriteNumber("score", rawScores ? r.Logit : r.Score);
                    if (returnText)
                    {
                        w.WriteString("text", documents[r.Index]);
                    }

                    w.WriteEndObject();
                }

                w.WriteEndArray();
                return;
            }

            w.WriteStartObject();
            w.WriteString("id", $"rerank-{Guid.NewGuid():N}");
            w.WriteString("object", "list");
            w.WriteString("model", model);
            w.WriteStartArray("results");
            foreach (DocumentRelevance r in ranked.Take(topN))
            {
                w.WriteStartObject();
                w.WriteNumber("index", r.Index);
                w.WriteNumber("relevance_score", rawScores ? r.Logit : r.Score);
                if (returnDocuments)
                {
                    w.WriteStartObject("document");
                    w.WriteString("text", documents[r.Index]);
                    w.WriteEndObject();
                }

                w.WriteEndObject();
            }

            w.WriteEndArray();
            ResponseJson.WritePromptUsage(w, tokens);
            w.WriteEndObject();
        }).ConfigureAwait(false);
    }

    /// <summary>A 400 (<c>model_does_not_rerank</c>) unless the model is a one-label classifier or an embedding model.</summary>
    public static void RequireRanker(ServerState server, string endpoint)
    {
        try
        {
            server.Model.RequireRanker(endpoint);
        }
        catch (NotSupportedException e)
        {
            throw new ApiException(400, e.Message, null, "model_does_not_rerank");
        }
    }

    /// <summary>
    /// Each (query, document) pair scored, in the pairs' order, with the tokens read: by a reranker, read together
    /// (<see cref="RerankPrompt"/>, the server's template) and scored by the head; by an embedding model, each text
    /// embedded once (<see cref="EmbeddingScoreAsync"/>). A pair without tokens or longer than the context is a 400
    /// naming its field.
    /// </summary>
    public static async Task<(IReadOnlyList<DocumentRelevance> Scores, long Tokens)> ScoreAsync(HttpContext http, ServerState server,
        IReadOnlyList<(string Query, string Document, string Field)> pairs, float[]? adapterScales)
    {
        if (server.Model.IsEmbeddingModel)
        {
            return await EmbeddingScoreAsync(http, server, pairs, adapterScales).ConfigureAwait(false);
        }

        var inputs = new List<int[]>(pairs.Count);
        foreach ((string query, string document, string field) in pairs)
        {
            int[] ids = RerankPrompt.Ids(server.Tokenizer, query, document, server.Options.RerankTemplate);
            if (ids.Length == 0)
            {
                throw ApiException.BadField(field, $"'{field}' and the query have no tokens together");
            }

            Jobs.CheckContext(server, ids.Length, $"'{field}' with the query", field);
            inputs.Add(ids);
        }

        using var deadline = new RequestDeadline(http.RequestAborted, server.Options.RequestTimeout);
        var job = new EmbeddingJob { Inputs = inputs, Classify = true, AdapterScales = adapterScales, Cancellation = deadline.Token };
        float[][] logits = await Jobs.RunAsync(server, job, deadline).ConfigureAwait(false);
        ClassifierHead head = server.Model.RequireReranker("/rerank");
        return ([.. logits.Select((l, i) => new DocumentRelevance(i, head.Scores(l)[0], l[0], inputs[i].Length))], inputs.Sum(i => (long)i.Length));
    }

    /// <summary>
    /// An embedding model's scores, as vLLM gives them: each distinct query and document embedded once (after the
    /// prompts sentence-transformers' encode_query and encode_document put before them), each pair's score their
    /// similarity (the model's <c>similarity_fn_name</c>, cosine by default); the tokens are those of the texts embedded.
    /// </summary>
    private static async Task<(IReadOnlyList<DocumentRelevance> Scores, long Tokens)> EmbeddingScoreAsync(HttpContext http, ServerState server,
        IReadOnlyList<(string Query, string Document, string Field)> pairs, float[]? adapterScales)
    {
        EmbeddingConfig config = server.Model.EmbeddingConfig;
        string queryPrompt = config.RankingPrompt(query: true), documentPrompt = config.RankingPrompt(query: false);
        var inputs = new List<int[]>();
        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        int Embedded(string text, string field, string what)
        {
            if (!index.TryGetValue(text, out int at))
            {
                int[] ids = server.Tokenizer.Encode(text, addSpecialTokens: true);
                if (ids.Length == 0)
                {
                    throw ApiException.BadField(field, $"{what} has no tokens");
                }

                Jobs.CheckContext(server, ids.Length, what, field);
                at = index[text] = inputs.Count;
                inputs.Add(ids);
            }

            return at;
        }

        (int Query, int Document)[] embedded = [.. pairs.Select(p => (Embedded(queryPrompt + p.Query, p.Field, "the query"), Embedded(documentPrompt + p.Document, p.Field, $"'{p.Field}'")))];
        using var deadline = new RequestDeadline(http.RequestAborted, server.Options.RequestTimeout);
        var job = new EmbeddingJob { Inputs = inputs, AdapterScales = adapterScales, Cancellation = deadline.Token };
        float[][] vectors = await Jobs.RunAsync(server, job, deadline).ConfigureAwait(false);
        return ([.. embedded.Select((e, i) =>
        {
            float similarity = (float)EmbeddingSimilarities.Of(config.Similarity, vectors[e.Query], vectors[e.Document]);
            return new DocumentRelevance(i, similarity, similarity, inputs[e.Query].Length + inputs[e.Document].Length);
        })], inputs.Sum(i => (long)i.Length));
    }

    /// <summary>The documents: a list of texts, each a string or Jina's and Cohere's <c>{"text": ...}</c>; at most as many as /v1/embeddings takes.</summary>
    private static List<string> Documents(RequestFields request, string field)
    {
        if (request.Get(field) is not JsonElement list)
        {
            throw ApiException.BadField("documents", "'documents' is required: the list of texts to rank against the query");
        }

        if (list.ValueKind != JsonValueKind.Array || list.GetArrayLength() == 0)
        {
            throw ApiException.BadField(field, $"'{field}' must be a non-empty list of texts, not {(list.ValueKind == JsonValueKind.Array ? "an empty list" : RequestFields.Kind(list))}");
        }

        if (list.GetArrayLength() > EmbeddingsEndpoint.MaxInputs)
        {
            throw ApiException.BadField(field, $"'{field}' has {list.GetArrayLength()} documents; a request takes at most {EmbeddingsEndpoint.MaxInputs}");
        }

        var documents = new List<string>(list.GetArrayLength());
        foreach (JsonElement item in list.EnumerateArray())
        {
            string path = $"{field}[{documents.Count}]";
            if (item.ValueKind == JsonValueKind.Object && field == "documents")
            {
                string? text = RequestFields.Of(item, path, s_documentFields).String("text");
                documents.Add(text ?? throw ApiException.BadField($"{path}.text", $"'{path}.text' is required: the document's text"));
            }
            else if (item.ValueKind == JsonValueKind.String)
            {
                documents.Add(RequestFields.Text(item, path));
            }
            else
            {
                throw ApiException.BadField(path, $"'{path}' must be a string{(field == "documents" ? " or {\"text\": ...}" : "")}, not {RequestFields.Kind(item)}");
            }
        }

        return documents;
    }
}
