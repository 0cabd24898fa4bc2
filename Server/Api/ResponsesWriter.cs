using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using QwenSharp.Generation;
using QwenSharp.Server.Scheduling;

namespace QwenSharp.Server.Api;

/// <summary>
/// OpenAI's Responses API shapes: a <c>response</c> object whole, whose <c>output</c> holds the answer's message (its
/// <c>output_text</c>) and a <c>function_call</c> item per tool call; or its typed events streamed
/// (<c>response.created</c>, <c>response.output_item.added</c>, <c>response.output_text.delta</c>,
/// <c>response.function_call_arguments.delta</c>, ... <c>response.completed</c>, or <c>response.incomplete</c> when the
/// token limit cut the answer). Text after a call goes into a message item of its own after it.
/// </summary>
internal sealed class ResponsesWriter(HttpContext http, ServerState server, GenerationJob job, string model, ResponsesRequest request) : IChatAnswerWriter
{
    private readonly string _id = "resp_" + Guid.NewGuid().ToString("N");
    private readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    private readonly List<OutputItem> _items = [];
    private readonly Dictionary<int, OutputItem> _calls = [];
    private OutputItem? _message;
    private string? _finishReason;
    private int _sequence;

    public bool EndsWithDone => false;

    public Task WholeAsync(IReadOnlyList<ChatAnswer> answers, JobFinishedEvent usage)
    {
        ChatAnswer answer = answers[0];
        if (answer.Content is not null || answer.Calls.Count == 0)
        {
            OutputItem message = NewItem("message");
            message.Text.Append(answer.Content);
            message.Logprobs.AddRange(answer.Logprobs);
        }

        foreach (ToolCallBlock call in answer.Calls)
        {
            OutputItem item = NewItem("function_call");
            item.Name = call.Name;
            item.Arguments.Append(call.ArgumentsJson);
        }

        _items.ForEach(i => i.Done = true);
        _finishReason = answer.FinishReason;
        return ResponseJson.WriteAsync(http, 200, Finish(usage));
    }

    public async Task OpenAsync(int index)
    {
        await EventAsync("response.created", w => WriteResponseProperty(w, null)).ConfigureAwait(false);
        await EventAsync("response.in_progress", w => WriteResponseProperty(w, null)).ConfigureAwait(false);
    }

    public async Task ChunkAsync(int index, string content, TokenLogprobs? logprobs, List<ToolCallDelta>? calls, string? finishReason, string? stopWord = null)
    {
        if (content.Length > 0 || logprobs is not null)
        {
            OutputItem message = await OpenMessageAsync().ConfigureAwait(false);
            message.Text.Append(content);
            if (logprobs is not null)
            {
                message.Logprobs.Add(logprobs);
            }

            await EventAsync("response.output_text.delta", w =>
            {
                WriteItemRef(w, message);
                w.WriteNumber("content_index", 0);
                w.WriteString("delta", content);
                WriteLogprobs(w, logprobs is null ? [] : [logprobs]);
            }).ConfigureAwait(false);
        }

        foreach (ToolCallDelta delta in calls ?? [])
        {
            OutputItem call;
            if (delta.Name is not null)
            {
                await CloseAsync(_message).ConfigureAwait(false);
                _message = null;
                call = NewItem("function_call");
                call.Name = delta.Name;
                _calls[delta.Index] = call;
                await EventAsync("response.output_item.added", w => WriteItemProperty(w, call)).ConfigureAwait(false);
            }
            else
            {
                call = _calls[delta.Index];
            }

            if (delta.Arguments.Length > 0)
            {
                call.Arguments.Append(delta.Arguments);
                await EventAsync("response.function_call_arguments.delta", w =>
                {
                    WriteItemRef(w, call);
                    w.WriteString("delta", delta.Arguments);
                }).ConfigureAwait(false);
            }
        }

        if (finishReason is not null)
        {
            if (_items.Count == 0)
            {
                await OpenMessageAsync().ConfigureAwait(false);
            }

            foreach (OutputItem item in _items)
            {
                await CloseAsync(item).ConfigureAwait(false);
            }

            _finishReason = finishReason;
        }
    }

    public Task FinishedAsync(JobFinishedEvent usage)
    {
        string type = Incomplete ? "response.incomplete" : "response.completed";
        byte[] response = Finish(usage);
        return EventAsync(type, w =>
        {
            w.WritePropertyName("response");
            w.WriteRawValue(response, skipInputValidation: true);
        });
    }

