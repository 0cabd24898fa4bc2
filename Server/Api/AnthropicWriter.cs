using System.Text.Json;
using Microsoft.AspNetCore.Http;
using QwenSharp.Generation;
using QwenSharp.Server.Scheduling;

namespace QwenSharp.Server.Api;

/// <summary>
/// Anthropic's Messages API shapes: a <c>message</c> whole, its <c>content</c> a <c>text</c> block and a
/// <c>tool_use</c> block per call (the arguments as the <c>input</c> object), its <c>stop_reason</c> end_turn,
/// max_tokens, stop_sequence (with the <c>stop_sequence</c>) or tool_use; or its events streamed
/// (<c>message_start</c>, <c>content_block_start</c>/<c>_delta</c>/<c>_stop</c> with text_delta and input_json_delta,
/// <c>message_delta</c>, <c>message_stop</c>).
/// </summary>
internal sealed class AnthropicWriter(HttpContext http, GenerationJob job, string model) : IChatAnswerWriter
{
    private readonly string _id = "msg_" + Guid.NewGuid().ToString("N");
    private readonly Dictionary<int, int> _callBlocks = [];
    private int _blocks;
    private int? _openText;
    private readonly List<int> _open = [];
    private string _stopReason = "end_turn";
    private string? _stopSequence;

    public bool EndsWithDone => false;

    /// <summary>The API's error object: <c>{"type": "error", "error": {"type", "message"}}</c>, its type from the status.</summary>
    public static void WriteError(Utf8JsonWriter w, ApiException error)
    {
        w.WriteStartObject();
        w.WriteString("type", "error");
        w.WriteStartObject("error");
        w.WriteString("type", error.Status switch
        {
            400 or 413 or 422 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            503 => "overloaded_error",
            _ => "api_error",
        });
        w.WriteString("message", error.Message);
        w.WriteEndObject();
        w.WriteEndObject();
    }

