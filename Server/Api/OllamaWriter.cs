using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using QwenSharp.Generation;
using QwenSharp.Server.Scheduling;
using QwenSharp.Tokenization;

namespace QwenSharp.Server.Api;

/// <summary>
/// Ollama's answer shapes for <c>/api/chat</c> (a <c>message</c>) and <c>/api/generate</c> (a <c>response</c>): whole, or
/// streamed as one JSON object a line (<c>application/x-ndjson</c>) with <c>"done": false</c> until the last, which says
/// <c>done_reason</c> (stop, length) and the counts and times (nanoseconds) Ollama gives: <c>total_duration</c>,
/// <c>load_duration</c> (0: the model is loaded), <c>prompt_eval_count</c>/<c>_duration</c> (to the first token) and
/// <c>eval_count</c>/<c>_duration</c> (after it). Tool calls go out whole, their arguments an object, in the message
/// before the last line, as Ollama sends them. Asked for (<c>logprobs</c>), each object lists its tokens' log-probs in
/// <c>logprobs</c> (<c>token</c>, <c>logprob</c>, <c>bytes</c>, <c>top_logprobs</c>), as Ollama's do.
/// </summary>
internal sealed class OllamaWriter(HttpContext http, Tokenizer tokenizer, string model, bool chat) : IChatAnswerWriter
{
    private static readonly byte[] s_newline = "\n"u8.ToArray();
    private readonly long _started = Stopwatch.GetTimestamp();
    private long _firstToken;
    private string _doneReason = "stop";
    private readonly SortedDictionary<int, (string Name, StringBuilder Arguments)> _calls = [];

    public bool EndsWithDone => false;

    /// <summary>Ollama's error object, <c>{"error": "..."}</c>.</summary>
    public static void WriteError(Utf8JsonWriter w, ApiException error)
    {
        w.WriteStartObject();
        w.WriteString("error", error.Message);
        w.WriteEndObject();
    }

    /// <summary>Ollama's answer to a request that only loads (or unloads) the model: done at once, nothing generated.</summary>
    public static void WriteLoaded(Utf8JsonWriter w, string model, bool chat, string reason)
    {
        w.WriteStartObject();
        w.WriteString("model", model);
        w.WriteString("created_at", Now());
        if (chat)
        {
            w.WriteStartObject("message");
            w.WriteString("role", "assistant");
            w.WriteString("content", "");
            w.WriteEndObject();
        }
        else
        {
            w.WriteString("response", "");
        }

        w.WriteString("done_reason", reason);
        w.WriteBoolean("done", true);
        w.WriteEndObject();
    }

    /// <summary>An Ollama timestamp: RFC 3339, UTC, to the tick.</summary>
    public static string Timestamp(DateTime utc) => utc.ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'", CultureInfo.InvariantCulture);

    public static string Now() => Timestamp(DateTime.UtcNow);

    public Task WholeAsync(IReadOnlyList<ChatAnswer> answers, JobFinishedEvent usage)
    {
        ChatAnswer answer = answers[0];
        _firstToken = _firstToken == 0 ? Stopwatch.GetTimestamp() : _firstToken;
        return ResponseJson.WriteAsync(http, 200, w =>
        {
            w.WriteStartObject();
            WriteHead(w);
            WriteText(w, answer.Content ?? "", [.. answer.Calls.Select(c => (c.Name, c.ArgumentsJson))]);
            WriteLogprobs(w, answer.Logprobs);
            WriteDone(w, DoneReason(answer.FinishReason), usage);
            w.WriteEndObject();
        });
    }

    public Task OpenAsync(int index) => Task.CompletedTask;

