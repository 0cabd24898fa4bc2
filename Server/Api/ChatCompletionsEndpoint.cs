using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using QwenSharp.Errors;
using QwenSharp.Generation;
using QwenSharp.Sampling;
using QwenSharp.Server.Scheduling;

namespace QwenSharp.Server.Api;

/// <summary>
/// <c>POST /v1/chat/completions</c>: OpenAI's chat API over the model's chat template, whole or streamed as
/// server-sent events, with n choices, stop strings, log-probs, and tools (Qwen's &lt;tool_call&gt; blocks
/// returned as <c>tool_calls</c>, held back from the streamed content).
/// </summary>
internal static class ChatCompletionsEndpoint
{
    private static readonly HashSet<string> s_fields =
    [
        "model", "messages", "stream", "stream_options", "n", "max_tokens", "max_completion_tokens", "stop", "logprobs", "top_logprobs",
        "tools", "tool_choice", "parallel_tool_calls", "prediction", "lora", .. ResponseFormat.Fields, "user", "store", "metadata", "service_tier",
        .. SamplingFields.Names,
    ];

    public static async Task HandleAsync(HttpContext http, ServerState server)
    {
        Jobs.RequireGenerator(server);
        using JsonDocument body = await RequestBody.ReadJsonAsync(http, server.Options.MaxBodyBytes).ConfigureAwait(false);
        RequestFields request = RequestFields.Of(body.RootElement, "", s_fields);
        string model = request.String("model", 256) ?? server.ModelName;
        float[]? adapterScales = server.Adapters.ForRequest(request, model);
        bool stream = request.Bool("stream") ?? false;
        bool includeUsage = StreamOptions.IncludeUsage(request);

        int samples = request.Int("n", 1, 128) ?? 1;
        int? maxTokens = request.Int("max_completion_tokens", 1, int.MaxValue) ?? request.Int("max_tokens", 1, int.MaxValue);
        IReadOnlyList<string> stops = request.StringOrList("stop", 16, 4096);
        bool logprobs = request.Bool("logprobs") ?? false;
        int? topLogprobs = request.Int("top_logprobs", 0, 20);
        if (topLogprobs is not null && !logprobs)
        {
            throw ApiException.BadField("top_logprobs", "'top_logprobs' needs 'logprobs': true");
        }

        CheckUnsupported(request);
        bool parallelCalls = request.Bool("parallel_tool_calls") ?? true;
        (Func<ITokenConstraint> Constraint, JsonElement? Schema)? format = ResponseFormat.Read(request, server);
        SamplingOverrides sampling = SamplingFields.Read(request, server.Model.Config.VocabSize);
        RenderedChat chat = ChatPrompt.Render(request, server.Tokenizer, server.Model.ImageProcessor);
        (string prompt, string answerPrefix, bool hasTools, List<Qwen2VL.RgbImage> pictures) = (chat.Prompt, chat.AnswerPrefix, chat.HasTools, chat.Pictures);

        if (hasTools && format is { Schema: null })
        {
            string guide = ResponseFormat.Fields.First(f => request.Get(f) is not null);
            throw ApiException.BadField(guide, $"'{guide}' with 'tools': the answer would be calls or plain text; give one");
        }

        // With tools offered, the answer is calls held to them or (with a response format) an answer in that format.
        Func<ITokenConstraint>? constraint = hasTools ? ToolCalls(chat, parallelCalls, format?.Schema, server) : format?.Constraint;
        int[] ids = server.Tokenizer.Encode(prompt);
        int[]? prediction = Prediction.Read(request, server.Tokenizer, server.Context);

        // Pictures (Qwen2-VL): processed here, off the scheduler's thread; the scheduler runs the vision tower on admission.
        Qwen2VL.ImagePatches[] patches = [.. pictures.Select(p => Qwen2VL.ImageProcessor.Process(p, server.Model.ImageProcessor!))];
        if (patches.Length > 0)
        {
            ids = [.. Qwen2VL.VisionPrompt.ExpandImagePads(ids, patches, server.Model.Config)];
        }

        using var deadline = new RequestDeadline(http.RequestAborted, server.Options.RequestTimeout);
        GenerationJob job = Jobs.Create(server, [ids], "messages", samples, sampling, maxTokens, stops, logprobs ? topLogprobs ?? 0 : null,
            primeText: false, deadline.Token, pictures: patches, constraint: constraint, prediction: prediction,
            adapterScales: adapterScales);
        Jobs.Submit(server, job);
        // Held calls stream as they are written: from the first <tool_call> of an answer held throughout, else from the
        // one its open token begins.
        int? openToken = chat.CallsForced || format is not null ? null : server.Constrained.OpenCallToken;
        Func<StreamedToolCalls>? callStream = hasTools && constraint is not null ? () => new StreamedToolCalls(openToken) : null;
        var response = new Response(http, server, job, model, answerPrefix, hasTools, callStream, stream, includeUsage);
        await response.RunAsync(deadline).ConfigureAwait(false);
    }

