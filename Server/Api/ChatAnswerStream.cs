using Microsoft.AspNetCore.Http;
using QwenSharp.Generation;
using QwenSharp.Server.Scheduling;

namespace QwenSharp.Server.Api;

/// <summary>
/// One chat request's answer, written whole or streamed while the job's events arrive, in the shape its
/// <see cref="IChatAnswerWriter"/> gives. With tools, text from a &lt;tool_call&gt; on (or what may be its start) is held
/// back from the content: it goes out as the calls' deltas.
/// </summary>
/// <remarks>
/// A stream keeps each choice's whole answer in its <see cref="ChoiceState.Text"/>, the forced prefix first (never sent
/// as content: <see cref="ChoiceState.Sent"/> starts past it).
/// </remarks>
internal sealed class ChatAnswerStream(HttpContext http, ServerState server, GenerationJob job, string answerPrefix, bool hasTools,
    Func<StreamedToolCalls>? callStream, IChatAnswerWriter writer)
{
    private readonly ChoiceState[] _choices = [.. Enumerable.Range(0, job.Choices).Select(_ => Answer(answerPrefix))];
    private readonly StreamedToolCalls?[] _calls = [.. Enumerable.Range(0, job.Choices).Select(_ => callStream?.Invoke())];

    public async Task RunAsync(RequestDeadline deadline, bool stream)
    {
        if (stream)
        {
            await Jobs.StreamAsync(http, server, job, deadline, StreamEventAsync, writer.EndsWithDone, writer.FailedAsync).ConfigureAwait(false);
            return;
        }

        (ChoiceState[] choices, JobFinishedEvent usage) = await Jobs.CollectAsync(job, deadline).ConfigureAwait(false);
        await writer.WholeAsync([.. choices.Select(c => ChatAnswer.Of(c, answerPrefix, hasTools))], usage).ConfigureAwait(false);
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
                    await writer.ChunkAsync(token.Choice, delta, token.Logprobs, deltas is { Count: > 0 } ? deltas : null, null).ConfigureAwait(false);
                }

                break;
            }

            case ChoiceFinishedEvent finished:
            {
                ChoiceState choice = _choices[finished.Choice];
                await OpenAsync(finished.Choice).ConfigureAwait(false);
                choice.Text.Append(finished.Text);
                await FinishAsync(finished.Choice, choice.Text.ToString(), finished.Reason, finished.StopWord).ConfigureAwait(false);
                break;
            }

            case JobFinishedEvent done:
                await writer.FinishedAsync(done).ConfigureAwait(false);
                break;
        }
    }

    /// <summary>
    /// A choice's last chunk: the content not yet sent, the rest of the calls streamed so far, the calls not streamed whole,
    /// and why it ended. A streamed call the answer ended inside (a token limit, a stop string) stays a call, as it was
    /// sent, and the choice ends for that reason, not "tool_calls".
    /// </summary>
    private Task FinishAsync(int index, string answer, StopReason reason, string? stopWord)
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
        return writer.ChunkAsync(index, rest, null, anyCalls ? deltas : null, finish, stopWord);
    }

    /// <summary>A choice's first event (the role, as OpenAI's chat streams begin), once.</summary>
    private async Task OpenAsync(int index)
    {
        if (_choices[index].Opened)
        {
            return;
        }

        _choices[index].Opened = true;
        await writer.OpenAsync(index).ConfigureAwait(false);
    }

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
}
