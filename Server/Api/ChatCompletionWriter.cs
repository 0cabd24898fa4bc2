using System.Text.Json;
using Microsoft.AspNetCore.Http;
using QwenSharp.Generation;
using QwenSharp.Server.Scheduling;

namespace QwenSharp.Server.Api;

/// <summary>OpenAI's chat completion shapes: <c>chat.completion</c> whole, <c>chat.completion.chunk</c> events streamed.</summary>
internal sealed class ChatCompletionWriter(HttpContext http, ServerState server, GenerationJob job, string model, bool includeUsage) : IChatAnswerWriter
{
    private readonly string _id = "chatcmpl-" + Guid.NewGuid().ToString("N");
    private readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    public bool EndsWithDone => true;

    public Task WholeAsync(IReadOnlyList<ChatAnswer> answers, JobFinishedEvent usage) => ResponseJson.WriteAsync(http, 200, w =>
    {
        w.WriteStartObject();
        WriteHeader(w, "chat.completion");
        w.WriteStartArray("choices");
        for (int i = 0; i < answers.Count; i++)
        {
            ChatAnswer answer = answers[i];
            w.WriteStartObject();
            w.WriteNumber("index", i);
            w.WriteStartObject("message");
            w.WriteString("role", "assistant");
            ResponseJson.WriteStringOrNull(w, "content", answer.Content);
            if (answer.Calls.Count > 0)
            {
                WriteToolCalls(w, answer.Calls);
            }

            w.WriteEndObject();
            WriteLogprobs(w, answer.Logprobs);
            w.WriteString("finish_reason", answer.FinishReason);
            w.WriteEndObject();
        }

        w.WriteEndArray();
        ResponseJson.WriteUsage(w, usage);
        w.WriteEndObject();
    });

    public Task OpenAsync(int index) => WriteChunkAsync(index, "", null, null, null, opening: true);

    public Task ChunkAsync(int index, string content, TokenLogprobs? logprobs, List<ToolCallDelta>? calls, string? finishReason, string? stopWord = null) =>
        WriteChunkAsync(index, content, logprobs, calls, finishReason, opening: false);

    public Task FinishedAsync(JobFinishedEvent usage) =>
        includeUsage ? ResponseJson.WriteUsageEventAsync(http, w => WriteHeader(w, "chat.completion.chunk"), usage) : Task.CompletedTask;

    public Task FailedAsync(ApiException error) => ResponseJson.WriteEventAsync(http, w => ResponseJson.WriteError(w, error));

    private Task WriteChunkAsync(int index, string content, TokenLogprobs? logprobs, List<ToolCallDelta>? calls, string? finishReason, bool opening) =>
        ResponseJson.WriteEventAsync(http, w =>
        {
            w.WriteStartObject();
            WriteHeader(w, "chat.completion.chunk");
            w.WriteStartArray("choices");
            w.WriteStartObject();
            w.WriteNumber("index", index);
            w.WriteStartObject("delta");
            if (opening)
            {
                w.WriteString("role", "assistant");
            }

            if (content.Length > 0 || calls is null)
            {
                w.WriteString("content", content);
            }

            if (calls is { Count: > 0 })
            {
                WriteToolCallDeltas(w, calls);
            }

            w.WriteEndObject();
            if (opening)
            {
                w.WriteNull("logprobs");
            }
            else
            {
                WriteLogprobs(w, logprobs is null ? [] : [logprobs]);
            }

            ResponseJson.WriteStringOrNull(w, "finish_reason", finishReason);
            w.WriteEndObject();
            w.WriteEndArray();
            w.WriteEndObject();
        });

    private void WriteHeader(Utf8JsonWriter w, string type)
    {
        w.WriteString("id", _id);
        w.WriteString("object", type);
        w.WriteNumber("created", _created);
        w.WriteString("model", model);
        w.WriteString("system_fingerprint", QwenServer.Fingerprint);
    }

    private void WriteLogprobs(Utf8JsonWriter w, List<TokenLogprobs> logprobs)
    {
        if (job.Logprobs is null)
        {
            w.WriteNull("logprobs");
            return;
        }

        w.WriteStartObject("logprobs");
        TokenPiece.WriteLogprobs(w, "content", logprobs, server.Tokenizer, ids: false);
        w.WriteEndObject();
    }

    private void WriteToolCalls(Utf8JsonWriter w, List<ToolCallBlock> calls)
    {
        w.WriteStartArray("tool_calls");
        for (int c = 0; c < calls.Count; c++)
        {
            w.WriteStartObject();
            WriteCallHead(w, c);
            w.WriteStartObject("function");
            w.WriteString("name", calls[c].Name);
            w.WriteString("arguments", calls[c].ArgumentsJson);
            w.WriteEndObject();
            w.WriteEndObject();
        }

        w.WriteEndArray();
    }

    /// <summary>A chunk's tool_calls, as OpenAI streams them: a call's first entry with its id, type and name, later ones only their index and the arguments' next text.</summary>
    private void WriteToolCallDeltas(Utf8JsonWriter w, List<ToolCallDelta> deltas)
    {
        w.WriteStartArray("tool_calls");
        foreach (ToolCallDelta delta in deltas)
        {
            w.WriteStartObject();
            w.WriteNumber("index", delta.Index);
            if (delta.Name is not null)
            {
                WriteCallHead(w, delta.Index);
            }

            w.WriteStartObject("function");
            if (delta.Name is not null)
            {
                w.WriteString("name", delta.Name);
            }

            w.WriteString("arguments", delta.Arguments);
            w.WriteEndObject();
            w.WriteEndObject();
        }

        w.WriteEndArray();
    }

    private void WriteCallHead(Utf8JsonWriter w, int index)
    {
        w.WriteString("id", $"call_{_id[9..21]}{index}");
        w.WriteString("type", "function");
    }
}