    public Task WholeAsync(IReadOnlyList<ChatAnswer> answers, JobFinishedEvent usage)
    {
        ChatAnswer answer = answers[0];
        (_stopReason, _stopSequence) = StopOf(answer.FinishReason, answer.StopWord);
        return ResponseJson.WriteAsync(http, 200, w =>
        {
            w.WriteStartObject();
            WriteMessageHead(w);
            w.WriteStartArray("content");
            if (answer.Content is { } text && (text.Length > 0 || answer.Calls.Count == 0))
            {
                w.WriteStartObject();
                w.WriteString("type", "text");
                w.WriteString("text", text);
                w.WriteEndObject();
            }

            for (int c = 0; c < answer.Calls.Count; c++)
            {
                w.WriteStartObject();
                WriteToolUseHead(w, c, answer.Calls[c].Name);
                w.WritePropertyName("input");
                CallArguments.WriteObject(w, answer.Calls[c].ArgumentsJson);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteString("stop_reason", _stopReason);
            ResponseJson.WriteStringOrNull(w, "stop_sequence", _stopSequence);
            WriteUsage(w, usage.PromptTokens, usage.CompletionTokens);
            w.WriteEndObject();
        });
    }

    public Task OpenAsync(int index) => EventAsync("message_start", w =>
    {
        w.WriteStartObject("message");
        WriteMessageHead(w);
        w.WriteStartArray("content");
        w.WriteEndArray();
        w.WriteNull("stop_reason");
        w.WriteNull("stop_sequence");
        WriteUsage(w, job.Prompts[0].Length, 0);
        w.WriteEndObject();
    });

    public async Task ChunkAsync(int index, string content, TokenLogprobs? logprobs, List<ToolCallDelta>? calls, string? finishReason, string? stopWord = null)
    {
        if (content.Length > 0)
        {
            if (_openText is not int text)
            {
                text = await StartBlockAsync(w =>
                {
                    w.WriteString("type", "text");
                    w.WriteString("text", "");
                }).ConfigureAwait(false);
                _openText = text;
            }

            await DeltaAsync(text, "text_delta", "text", content).ConfigureAwait(false);
        }

        foreach (ToolCallDelta delta in calls ?? [])
        {
            if (delta.Name is not null)
            {
                await StopBlockAsync(_openText).ConfigureAwait(false);
                _openText = null;
                _callBlocks[delta.Index] = await StartBlockAsync(w =>
                {
                    WriteToolUseHead(w, delta.Index, delta.Name);
                    w.WriteStartObject("input");
                    w.WriteEndObject();
                }).ConfigureAwait(false);
            }

            if (delta.Arguments.Length > 0)
            {
                await DeltaAsync(_callBlocks[delta.Index], "input_json_delta", "partial_json", delta.Arguments).ConfigureAwait(false);
            }
        }

        if (finishReason is not null)
        {
            foreach (int block in _open.ToArray())
            {
                await StopBlockAsync(block).ConfigureAwait(false);
            }

            (_stopReason, _stopSequence) = StopOf(finishReason, stopWord);
        }
    }

    public async Task FinishedAsync(JobFinishedEvent usage)
    {
        await EventAsync("message_delta", w =>
        {
            w.WriteStartObject("delta");
            w.WriteString("stop_reason", _stopReason);
            ResponseJson.WriteStringOrNull(w, "stop_sequence", _stopSequence);
            w.WriteEndObject();
            w.WriteStartObject("usage");
            w.WriteNumber("output_tokens", usage.CompletionTokens);
            w.WriteEndObject();
        }).ConfigureAwait(false);
        await EventAsync("message_stop", _ => { }).ConfigureAwait(false);
    }

    public Task FailedAsync(ApiException error) => ResponseJson.WriteEventAsync(http, "error", w => WriteError(w, error));

    /// <summary>Anthropic's stop_reason (and stop_sequence) for a chat finish_reason.</summary>
    private static (string Reason, string? Sequence) StopOf(string finishReason, string? stopWord) => finishReason switch
    {
        "tool_calls" => ("tool_use", null),
        "length" => ("max_tokens", null),
        _ => stopWord is null ? ("end_turn", null) : ("stop_sequence", stopWord),
    };

    private void WriteMessageHead(Utf8JsonWriter w)
    {
        w.WriteString("id", _id);
        w.WriteString("type", "message");
        w.WriteString("role", "assistant");
        w.WriteString("model", model);
    }

    private void WriteToolUseHead(Utf8JsonWriter w, int index, string name)
    {
        w.WriteString("type", "tool_use");
        w.WriteString("id", $"toolu_{_id[4..20]}{index}");
        w.WriteString("name", name);
    }

    private static void WriteUsage(Utf8JsonWriter w, int input, int output)
    {
        w.WriteStartObject("usage");
        w.WriteNumber("input_tokens", input);
        w.WriteNumber("output_tokens", output);
        w.WriteEndObject();
    }

    private async Task<int> StartBlockAsync(Action<Utf8JsonWriter> block)
    {
        int index = _blocks++;
        _open.Add(index);
        await EventAsync("content_block_start", w =>
        {
            w.WriteNumber("index", index);
            w.WriteStartObject("content_block");
            block(w);
            w.WriteEndObject();
        }).ConfigureAwait(false);
        return index;
    }

    private Task DeltaAsync(int index, string type, string field, string value) => EventAsync("content_block_delta", w =>
    {
        w.WriteNumber("index", index);
        w.WriteStartObject("delta");
        w.WriteString("type", type);
        w.WriteString(field, value);
        w.WriteEndObject();
    });

    private async Task StopBlockAsync(int? index)
    {
        if (index is not int block || !_open.Remove(block))
        {
            return;
        }

        await EventAsync("content_block_stop", w => w.WriteNumber("index", block)).ConfigureAwait(false);
    }

    private Task EventAsync(string type, Action<Utf8JsonWriter> fields) => ResponseJson.WriteEventAsync(http, type, w =>
    {
        w.WriteStartObject();
        w.WriteString("type", type);
        fields(w);
        w.WriteEndObject();
    });
}
