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
        "add_generation_prompt", "continue_final_message", "chat_template_kwargs",
        .. SamplingFields.Names,
    ];

    public static async Task HandleAsync(HttpContext http, ServerState server)
    {
        Jobs.RequireGenerator(server);
        using JsonDocument body = await RequestBody.ReadJsonAsync(http, server.Options.MaxBodyBytes).ConfigureAwait(false);
        await AnswerAsync(http, server, body.RootElement, (job, model, includeUsage) => new ChatCompletionWriter(http, server, job, model, includeUsage)).ConfigureAwait(false);
    }

    /// <summary>
    /// Answers the chat completions request <paramref name="body"/>, in the shape <paramref name="writerFor"/> gives (the
    /// Responses API translates its requests into this one and writes its own shape).
    /// </summary>
    public static async Task AnswerAsync(HttpContext http, ServerState server, JsonElement body, Func<GenerationJob, string, bool, IChatAnswerWriter> writerFor)
    {
        RequestFields request = RequestFields.Of(body, "", s_fields);
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
        RenderedChat chat = ChatPrompt.Render(request, server.Tokenizer, server.Model.ImageProcessor, prefillAssistant: server.Options.PrefillAssistant);
        (string answerPrefix, bool hasTools) = (chat.AnswerPrefix, chat.HasTools);
        if (chat.ContinuesFinalMessage && format is not null)
        {
            // The format holds a whole answer from its first token; the final message has already begun it.
            string guide = ResponseFormat.Fields.First(f => request.Get(f) is not null);
            throw ApiException.BadField(guide, $"'{guide}' holds the whole answer to a format, and the answer continues the final assistant message; give one (or 'continue_final_message': false)");
        }

        if (hasTools && format is { Schema: null })
        {
            string guide = ResponseFormat.Fields.First(f => request.Get(f) is not null);
            throw ApiException.BadField(guide, $"'{guide}' with 'tools': the answer would be calls or plain text; give one");
        }

        // With tools offered, the answer is calls held to them or (with a response format) an answer in that format.
        Func<ITokenConstraint>? constraint = hasTools ? ToolCalls(chat, parallelCalls, format?.Schema, server) : format?.Constraint;
        (int[] ids, Qwen2VL.ImagePatches[] patches) = PromptIds(server, chat);
        int[]? prediction = Prediction.Read(request, server.Tokenizer, server.Context);

        using var deadline = new RequestDeadline(http.RequestAborted, server.Options.RequestTimeout);
        GenerationJob job = Jobs.Create(server, [ids], "messages", samples, sampling, maxTokens, stops, logprobs ? topLogprobs ?? 0 : null,
            primeText: false, deadline.Token, pictures: patches, constraint: constraint, prediction: prediction,
            adapterScales: adapterScales);
        Jobs.Submit(server, job);
        // Held calls stream as they are written: from the first <tool_call> of an answer held throughout, else from the
        // one its open token begins.
        int? openToken = chat.CallsForced || format is not null ? null : server.Constrained.OpenCallToken;
        Func<StreamedToolCalls>? callStream = hasTools && constraint is not null ? () => new StreamedToolCalls(openToken) : null;
        var answer = new ChatAnswerStream(http, server, job, answerPrefix, hasTools, callStream, writerFor(job, model, includeUsage));
        await answer.RunAsync(deadline, stream).ConfigureAwait(false);
    }

    /// <summary>The prompt tokens of the chat completions request <paramref name="body"/>, pictures included (Anthropic's count_tokens).</summary>
    public static int PromptTokens(ServerState server, JsonElement body)
    {
        RequestFields request = RequestFields.Of(body, "", s_fields);
        return PromptIds(server, ChatPrompt.Render(request, server.Tokenizer, server.Model.ImageProcessor, prefillAssistant: server.Options.PrefillAssistant)).Ids.Length;
    }

    /// <summary>
    /// The rendered chat's ids, each picture's pad expanded to its patches (Qwen2-VL: processed here, off the scheduler's
    /// thread; the scheduler runs the vision tower on admission).
    /// </summary>
    private static (int[] Ids, Qwen2VL.ImagePatches[] Patches) PromptIds(ServerState server, RenderedChat chat)
    {
        int[] ids = server.Tokenizer.Encode(chat.Prompt);
        Qwen2VL.ImagePatches[] patches = [.. chat.Pictures.Select(p => Qwen2VL.ImageProcessor.Process(p, server.Model.ImageProcessor!))];
        return (patches.Length > 0 ? [.. Qwen2VL.VisionPrompt.ExpandImagePads(ids, patches, server.Model.Config)] : ids, patches);
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
}
