using QwenSharp.Generation;

namespace QwenSharp.Server.Api;

/// <summary>
/// One choice's whole answer as the chat APIs give it: the text (null where the answer is only tool calls), the calls
/// Qwen's &lt;tool_call&gt; blocks made, why it ended (<c>tool_calls</c>, <c>stop</c>, <c>length</c>), its log-probs, and the
/// stop string that ended it, if one did.
/// </summary>
internal sealed record ChatAnswer(string? Content, List<ToolCallBlock> Calls, string FinishReason, List<TokenLogprobs> Logprobs, string? StopWord = null)
{
    /// <summary>
    /// The answer of <paramref name="choice"/>, whose text began after <paramref name="prefix"/> (a forced call's opening,
    /// part of the answer the calls are read from); calls are read only where tools were offered.
    /// </summary>
    public static ChatAnswer Of(ChoiceState choice, string prefix, bool hasTools)
    {
        string answer = prefix + choice.Text;
        List<ToolCallBlock> calls = hasTools ? ChatJson.ToolCallBlocks(answer) : [];
        string content = calls.Count > 0 ? ChatJson.WithoutToolCalls(answer, calls, 0).Trim() : choice.Text.ToString();
        return new ChatAnswer(calls.Count > 0 && content.Length == 0 ? null : content, calls,
            calls.Count > 0 ? "tool_calls" : ChoiceState.FinishReason(choice.Reason ?? StopReason.Length), choice.Logprobs, choice.StopWord);
    }
}