    /// <summary>
    /// The finished response object; kept, when the request asks, before the client has it, so that a request that
    /// goes on from it at once finds it.
    /// </summary>
    private byte[] Finish(JobFinishedEvent usage)
    {
        byte[] response = ResponseJson.Serialize(w => WriteResponse(w, usage));
        if (request.Store && server.Responses is ResponseStore store)
        {
            using JsonDocument written = JsonDocument.Parse(response);
            JsonElement[] output = [.. written.RootElement.GetProperty("output").EnumerateArray().Select(item => item.Clone())];
            store.Add(new StoredResponse(_id, response, request.InputItems, [.. request.Conversation, .. output]));
        }

        return response;
    }

    public Task FailedAsync(ApiException error) => EventAsync("error", w =>
    {
        ResponseJson.WriteStringOrNull(w, "code", error.Code);
        w.WriteString("message", error.Message);
        ResponseJson.WriteStringOrNull(w, "param", error.Param);
    });

    /// <summary>Whether the token limit cut the answer (OpenAI's status "incomplete", reason max_output_tokens).</summary>
    private bool Incomplete => _finishReason == "length";

    private OutputItem NewItem(string type)
    {
        string id = type == "message" ? $"msg_{_id[5..21]}{_items.Count}" : $"fc_{_id[5..21]}{_items.Count}";
        var item = new OutputItem(type, id, _items.Count) { CallId = type == "function_call" ? $"call_{_id[5..21]}{_items.Count}" : null };
        _items.Add(item);
        return item;
    }

    private async Task<OutputItem> OpenMessageAsync()
    {
        if (_message is not null)
        {
            return _message;
        }

        OutputItem message = NewItem("message");
        _message = message;
        await EventAsync("response.output_item.added", w => WriteItemProperty(w, message)).ConfigureAwait(false);
        await EventAsync("response.content_part.added", w =>
        {
            WriteItemRef(w, message);
            w.WriteNumber("content_index", 0);
            w.WritePropertyName("part");
            WriteTextPart(w, message, withText: false);
        }).ConfigureAwait(false);
        return message;
    }

    /// <summary>An item's closing events: a message's whole text and part, a call's whole arguments, then the item itself.</summary>
    private async Task CloseAsync(OutputItem? item)
    {
        if (item is null || item.Done)
        {
            return;
        }

        item.Done = true;
        if (item.Type == "message")
        {
            await EventAsync("response.output_text.done", w =>
            {
                WriteItemRef(w, item);
                w.WriteNumber("content_index", 0);
                w.WriteString("text", item.Text.ToString());
                WriteLogprobs(w, item.Logprobs);
            }).ConfigureAwait(false);
            await EventAsync("response.content_part.done", w =>
            {
                WriteItemRef(w, item);
                w.WriteNumber("content_index", 0);
                w.WritePropertyName("part");
                WriteTextPart(w, item, withText: true);
            }).ConfigureAwait(false);
        }
        else
        {
            await EventAsync("response.function_call_arguments.done", w =>
            {
                WriteItemRef(w, item);
                w.WriteString("name", item.Name);
                w.WriteString("arguments", item.Arguments.ToString());
            }).ConfigureAwait(false);
        }

        await EventAsync("response.output_item.done", w => WriteItemProperty(w, item)).ConfigureAwait(false);
    }

    private Task EventAsync(string type, Action<Utf8JsonWriter> fields) => ResponseJson.WriteEventAsync(http, type, w =>
    {
        w.WriteStartObject();
        w.WriteString("type", type);
        w.WriteNumber("sequence_number", _sequence++);
        fields(w);
        w.WriteEndObject();
    });

    private static void WriteItemRef(Utf8JsonWriter w, OutputItem item)
    {
        w.WriteString("item_id", item.Id);
        w.WriteNumber("output_index", item.OutputIndex);
    }

    private void WriteItemProperty(Utf8JsonWriter w, OutputItem item)
    {
        w.WriteNumber("output_index", item.OutputIndex);
        w.WritePropertyName("item");
        WriteItem(w, item);
    }

    private void WriteItem(Utf8JsonWriter w, OutputItem item)
    {
        w.WriteStartObject();
        w.WriteString("id", item.Id);
        w.WriteString("type", item.Type);
        w.WriteString("status", item.Done ? "completed" : "in_progress");
        if (item.Type == "message")
        {
            w.WriteString("role", "assistant");
            w.WriteStartArray("content");
            if (item.Done)
            {
                WriteTextPart(w, item, withText: true);
            }

            w.WriteEndArray();
        }
        else
        {
            w.WriteString("call_id", item.CallId);
            w.WriteString("name", item.Name);
            w.WriteString("arguments", item.Done ? item.Arguments.ToString() : "");
        }

        w.WriteEndObject();
    }

