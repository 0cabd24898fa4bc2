using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using QwenSharp.Formats;
using QwenSharp.Generation;
using QwenSharp.Server.Scheduling;
using QwenSharp.Qwen2;

namespace QwenSharp.Server.Api;

/// <summary>
/// Ollama's API, for the apps and libraries that speak only it: <c>POST /api/chat</c> and <c>/api/generate</c> (rewritten
/// as chat completions requests, <see cref="OllamaRequest"/>, and answered in Ollama's shapes, streamed as NDJSON by
/// default, <see cref="OllamaWriter"/>), <c>POST /api/embed</c> (and the older <c>/api/embeddings</c>), <c>GET
/// /api/tags</c> and <c>/api/ps</c> (the one model, as <c>NAME:latest</c>), <c>POST /api/show</c> (its details, chat
/// template, architecture and capabilities) and <c>GET /api/version</c>. Pulling, pushing, creating, copying and deleting
/// models are Ollama's model store, which this server has not: refused naming what to do. Errors on these paths take
/// Ollama's shape, <c>{"error": "..."}</c>.
/// </summary>
internal static class OllamaEndpoint
{
    public const string Prefix = "/api";

    /// <summary>The Ollama version this API follows, as <c>/api/version</c> reports it (clients check it for features).</summary>
    public const string Version = "0.12.0";

    private static readonly HashSet<string> s_showFields = ["model", "name", "verbose"];
    private static readonly HashSet<string> s_embedFields = ["model", "input", "truncate", "options", "keep_alive", "dimensions"];
    private static readonly HashSet<string> s_embeddingsFields = ["model", "prompt", "options", "keep_alive"];

    /// <summary>The chat completions fields a raw generation's <see cref="OllamaRequest.RawGeneration"/> gives.</summary>
    private static readonly HashSet<string> s_rawFields = ["model", "stream", "max_tokens", "stop", "logprobs", "top_logprobs", .. ResponseFormat.Fields, .. SamplingFields.Names];

    /// <summary>Whether <paramref name="http"/> is a request to Ollama's API (whose errors take its shape).</summary>
    public static bool Handles(HttpContext http) => http.Request.Path.StartsWithSegments(Prefix, StringComparison.Ordinal);

    public static void Map(WebApplication app, ServerState server)
    {
        app.MapPost("/api/chat", http => ChatAsync(http, server, chat: true));
        app.MapPost("/api/generate", http => ChatAsync(http, server, chat: false));
        app.MapPost("/api/embed", http => EmbedAsync(http, server, legacy: false));
        app.MapPost("/api/embeddings", http => EmbedAsync(http, server, legacy: true));
        app.MapGet("/api/tags", http => ResponseJson.WriteAsync(http, 200, w => WriteModels(w, server, running: false)));
        app.MapGet("/api/ps", http => ResponseJson.WriteAsync(http, 200, w => WriteModels(w, server, running: true)));
        app.MapPost("/api/show", http => ShowAsync(http, server));
        app.MapGet("/api/version", http => ResponseJson.WriteAsync(http, 200, w =>
        {
            w.WriteStartObject();
            w.WriteString("version", Version);
            w.WriteEndObject();
        }));
        foreach (string path in new[] { "/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete", "/api/blobs/{digest}" })
        {
            app.MapMethods(path, ["POST", "DELETE", "HEAD"], _ => throw new ApiException(501,
                $"{path}: this server serves the one model it was started with and has no model store; start it with --model (qwensharp pull fetches a model from the Hugging Face Hub)",
                null, "not_supported", "not_supported_error"));
        }
    }

