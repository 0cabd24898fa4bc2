using QwenSharp.Generation;
using QwenSharp.Server.Scheduling;

namespace QwenSharp.Server.Api;

/// <summary>
/// How a chat answer goes out in one API's shape: OpenAI's chat completions (<see cref="ChatCompletionWriter"/>) or its
/// Responses API (<see cref="ResponsesWriter"/>), or Anthropic's Messages API (<see cref="AnthropicWriter"/>). <see cref="ChatAnswerStream"/> decides what to send and when (what a
/// stream may release while a tool call may be starting, the calls' deltas); the writer only shapes it.
/// </summary>
internal interface IChatAnswerWriter
{
    /// <summary>The whole answer of a request that does not stream.</summary>
    Task WholeAsync(IReadOnlyList<ChatAnswer> answers, JobFinishedEvent usage);

    /// <summary>A choice's first event, before any of its text.</summary>
    Task OpenAsync(int index);

    /// <summary>
    /// A choice's next text, log-probs and tool-call deltas; with <paramref name="finishReason"/> its last
    /// (<c>tool_calls</c>, <c>stop</c> or <c>length</c>; <paramref name="stopWord"/> the stop string that ended it, if one did).
    /// </summary>
    Task ChunkAsync(int index, string content, TokenLogprobs? logprobs, List<ToolCallDelta>? calls, string? finishReason, string? stopWord = null);

    /// <summary>The job's end, with its usage, after every choice's last chunk.</summary>
    Task FinishedAsync(JobFinishedEvent usage);

    /// <summary>A failure after the stream began.</summary>
    Task FailedAsync(ApiException error);

    /// <summary>Whether the stream ends with OpenAI's <c>data: [DONE]</c>.</summary>
    bool EndsWithDone { get; }
}