    private void WriteTextPart(Utf8JsonWriter w, OutputItem message, bool withText)
    {
        w.WriteStartObject();
        w.WriteString("type", "output_text");
        w.WriteString("text", withText ? message.Text.ToString() : "");
        w.WriteStartArray("annotations");
        w.WriteEndArray();
        WriteLogprobs(w, withText ? message.Logprobs : []);
        w.WriteEndObject();
    }

    private void WriteLogprobs(Utf8JsonWriter w, List<TokenLogprobs> logprobs)
    {
        if (job.Logprobs is null)
        {
            w.WriteStartArray("logprobs");
            w.WriteEndArray();
            return;
        }

        TokenPiece.WriteLogprobs(w, "logprobs", logprobs, server.Tokenizer, ids: false);
    }

    private void WriteResponseProperty(Utf8JsonWriter w, JobFinishedEvent? usage)
    {
        w.WritePropertyName("response");
        WriteResponse(w, usage);
    }

    /// <summary>The response object: its status, output so far and, at the end, usage; the request's settings repeated as OpenAI repeats them.</summary>
    private void WriteResponse(Utf8JsonWriter w, JobFinishedEvent? usage)
    {
        JsonElement original = request.Original;
        w.WriteStartObject();
        w.WriteString("id", _id);
        w.WriteString("object", "response");
        w.WriteNumber("created_at", _created);
        w.WriteString("status", usage is null ? "in_progress" : Incomplete ? "incomplete" : "completed");
        if (usage is not null)
        {
            w.WriteNumber("completed_at", DateTimeOffset.UtcNow.ToUnixTimeSeconds());
        }

        w.WriteNull("error");
        if (usage is not null && Incomplete)
        {
            w.WriteStartObject("incomplete_details");
            w.WriteString("reason", "max_output_tokens");
            w.WriteEndObject();
        }
        else
        {
            w.WriteNull("incomplete_details");
        }

        Echo(w, original, "instructions", null);
        Echo(w, original, "max_output_tokens", null);
        w.WriteString("model", model);
        w.WriteStartArray("output");
        foreach (OutputItem item in usage is null ? [] : _items)
        {
            WriteItem(w, item);
        }

        w.WriteEndArray();
        Echo(w, original, "parallel_tool_calls", "true");
        Echo(w, original, "previous_response_id", null);
        w.WriteBoolean("store", request.Store);
        Echo(w, original, "temperature", null);
        Echo(w, original, "top_p", null);
        Echo(w, original, "text", """{"format":{"type":"text"}}""");
        Echo(w, original, "tool_choice", "\"auto\"");
        Echo(w, original, "tools", "[]");
        Echo(w, original, "top_logprobs", null);
        w.WriteString("truncation", "disabled");
        Echo(w, original, "metadata", "{}");
        if (usage is not null)
        {
            w.WriteStartObject("usage");
            w.WriteNumber("input_tokens", usage.PromptTokens);
            w.WriteStartObject("input_tokens_details");
            w.WriteNumber("cached_tokens", usage.CachedPromptTokens);
            w.WriteEndObject();
            w.WriteNumber("output_tokens", usage.CompletionTokens);
            w.WriteStartObject("output_tokens_details");
            w.WriteNumber("reasoning_tokens", 0);
            w.WriteEndObject();
            w.WriteNumber("total_tokens", usage.PromptTokens + usage.CompletionTokens);
            w.WriteEndObject();
        }
        else
        {
            w.WriteNull("usage");
        }

        w.WriteEndObject();
    }

    /// <summary>The request's field as it was sent; else <paramref name="fallback"/> (JSON text), else null.</summary>
    private static void Echo(Utf8JsonWriter w, JsonElement original, string name, string? fallback)
    {
        w.WritePropertyName(name);
        if (original.TryGetProperty(name, out JsonElement value) && value.ValueKind != JsonValueKind.Null)
        {
            value.WriteTo(w);
        }
        else if (fallback is not null)
        {
            w.WriteRawValue(fallback);
        }
        else
        {
            w.WriteNullValue();
        }
    }

    /// <summary>One item of the response's output as it streams: a message's text and log-probs, or a call's name and arguments.</summary>
    private sealed class OutputItem(string type, string id, int outputIndex)
    {
        public string Type { get; } = type;

        public string Id { get; } = id;

        public int OutputIndex { get; } = outputIndex;

        public string? CallId { get; init; }

        public string? Name { get; set; }

        public StringBuilder Text { get; } = new();

        public StringBuilder Arguments { get; } = new();

        public List<TokenLogprobs> Logprobs { get; } = [];

        public bool Done { get; set; }
    }
}
