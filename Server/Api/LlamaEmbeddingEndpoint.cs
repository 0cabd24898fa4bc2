using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace QwenSharp.Server.Api;

/// <summary>
/// llama-server's own <c>POST /embedding</c> (and <c>/embeddings</c>): <c>content</c> (or <c>input</c>) a text, token ids
/// or a list of either, answered as a list of <c>{"index", "embedding": [[...]]}</c>, each vector pooled as the model
/// ships it and then normalized as <c>embd_normalize</c> asks, as llama-server's common_embd_normalize does: 2 (the
/// default) Euclidean, 1 taxicab, 0 scaled to ±32760 (an int16 range), p &gt; 2 the p-norm, -1 none (refused for a
/// model whose own pipeline normalizes: its raw lengths are not kept).
/// </summary>
internal static class LlamaEmbeddingEndpoint
{
    private static readonly HashSet<string> s_fields = ["content", "input", "embd_normalize", "model"];

    public static async Task HandleAsync(HttpContext http, ServerState server)
    {
        using JsonDocument body = await RequestBody.ReadJsonAsync(http, server.Options.MaxBodyBytes).ConfigureAwait(false);
        RequestFields request = RequestFields.Of(body.RootElement, "", s_fields);
        if (request.Get("content") is not null && request.Get("input") is not null)
        {
            throw ApiException.BadField("content", "give 'content' or 'input', not both");
        }

        int norm = request.Int("embd_normalize", -1, 1000) ?? 2;
        if (norm == -1 && server.Model.EmbeddingConfig.Normalize)
        {
            throw ApiException.BadField("embd_normalize",
                $"'embd_normalize' -1: this model's embeddings are normalized as it ships them ({server.Model.EmbeddingConfig.Source}), and their raw lengths are not kept; 0, 1, 2 or a p-norm above 2 apply to them as they are");
        }

        using JsonDocument openAi = ChatMessageDraft.Request(w =>
        {
            w.WritePropertyName("input");
            (request.Get("content") ?? request.Get("input") ?? throw ApiException.BadField("content", "'content' is required: a text, token ids, or a list of either")).WriteTo(w);
            ChatMessageDraft.Copy(request, w, "model", "model");
        });
        (float[][] vectors, _, _, _) = await EmbeddingsEndpoint.EmbedAsync(http, server, openAi.RootElement).ConfigureAwait(false);
        await ResponseJson.WriteAsync(http, 200, w =>
        {
            w.WriteStartArray();
            for (int i = 0; i < vectors.Length; i++)
            {
                Normalize(vectors[i], norm);
                w.WriteStartObject();
                w.WriteNumber("index", i);
                w.WriteStartArray("embedding");
                ResponseJson.WriteNumbers(w, vectors[i]);
                w.WriteEndArray();
                w.WriteEndObject();
            }

            w.WriteEndArray();
        }).ConfigureAwait(false);
    }

    /// <summary><paramref name="vector"/> divided by its norm <paramref name="p"/> as llama.cpp's common_embd_normalize takes it (a zero vector stays zero).</summary>
    internal static void Normalize(float[] vector, int p)
    {
        double norm = p switch
        {
            -1 => 1,
            0 => vector.Max(v => Math.Abs((double)v)) / 32760.0,
            1 => vector.Sum(v => Math.Abs((double)v)),
            2 => Math.Sqrt(vector.Sum(v => (double)v * v)),
            _ => Math.Pow(vector.Sum(v => Math.Pow(Math.Abs((double)v), p)), 1.0 / p),
        };
        double scale = norm > 0 ? 1.0 / norm : 0;
        for (int i = 0; i < vector.Length; i++)
        {
            vector[i] = (float)(vector[i] * scale);
        }
    }
}
