using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace QwenSharp.Server.Api;

/// <summary>
/// <c>POST /score</c> (and <c>/v1/score</c>): vLLM's score API for a cross-encoder (a one-label classifier, as
/// <c>/rerank</c>) or an embedding model: <c>text_1</c> and <c>text_2</c>, each a text or a list; one text against a list
/// scores it with each, two lists of one length pair up in order. Each pair's score is the logit through a sigmoid (an
/// embedding model's: the two embeddings' similarity), in the pairs' order, as vLLM gives it:
/// <c>{"id", "object": "list", "data": [{"index", "object": "score", "score"}], "usage"}</c>.
/// </summary>
internal static class ScoreEndpoint
{
    private static readonly HashSet<string> s_fields = ["model", "text_1", "text_2", "user", "lora"];

    public static async Task HandleAsync(HttpContext http, ServerState server)
    {
        using JsonDocument body = await RequestBody.ReadJsonAsync(http, server.Options.MaxBodyBytes).ConfigureAwait(false);
        RequestFields request = RequestFields.Of(body.RootElement, "", s_fields);
        RerankEndpoint.RequireRanker(server, "/score");
        string model = request.String("model", 256) ?? server.ModelName;
        float[]? adapterScales = server.Adapters.ForRequest(request, model);
        request.String("user");
        (IReadOnlyList<string> first, bool firstList) = Texts(request, "text_1");
        (IReadOnlyList<string> second, bool secondList) = Texts(request, "text_2");
        if (firstList && secondList && first.Count != second.Count)
        {
            throw ApiException.BadField("text_2", $"'text_1' has {first.Count} texts and 'text_2' {second.Count}: two lists pair up in order, so they are as long");
        }

        if (firstList && !secondList)
        {
            throw ApiException.BadField("text_1", "'text_1' is a list and 'text_2' one text: give one text as 'text_1' to score it against each of a list in 'text_2'");
        }

        int count = Math.Max(first.Count, second.Count);
        (string, string, string)[] pairs = [.. Enumerable.Range(0, count).Select(i =>
            (first[firstList ? i : 0], second[secondList ? i : 0], secondList ? $"text_2[{i}]" : "text_2"))];
        (IReadOnlyList<DocumentRelevance> scored, long tokens) = await RerankEndpoint.ScoreAsync(http, server, pairs, adapterScales).ConfigureAwait(false);

        await ResponseJson.WriteAsync(http, 200, w =>
        {
            w.WriteStartObject();
            w.WriteString("id", $"score-{Guid.NewGuid():N}");
            w.WriteString("object", "list");
            w.WriteNumber("created", DateTimeOffset.UtcNow.ToUnixTimeSeconds());
            w.WriteString("model", model);
            w.WriteStartArray("data");
            foreach (DocumentRelevance r in scored)
            {
                w.WriteStartObject();
                w.WriteNumber("index", r.Index);
                w.WriteString("object", "score");
                w.WriteNumber("score", r.Score);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            ResponseJson.WritePromptUsage(w, tokens);
            w.WriteEndObject();
        }).ConfigureAwait(false);
    }

    /// <summary>A field that is one text or a non-empty list of them (at most as many as /v1/embeddings takes), and whether it was a list.</summary>
    private static (IReadOnlyList<string> Texts, bool List) Texts(RequestFields request, string field)
    {
        JsonElement value = request.Get(field) ?? throw ApiException.BadField(field, $"'{field}' is required: a text or a list of texts");
        IReadOnlyList<string> texts = request.StringOrList(field, EmbeddingsEndpoint.MaxInputs, int.MaxValue);
        return texts.Count == 0 ? throw ApiException.BadField(field, $"'{field}' is an empty list") : (texts, value.ValueKind == JsonValueKind.Array);
    }
}