    private static async Task ChatAsync(HttpContext http, ServerState server, bool chat)
    {
        Jobs.RequireGenerator(server);
        using JsonDocument body = await RequestBody.ReadJsonAsync(http, server.Options.MaxBodyBytes).ConfigureAwait(false);
        string model = ModelOf(body.RootElement, server);
        if (OllamaRequest.OnlyLoads(body.RootElement, chat) is string reason)
        {
            await ResponseJson.WriteAsync(http, 200, w => OllamaWriter.WriteLoaded(w, model, chat, reason)).ConfigureAwait(false);
            return;
        }

        if (!chat && OllamaRequest.IsRaw(body.RootElement))
        {
            await RawAsync(http, server, body.RootElement, model).ConfigureAwait(false);
            return;
        }

        using JsonDocument request = chat ? OllamaRequest.ChatToChat(body.RootElement) : OllamaRequest.GenerateToChat(body.RootElement);
        await ChatCompletionsEndpoint.AnswerAsync(http, server, request.RootElement, (_, _, _) => new OllamaWriter(http, server.Tokenizer, model, chat)).ConfigureAwait(false);
    }

    /// <summary>The model as the request names it (answers echo it), else the served one's tag.</summary>
    private static string ModelOf(JsonElement body, ServerState server) =>
        body.ValueKind == JsonValueKind.Object && body.TryGetProperty("model", out JsonElement named) && named.ValueKind == JsonValueKind.String ? named.GetString()! : TagOf(server);

    /// <summary>
    /// <c>/api/generate</c> with <c>raw</c> (the prompt as the model reads it, a FIM prompt a client built included) or a
    /// <c>suffix</c> (the gap between the prompt and the suffix filled, in the model's fill-in-the-middle form, as code
    /// completion asks): answered in Ollama's generate shape, ended at the model's end-of-text and FIM tokens.
    /// </summary>
    private static async Task RawAsync(HttpContext http, ServerState server, JsonElement body, string model)
    {
        (JsonDocument document, string prompt, string? suffix) = OllamaRequest.RawGeneration(body);
        using JsonDocument fields = document;
        RequestFields request = RequestFields.Of(fields.RootElement, "", s_rawFields);
        request.String("model", 256);
        bool stream = request.Bool("stream") ?? true;
        IReadOnlyList<int> endTokens = [];
        int[] ids;
        int? maxTokens = request.Int("max_tokens", 1, int.MaxValue);
        if (suffix is null)
        {
            ids = server.Tokenizer.Encode(prompt);
        }
        else
        {
            FillInTheMiddle form = FillInTheMiddle.Of(server.Tokenizer) ?? throw new ApiException(400, QwenModel.FillInTheMiddleMissing, "suffix", "fill_in_the_middle_unsupported");
            ids = form.Encode(prompt, suffix, "", null, (FillInTheMiddle.LlamaServerBatch, server.Context, maxTokens ?? 0));
            endTokens = form.EndTokens;
        }

        using var deadline = new RequestDeadline(http.RequestAborted, server.Options.RequestTimeout);
        GenerationJob job = Jobs.Create(server, [ids], "prompt", 1, SamplingFields.Read(request, server.Model.Config.VocabSize), maxTokens,
            request.StringOrList("stop", 16, 4096), OllamaRequest.Logprobs(request), primeText: true, deadline.Token, constraint: ResponseFormat.Read(request, server)?.Constraint,
            endTokens: endTokens);
        Jobs.Submit(server, job);
        var writer = new OllamaWriter(http, server.Tokenizer, model, chat: false);
        if (!stream)
        {
            (ChoiceState[] choices, JobFinishedEvent usage) = await Jobs.CollectAsync(job, deadline).ConfigureAwait(false);
            await writer.WholeAsync([new ChatAnswer(choices[0].Text.ToString(), [], ChoiceState.FinishReason(choices[0].Reason ?? StopReason.Length), choices[0].Logprobs)], usage).ConfigureAwait(false);
            return;
        }

        await Jobs.StreamAsync(http, server, job, deadline, next => next switch
        {
            TokenEvent token => writer.ChunkAsync(0, token.Text, token.Logprobs, null, null),
            ChoiceFinishedEvent finished => writer.ChunkAsync(0, finished.Text, null, null, ChoiceState.FinishReason(finished.Reason)),
            JobFinishedEvent usage => writer.FinishedAsync(usage),
            _ => Task.CompletedTask,
        }, done: false, writer.FailedAsync).ConfigureAwait(false);
    }