    public async Task ChunkAsync(int index, string content, TokenLogprobs? logprobs, List<ToolCallDelta>? calls, string? finishReason, string? stopWord = null)
    {
        if (_firstToken == 0)
        {
            _firstToken = Stopwatch.GetTimestamp();
        }

        foreach (ToolCallDelta delta in calls ?? [])
        {
            if (!_calls.TryGetValue(delta.Index, out (string Name, StringBuilder Arguments) call))
            {
                call = (delta.Name ?? "", new StringBuilder());
                _calls[delta.Index] = call;
            }

            call.Arguments.Append(delta.Arguments);
        }

        if (content.Length > 0 || logprobs is not null)
        {
            await LineAsync(w =>
            {
                w.WriteStartObject();
                WriteHead(w);
                WriteText(w, content, []);
                WriteLogprobs(w, logprobs is null ? [] : [logprobs]);
                w.WriteBoolean("done", false);
                w.WriteEndObject();
            }).ConfigureAwait(false);
        }

        if (finishReason is null)
        {
            return;
        }

        _doneReason = DoneReason(finishReason);
        if (_calls.Count > 0)
        {
            await LineAsync(w =>
            {
                w.WriteStartObject();
                WriteHead(w);
                WriteText(w, "", [.. _calls.Values.Select(c => (c.Name, c.Arguments.ToString()))]);
                w.WriteBoolean("done", false);
                w.WriteEndObject();
            }).ConfigureAwait(false);
        }
    }

    public Task FinishedAsync(JobFinishedEvent usage) => LineAsync(w =>
    {
        w.WriteStartObject();
        WriteHead(w);
        WriteText(w, "", []);
        WriteDone(w, _doneReason, usage);
        w.WriteEndObject();
    });

    public Task FailedAsync(ApiException error) => LineAsync(w => WriteError(w, error));

    /// <summary>The tokens' log-probs, where there are any (only where the request asked).</summary>
    private void WriteLogprobs(Utf8JsonWriter w, IReadOnlyCollection<TokenLogprobs> logprobs)
    {
        if (logprobs.Count > 0)
        {
            TokenPiece.WriteLogprobs(w, "logprobs", logprobs, tokenizer, ids: false);
        }
    }

    /// <summary>Ollama's done_reason: a call or a stop string is a stop, as Ollama says.</summary>
    private static string DoneReason(string finishReason) => finishReason == "length" ? "length" : "stop";

    private void WriteHead(Utf8JsonWriter w)
    {
        w.WriteString("model", model);
        w.WriteString("created_at", Now());
    }

    /// <summary>The answer's text (and calls): a chat's <c>message</c>, a generation's <c>response</c>.</summary>
    private void WriteText(Utf8JsonWriter w, string content, IReadOnlyList<(string Name, string Arguments)> calls)
    {
        if (!chat)
        {
            w.WriteString("response", content);
            return;
        }

        w.WriteStartObject("message");
        w.WriteString("role", "assistant");
        w.WriteString("content", content);
        if (calls.Count > 0)
        {
            w.WriteStartArray("tool_calls");
            for (int i = 0; i < calls.Count; i++)
            {
                w.WriteStartObject();
                w.WriteStartObject("function");
                w.WriteNumber("index", i);
                w.WriteString("name", calls[i].Name);
                w.WritePropertyName("arguments");
                CallArguments.WriteObject(w, calls[i].Arguments);
                w.WriteEndObject();
                w.WriteEndObject();
            }

            w.WriteEndArray();
        }

        w.WriteEndObject();
    }

    private void WriteDone(Utf8JsonWriter w, string reason, JobFinishedEvent usage)
    {
        long now = Stopwatch.GetTimestamp(), first = _firstToken == 0 ? now : _firstToken;
        w.WriteBoolean("done", true);
        w.WriteString("done_reason", reason);
        w.WriteNumber("total_duration", Nanoseconds(_started, now));
        w.WriteNumber("load_duration", 0);
        w.WriteNumber("prompt_eval_count", usage.PromptTokens);
        w.WriteNumber("prompt_eval_duration", Nanoseconds(_started, first));
        w.WriteNumber("eval_count", usage.CompletionTokens);
        w.WriteNumber("eval_duration", Nanoseconds(first, now));
    }

    /// <summary>Nanoseconds between two <see cref="Stopwatch"/> timestamps, as Ollama gives its durations.</summary>
    public static long Nanoseconds(long from, long to) => (long)(Stopwatch.GetElapsedTime(from, to).TotalMilliseconds * 1e6);

    private async Task LineAsync(Action<Utf8JsonWriter> write)
    {
        if (!http.Response.HasStarted)
        {
            http.Response.ContentType = "application/x-ndjson";
        }

        http.Response.BodyWriter.Write(ResponseJson.Serialize(write));
        http.Response.BodyWriter.Write(s_newline);
        await http.Response.BodyWriter.FlushAsync(http.RequestAborted).ConfigureAwait(false);
    }
}