    /// <summary>
    /// The answer's tool calls held to the tools offered (<see cref="ToolCallPrefix"/>): from its start when tool_choice
    /// forces a call; else, with a response format, the answer is calls or an answer in that format; else calls are held
    /// from the moment the model opens one.
    /// </summary>
    private static Func<ITokenConstraint>? ToolCalls(RenderedChat chat, bool parallel, JsonElement? format, ServerState server)
    {
        if (chat.CallableTools is not { } tools)
        {
            return null;
        }

        try
        {
            return server.Constrained.ToolCalls(tools, parallel, chat.CallsForced ? chat.AnswerPrefix : null, format);
        }
        catch (ArgumentException e)
        {
            throw ApiException.BadField(e.ParamName ?? "tools", $"'{e.ParamName ?? "tools"}': {e.BareMessage()}");
        }
    }

    private static void CheckUnsupported(RequestFields request)
    {
        request.String("user");
        request.Bool("store");
    }

    /// <summary>One request's answer, written whole or as a stream while the job's events arrive.</summary>
    /// <remarks>
    /// A stream keeps each choice's whole answer in its <see cref="ChoiceState.Text"/>, the forced prefix first (never sent
    /// as content: <see cref="ChoiceState.Sent"/> starts past it).
    /// </remarks>
    private sealed class Response(HttpContext http, ServerState server, GenerationJob job, string model, string answerPrefix, bool hasTools,
        Func<StreamedToolCalls>? callStream, bool stream, bool includeUsage)
    {
        private readonly string _id = "chatcmpl-" + Guid.NewGuid().ToString("N");
        private readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        private readonly ChoiceState[] _choices = [.. Enumerable.Range(0, job.Choices).Select(_ => Answer(answerPrefix))];
        private readonly StreamedToolCalls?[] _calls = [.. Enumerable.Range(0, job.Choices).Select(_ => callStream?.Invoke())];

        public async Task RunAsync(RequestDeadline deadline)
        {
            if (stream)
            {
                await Jobs.StreamAsync(http, server, job, deadline, StreamEventAsync).ConfigureAwait(false);
                return;
            }

            (ChoiceState[] choices, JobFinishedEvent usage) = await Jobs.CollectAsync(job, deadline).ConfigureAwait(false);
            await ResponseJson.WriteAsync(http, 200, w => WholeResponse(w, choices, usage)).ConfigureAwait(false);
        }

        private void WholeResponse(Utf8JsonWriter w, ChoiceState[] choices, JobFinishedEvent usage)
        {
            w.WriteStartObject();
            WriteHeader(w, "chat.completion");
            w.WriteStartArray("choices");
            for (int i = 0; i < choices.Length; i++)
            {
                ChoiceState choice = choices[i];
                string answer = answerPrefix + choice.Text;
                List<ToolCallBlock> calls = hasTools ? ChatJson.ToolCallBlocks(answer) : [];
                string content = calls.Count > 0 ? ChatJson.WithoutToolCalls(answer, calls, 0).Trim() : choice.Text.ToString();
                w.WriteStartObject();
                w.WriteNumber("index", i);
                w.WriteStartObject("message");
                w.WriteString("role", "assistant");
                ResponseJson.WriteStringOrNull(w, "content", calls.Count > 0 && content.Length == 0 ? null : content);
                if (calls.Count > 0)
                {
                    WriteToolCalls(w, calls);
                }

                w.WriteEndObject();
                WriteLogprobs(w, choice.Logprobs);
                w.WriteString("finish_reason", calls.Count > 0 ? "tool_calls" : ChoiceState.FinishReason(choice.Reason ?? StopReason.Length));
                w.WriteEndObject();
            }

            w.WriteEndArray();
            ResponseJson.WriteUsage(w, usage);
            w.WriteEndObject();
        }

        private static ChoiceState Answer(string prefix)
        {
            var choice = new ChoiceState { Sent = prefix.Length };
            choice.Text.Append(prefix);
            return choice;
        }

        private async Task StreamEventAsync(JobEvent next)
        {
            switch (next)
            {
                case TokenEvent token:
                {
                    ChoiceState choice = _choices[token.Choice];
                    StreamedToolCalls? calls = _calls[token.Choice];
                    await OpenAsync(token.Choice).ConfigureAwait(false);
                    calls?.Token(token.Token, choice.Text.Length);
                    choice.Text.Append(token.Text);
                    (string delta, List<ToolCallDelta>? deltas) = Releasable(choice, calls);
                    if (delta.Length > 0 || token.Logprobs is not null || deltas is { Count: > 0 })
                    {
                        await ChunkAsync(token.Choice, delta, token.Logprobs, deltas is { Count: > 0 } ? deltas : null, null).ConfigureAwait(false);
                    }

                    break;
                }

                case ChoiceFinishedEvent finished:
                {
                    ChoiceState choice = _choices[finished.Choice];
                    await OpenAsync(finished.Choice).ConfigureAwait(false);
                    choice.Text.Append(finished.Text);
                    await FinishAsync(finished.Choice, choice.Text.ToString(), finished.Reason).ConfigureAwait(false);
                    break;
                }

                case JobFinishedEvent done when includeUsage:
                    await ResponseJson.WriteUsageEventAsync(http, w => WriteHeader(w, "chat.completion.chunk"), done).ConfigureAwait(false);
                    break;
            }
        }

        /// <summary>
        /// A choice's last chunk: the content not yet sent, the rest of the calls streamed so far, the calls not streamed whole,
        /// and why it ended. A streamed call the answer ended inside (a token limit, a stop string) stays a call, as it was
        /// sent, and the choice ends for that reason, not "tool_calls".
        /// </summary>
        private Task FinishAsync(int index, string answer, StopReason reason)
        {
            ChoiceState choice = _choices[index];
            StreamedToolCalls? streamed = _calls[index];
            var deltas = streamed?.Read(answer) ?? [];
            List<ToolCallBlock> blocks = hasTools ? ChatJson.ToolCallBlocks(answer) : [];
            IReadOnlyList<StreamedCall> sent = streamed?.Calls ?? [];
            var spans = new List<ToolCallBlock>(blocks);
            bool cut = false;
            foreach (StreamedCall call in sent)
            {
                if (!blocks.Exists(b => b.Start == call.Start))
                {
                    // Not a call in the whole answer: its block is left out of the content all the same, as a span.
                    cut = true;
                    spans.Add(new ToolCallBlock(call.Name, "", call.Start, call.End < 0 ? answer.Length : call.End));
                }
            }

            int next = sent.Count;
            foreach (ToolCallBlock block in blocks.Where(b => !sent.Any(c => c.Start == b.Start)))
            {
                deltas.Add(new ToolCallDelta(next++, block.Name, block.ArgumentsJson));
            }

            spans.Sort((a, b) => a.Start.CompareTo(b.Start));
            bool anyCalls = sent.Count > 0 || blocks.Count > 0;
            string rest = anyCalls ? ChatJson.WithoutToolCalls(answer, spans, choice.Sent) : answer[choice.Sent..];
            if (anyCalls && rest.Trim().Length == 0)
            {
                rest = "";
            }

            string finish = anyCalls && !cut ? "tool_calls" : ChoiceState.FinishReason(reason);
            return ChunkAsync(index, rest, null, anyCalls ? deltas : null, finish);
        }

        /// <summary>The first chunk of a choice: the role, as OpenAI's streams begin.</summary>
        private async Task OpenAsync(int index)
        {
            if (_choices[index].Opened)
            {
                return;
            }

            _choices[index].Opened = true;
            await ChunkAsync(index, "", null, null, null, opening: true).ConfigureAwait(false);
        }

        private Task ChunkAsync(int index, string content, TokenLogprobs? logprobs, List<ToolCallDelta>? calls, string? finishReason, bool opening = false) =>
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

        /// <summary>
        /// The text a stream can send now, and the held calls' new deltas. With tools, text from a &lt;tool_call&gt; on (or
        /// what may be its start) is held back: it becomes tool_calls, not content. Without, only the new text is copied out.
        /// </summary>
        private (string Content, List<ToolCallDelta>? Calls) Releasable(ChoiceState choice, StreamedToolCalls? calls)
        {
            int from = choice.Sent;
            if (!hasTools)
            {
                choice.Sent = choice.Text.Length;
                return (choice.Text.ToString(from, choice.Sent - from), null);
            }

            string answer = choice.Text.ToString();
            int end = ChatJson.ReleasableLength(answer);
            choice.Sent = Math.Max(from, end);
            return (end <= from ? "" : answer[from..end], calls?.Read(answer));
        }

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
}