    /// <summary><c>/api/embed</c> (<c>input</c>, a text or a list; <c>embeddings</c> back) and the older <c>/api/embeddings</c> (one <c>prompt</c>, one <c>embedding</c>).</summary>
    private static async Task EmbedAsync(HttpContext http, ServerState server, bool legacy)
    {
        using JsonDocument body = await RequestBody.ReadJsonAsync(http, server.Options.MaxBodyBytes).ConfigureAwait(false);
        RequestFields request = OllamaRequest.Fields(body.RootElement, legacy ? s_embeddingsFields : s_embedFields);
        request.Get("options");
        request.Get("keep_alive");
        using JsonDocument openAi = ChatMessageDraft.Request(w =>
        {
            if (legacy)
            {
                w.WriteString("input", request.Required("prompt"));
            }
            else
            {
                ChatMessageDraft.CopyAll(request, w, "input", "dimensions", "truncate");
            }

            OllamaRequest.WriteModel(request, w);
        });
        long started = System.Diagnostics.Stopwatch.GetTimestamp();
        (float[][] vectors, long tokens, _, _) = await EmbeddingsEndpoint.EmbedAsync(http, server, openAi.RootElement).ConfigureAwait(false);
        await ResponseJson.WriteAsync(http, 200, w =>
        {
            w.WriteStartObject();
            if (legacy)
            {
                w.WritePropertyName("embedding");
                ResponseJson.WriteNumbers(w, vectors[0]);
                w.WriteEndObject();
                return;
            }

            w.WriteString("model", request.String("model") ?? TagOf(server));
            w.WriteStartArray("embeddings");
            foreach (float[] vector in vectors)
            {
                ResponseJson.WriteNumbers(w, vector);
            }

            w.WriteEndArray();
            w.WriteNumber("total_duration", OllamaWriter.Nanoseconds(started, System.Diagnostics.Stopwatch.GetTimestamp()));
            w.WriteNumber("load_duration", 0);
            w.WriteNumber("prompt_eval_count", tokens);
            w.WriteEndObject();
        }).ConfigureAwait(false);
    }

    private static async Task ShowAsync(HttpContext http, ServerState server)
    {
        using JsonDocument body = await RequestBody.ReadJsonAsync(http, server.Options.MaxBodyBytes).ConfigureAwait(false);
        RequestFields request = OllamaRequest.Fields(body.RootElement, s_showFields);
        request.Bool("verbose");
        string name = request.String("model", 256) ?? request.String("name", 256) ?? throw ApiException.BadField("model", "'model' is required: the model to show");
        CheckName(server, name, request.Get("model") is null ? "name" : "model");
        Qwen2Model model = server.Model;
        Qwen2Config config = model.Config;
        await ResponseJson.WriteAsync(http, 200, w =>
        {
            w.WriteStartObject();
            w.WriteString("license", "");
            w.WriteString("modelfile", $"# Modelfile of the model qwensharp serves\nFROM {server.ModelName}\n");
            w.WriteString("parameters", "");
            w.WriteString("template", server.Tokenizer.ChatTemplateText ?? "");
            WriteDetails(w, server);
            w.WriteStartObject("model_info");
            w.WriteString("general.architecture", "qwen2");
            w.WriteNumber("general.parameter_count", Parameters(model));
            w.WriteNumber("qwen2.context_length", server.Context);
            w.WriteNumber("qwen2.embedding_length", config.HiddenSize);
            w.WriteNumber("qwen2.feed_forward_length", config.IntermediateSize);
            w.WriteNumber("qwen2.block_count", config.NumHiddenLayers);
            w.WriteNumber("qwen2.attention.head_count", config.NumAttentionHeads);
            w.WriteNumber("qwen2.attention.head_count_kv", config.NumKeyValueHeads);
            w.WriteNumber("qwen2.attention.layer_norm_rms_epsilon", config.RmsNormEps);
            w.WriteNumber("qwen2.rope.freq_base", config.RopeTheta);
            w.WriteNumber("qwen2.vocab_size", config.VocabSize);
            w.WriteEndObject();
            w.WriteStartArray("capabilities");
            foreach (string capability in Capabilities(server))
            {
                w.WriteStringValue(capability);
            }

            w.WriteEndArray();
            w.WriteString("modified_at", OllamaWriter.Timestamp(server.Started.UtcDateTime));
            w.WriteEndObject();
        }).ConfigureAwait(false);
    }

