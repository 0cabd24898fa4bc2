using System.Buffers;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using QwenSharp.Server.Scheduling;

namespace QwenSharp.Server.Api;

/// <summary>
/// Responses written with a <see cref="Utf8JsonWriter"/>: no reflection (Native AOT); each answer or stream chunk is
/// built whole, then goes out at once.
/// </summary>
internal static class ResponseJson
{
    private static readonly byte[] s_dataPrefix = "data: "u8.ToArray();
    private static readonly byte[] s_eventEnd = "\n\n"u8.ToArray();
    private static readonly byte[] s_done = "data: [DONE]\n\n"u8.ToArray();

    /// <summary>Text as text: only what JSON requires is escaped (quotes, control characters), not '&lt;' or non-ASCII.</summary>
    private static readonly JsonWriterOptions s_options = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static Task WriteAsync(HttpContext http, int status, Action<Utf8JsonWriter> write) => WriteAsync(http, status, Build(write).WrittenMemory);

    /// <summary>A JSON body already made (<see cref="Serialize"/>).</summary>
    public static async Task WriteAsync(HttpContext http, int status, ReadOnlyMemory<byte> json)
    {
        http.Response.StatusCode = status;
        http.Response.ContentType = "application/json";
        http.Response.BodyWriter.Write(json.Span);
        await http.Response.BodyWriter.FlushAsync(http.RequestAborted).ConfigureAwait(false);
    }

    /// <summary>The JSON <paramref name="write"/> makes, with the escaping every answer has.</summary>
    public static byte[] Serialize(Action<Utf8JsonWriter> write) => Build(write).WrittenSpan.ToArray();

    /// <summary>
    /// The JSON <paramref name="write"/> makes, whole, before any of it goes to the body: a writer that throws part-way
    /// then leaves the response untouched for the error answer (written to the body as it went, half an object went out
    /// with the error object after it, and the client could parse neither).
    /// </summary>
    private static ArrayBufferWriter<byte> Build(Action<Utf8JsonWriter> write)
    {
        var body = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(body, s_options))
        {
            write(writer);
        }

        return body;
    }

    /// <summary>OpenAI's error object (Anthropic's on the Messages API's paths, Ollama's on its /api paths).</summary>
    public static Task WriteErrorAsync(HttpContext http, ApiException error)
    {
        if (error.Status == 429)
        {
            http.Response.Headers.RetryAfter = "1";
        }

        return WriteAsync(http, error.Status, w =>
        {
            if (AnthropicEndpoint.Handles(http))
            {
                AnthropicWriter.WriteError(w, error);
            }
            else if (OllamaEndpoint.Handles(http))
            {
                OllamaWriter.WriteError(w, error);
            }
            else
            {
                WriteError(w, error);
            }
        });
    }

    public static void WriteError(Utf8JsonWriter writer, ApiException error)
    {
        writer.WriteStartObject();
        writer.WriteStartObject("error");
        writer.WriteString("message", error.Message);
        writer.WriteString("type", error.Type);
        WriteStringOrNull(writer, "param", error.Param);
        WriteStringOrNull(writer, "code", error.Code);
        writer.WriteEndObject();
        writer.WriteEndObject();
    }

    public static void StartEventStream(HttpContext http)
    {
        http.Response.StatusCode = 200;
        http.Response.ContentType = "text/event-stream";
        http.Response.Headers.CacheControl = "no-cache";
        // Proxies such as nginx would otherwise hold the chunks back.
        http.Response.Headers["X-Accel-Buffering"] = "no";
    }

    /// <summary>One server-sent event, <c>data: {json}</c>, flushed to the client.</summary>
    public static Task WriteEventAsync(HttpContext http, Action<Utf8JsonWriter> write) => WriteEventAsync(http, null, write);

    /// <summary>One server-sent event of a type, <c>event: NAME</c> then <c>data: {json}</c> (the Responses API's), flushed to the client.</summary>
    public static async Task WriteEventAsync(HttpContext http, string? name, Action<Utf8JsonWriter> write)
    {
        ArrayBufferWriter<byte> data = Build(write);
        if (name is not null)
        {
            http.Response.BodyWriter.Write(Encoding.UTF8.GetBytes($"event: {name}\n"));
        }

        http.Response.BodyWriter.Write(s_dataPrefix);
        http.Response.BodyWriter.Write(data.WrittenSpan);
        http.Response.BodyWriter.Write(s_eventEnd);
        await http.Response.BodyWriter.FlushAsync(http.RequestAborted).ConfigureAwait(false);
    }

    public static async Task WriteDoneAsync(HttpContext http)
    {
        http.Response.BodyWriter.Write(s_done);
        await http.Response.BodyWriter.FlushAsync(http.RequestAborted).ConfigureAwait(false);
    }

    public static async Task WriteTextAsync(HttpContext http, string contentType, string text)
    {
        http.Response.StatusCode = 200;
        http.Response.ContentType = contentType;
        http.Response.BodyWriter.Write(Encoding.UTF8.GetBytes(text));
        await http.Response.BodyWriter.FlushAsync(http.RequestAborted).ConfigureAwait(false);
    }

    /// <summary>The <c>usage</c> of a request that only reads (embeddings, rerank): its prompt tokens, all of its tokens.</summary>
    public static void WritePromptUsage(Utf8JsonWriter w, long promptTokens)
    {
        w.WriteStartObject("usage");
        w.WriteNumber("prompt_tokens", promptTokens);
        w.WriteNumber("total_tokens", promptTokens);
        w.WriteEndObject();
    }

    public static void WriteUsage(Utf8JsonWriter w, JobFinishedEvent usage)
    {
        w.WriteStartObject("usage");
        w.WriteNumber("prompt_tokens", usage.PromptTokens);
        w.WriteNumber("completion_tokens", usage.CompletionTokens);
        w.WriteNumber("total_tokens", usage.PromptTokens + usage.CompletionTokens);
        w.WriteStartObject("prompt_tokens_details");
        w.WriteNumber("cached_tokens", usage.CachedPromptTokens);
        w.WriteEndObject();
        if (usage.Prediction is (int accepted, int rejected))
        {
            w.WriteStartObject("completion_tokens_details");
            w.WriteNumber("accepted_prediction_tokens", accepted);
            w.WriteNumber("rejected_prediction_tokens", rejected);
            w.WriteEndObject();
        }

        w.WriteEndObject();
    }

    /// <summary><c>stream_options.include_usage</c>'s last chunk: the endpoint's header fields, no choices, the usage.</summary>
    public static Task WriteUsageEventAsync(HttpContext http, Action<Utf8JsonWriter> header, JobFinishedEvent usage) => WriteEventAsync(http, w =>
    {
        w.WriteStartObject();
        header(w);
        w.WriteStartArray("choices");
        w.WriteEndArray();
        WriteUsage(w, usage);
        w.WriteEndObject();
    });

    /// <summary>Floats as a JSON array of numbers (a vector, a row of scores).</summary>
    public static void WriteNumbers(Utf8JsonWriter writer, ReadOnlySpan<float> values)
    {
        writer.WriteStartArray();
        foreach (float v in values)
        {
            writer.WriteNumberValue(v);
        }

        writer.WriteEndArray();
    }

    public static void WriteStringOrNull(Utf8JsonWriter writer, string name, string? value)
    {
        if (value is null)
        {
            writer.WriteNull(name);
        }
        else
        {
            writer.WriteString(name, value);
        }
    }
}
