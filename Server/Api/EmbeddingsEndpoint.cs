using System.Runtime.InteropServices;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using QwenSharp.Errors;
using QwenSharp.Server.Scheduling;

namespace QwenSharp.Server.Api;

/// <summary>
/// <c>POST /v1/embeddings</c>: OpenAI's embeddings API. The input is a text, token ids, or a list of either (texts
/// encoded with the tokenizer's special tokens); each is pooled and normalized as the model ships it (see
/// <see cref="Qwen2.EmbeddingConfig"/>). <c>dimensions</c> keeps the first values (before normalizing);
/// <c>encoding_format: base64</c> sends each vector as its little-endian float32 bytes, as OpenAI's clients ask by default.
/// Texts go after the model's prompt named by <c>prompt_name</c> (or its default prompt); token ids go as they are.
/// </summary>
internal static class EmbeddingsEndpoint
{
    /// <summary>OpenAI's limit on the inputs of one request.</summary>
    public const int MaxInputs = 2048;

    // prompt_name: Text Embeddings Inference's and sentence-transformers' named prompt (an extension of OpenAI's API).
    // truncate: Text Embeddings Inference's (cut a text too long to the model's max_seq_length, at most the context).
    private static readonly HashSet<string> s_fields = ["model", "input", "encoding_format", "dimensions", "user", "prompt_name", "truncate", "lora"];

    public static async Task HandleAsync(HttpContext http, ServerState server)
    {
        using JsonDocument body = await RequestBody.ReadJsonAsync(http, server.Options.MaxBodyBytes).ConfigureAwait(false);
        (float[][] vectors, long tokens, string model, bool base64) = await EmbedAsync(http, server, body.RootElement).ConfigureAwait(false);
        await ResponseJson.WriteAsync(http, 200, w =>
        {
            w.WriteStartObject();
            w.WriteString("object", "list");
            w.WriteStartArray("data");
            for (int i = 0; i < vectors.Length; i++)
            {
                w.WriteStartObject();
                w.WriteString("object", "embedding");
                w.WriteNumber("index", i);
                if (base64)
                {
                    w.WriteBase64String("embedding", MemoryMarshal.AsBytes(vectors[i].AsSpan()));
                }
                else
                {
                    w.WritePropertyName("embedding");
                    ResponseJson.WriteNumbers(w, vectors[i]);
                }

                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteString("model", model);
            ResponseJson.WritePromptUsage(w, tokens);
            w.WriteEndObject();
        }).ConfigureAwait(false);
    }

    /// <summary>
    /// The vectors an embeddings request <paramref name="body"/> asks for (Ollama's <c>/api/embed</c> rewrites its
    /// requests as one), with its input tokens, model and encoding.
    /// </summary>
    public static async Task<(float[][] Vectors, long Tokens, string Model, bool Base64)> EmbedAsync(HttpContext http, ServerState server, JsonElement body)
    {
        RequestFields request = RequestFields.Of(body, "", s_fields);
        string model = request.String("model", 256) ?? server.ModelName;
        float[]? adapterScales = server.Adapters.ForRequest(request, model);
        int? dimensions = request.Int("dimensions", 1, server.Model.EmbeddingDimensions);
        bool base64 = request.String("encoding_format", 16) switch
        {
            null or "float" => false,
            "base64" => true,
            string other => throw ApiException.BadField("encoding_format", $"'encoding_format' is '{other}'; it is 'float' or 'base64'"),
        };
        request.String("user");
        List<int[]> inputs = Inputs(request, server);

        using var deadline = new RequestDeadline(http.RequestAborted, server.Options.RequestTimeout);
        var job = new EmbeddingJob { Inputs = inputs, Dimensions = dimensions, AdapterScales = adapterScales, Cancellation = deadline.Token };
        float[][] vectors = await Jobs.RunAsync(server, job, deadline).ConfigureAwait(false);
        return (vectors, inputs.Sum(i => (long)i.Length), model, base64);
    }

    /// <summary>The inputs as ids, each with tokens and inside the server's context, naming the first that is not.</summary>
    private static List<int[]> Inputs(RequestFields request, ServerState server)
    {
        string? promptName = request.String("prompt_name", 256);
        string prefix;
        try
        {
            prefix = server.Model.EmbeddingConfig.PromptFor(promptName, prompt: null, server.Model.EmbeddingConfig.Pooling);
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException)
        {
            throw ApiException.BadField("prompt_name", e is ArgumentException argument ? argument.BareMessage() : e.Message);
        }

        if (promptName is not null && request.Get("input") is { ValueKind: JsonValueKind.Array } given && given.GetArrayLength() > 0
            && given.EnumerateArray().Any(item => item.ValueKind is JsonValueKind.Number or JsonValueKind.Array))
        {
            throw ApiException.BadField("prompt_name", "'prompt_name' goes before texts; token ids are embedded as they are");
        }

        int? truncateTo = request.Bool("truncate") == true ? server.Model.EmbeddingConfig.TruncationLength(server.Context) : null;
        (List<int[]> inputs, List<string> texts) = PromptInput.Read(request, server, "input", prefix, truncateTo);
        CheckInputs(request, server, inputs, texts);
        return inputs;
    }

    /// <summary>
    /// Each of <c>input</c>'s inputs has tokens and fits the server's context, else a 400 naming the first that does not
    /// (<c>input[i]</c> in a list); at most <see cref="MaxInputs"/> of them.
    /// </summary>
    public static void CheckInputs(RequestFields request, ServerState server, List<int[]> inputs, List<string> texts)
    {
        if (inputs.Count > MaxInputs)
        {
            throw ApiException.BadField("input", $"'input' has {inputs.Count} inputs; a request takes at most {MaxInputs}");
        }

        bool list = request.Get("input") is { ValueKind: JsonValueKind.Array } all && all.GetArrayLength() > 0 && all[0].ValueKind != JsonValueKind.Number;
        for (int i = 0; i < inputs.Count; i++)
        {
            string path = list ? $"input[{i}]" : "input";
            // An empty text is refused as at OpenAI, even where the tokenizer would give it a BOS.
            if (inputs[i].Length == 0 || texts[i].Length == 0)
            {
                throw ApiException.BadField(path, $"'{path}' has no tokens (an empty text or list)");
            }

            Jobs.CheckContext(server, inputs[i].Length, $"'{path}'", path);
        }
    }
}