    /// <summary>What the model does, in Ollama's words: completion, tools (its template offers them), vision, embedding.</summary>
    private static IEnumerable<string> Capabilities(ServerState server)
    {
        if (!server.Model.Config.IsSequenceClassifier && !server.Model.IsEmbeddingModel)
        {
            yield return "completion";
        }

        if (server.Tokenizer.ChatTemplateText?.Contains("tools", StringComparison.Ordinal) == true)
        {
            yield return "tools";
        }

        if (server.Model.Vision is not null)
        {
            yield return "vision";
        }

        if (server.Model.IsEmbeddingModel)
        {
            yield return "embedding";
        }
    }

    /// <summary>The one model, as <c>/api/tags</c> (and, loaded and running, <c>/api/ps</c>) list it.</summary>
    private static void WriteModels(Utf8JsonWriter w, ServerState server, bool running)
    {
        string tag = TagOf(server);
        w.WriteStartObject();
        w.WriteStartArray("models");
        w.WriteStartObject();
        w.WriteString("name", tag);
        w.WriteString("model", tag);
        w.WriteString(running ? "expires_at" : "modified_at", OllamaWriter.Timestamp(running ? DateTime.UtcNow.AddYears(100) : server.Started.UtcDateTime));
        long size = server.Model.Weights.DistinctTensors().Sum(t => t.ByteLength);
        w.WriteNumber("size", size);
        w.WriteString("digest", Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes($"{server.ModelName}\n{size}"))));
        WriteDetails(w, server);
        if (running)
        {
            // A GPU backend knows its memory (the CPU's does not): there the weights are in device memory.
            w.WriteNumber("size_vram", server.Model.Backend.AvailableMemory is not null || server.Model.OffloadBackend is not null ? size : 0);
        }

        w.WriteEndObject();
        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static void WriteDetails(Utf8JsonWriter w, ServerState server)
    {
        w.WriteStartObject("details");
        w.WriteString("parent_model", "");
        w.WriteString("format", server.Model.FileParts is null && server.Model.FileTensorTypes is null ? "safetensors" : "gguf");
        w.WriteString("family", "qwen2");
        w.WriteStartArray("families");
        w.WriteStringValue("qwen2");
        w.WriteEndArray();
        w.WriteString("parameter_size", ParameterSize(Parameters(server.Model)));
        w.WriteString("quantization_level", QuantizationLevel(server.Model));
        w.WriteEndObject();
    }

    private static long Parameters(Qwen2Model model) => model.Weights.DistinctTensors().Sum(t => t.ElementCount);

    /// <summary>A parameter count as Ollama writes it: 494.03M, 7.6B.</summary>
    internal static string ParameterSize(long parameters) => parameters >= 1_000_000_000
        ? (parameters / 1e9).ToString("0.##", CultureInfo.InvariantCulture) + "B"
        : (parameters / 1e6).ToString("0.##", CultureInfo.InvariantCulture) + "M";

    /// <summary>The type most of the weights' bytes are held in (Q4_K, Q8_0, BF16, ...).</summary>
    private static string QuantizationLevel(Qwen2Model model) => model.Weights.DistinctTensors()
        .GroupBy(t => t.DType).OrderByDescending(g => g.Sum(t => t.ByteLength)).Select(g => DTypes.Name(g.Key).ToUpperInvariant()).FirstOrDefault() ?? "";

    /// <summary>The model's name as Ollama's clients list and send it.</summary>
    private static string TagOf(ServerState server) => server.ModelName.Contains(':', StringComparison.Ordinal) ? server.ModelName : server.ModelName + ":latest";

    /// <summary>A named model that is not this one, as Ollama answers it: 404, naming it.</summary>
    private static void CheckName(ServerState server, string name, string field)
    {
        if (name != server.ModelName && name != TagOf(server))
        {
            throw new ApiException(404, $"model '{name}' not found (this server serves {TagOf(server)})", field, "model_not_found", "not_found_error");
        }
    }
}
