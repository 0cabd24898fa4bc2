using System.Text;
using QwenSharp.Server.Api;

namespace QwenSharp.Tests.Server;

/// <summary>
/// <see cref="StreamedToolCalls"/>: answers written here by hand, read in pieces of every size, must stream each call's
/// name once, before any of its arguments, and arguments that join into exactly the text written; any other shape
/// streams nothing past where it leaves the grammar's.
/// </summary>
public sealed class StreamedToolCallsTests
{
    private const string Weather = """{"city": "Paris", "days": [1, {"n": 2}], "note": "a \"}\" and a \\"}""";

    private static readonly string s_two = "Let me look.<tool_call>\n{\"name\": \"get_weather\", \"arguments\": " + Weather
        + "}\n</tool_call>\n<tool_call>\n{\"name\": \"get\\u005ftime\", \"arguments\": {}}\n</tool_call>";

    /// <summary>The answer read in pieces of <paramref name="piece"/> characters: each call's name and its joined arguments, and the deltas in order.</summary>
    private static (List<(string Name, string Arguments)> Calls, List<ToolCallDelta> Deltas, StreamedToolCalls Stream) Streamed(string answer, int piece, int? openToken = null, int openAt = -1)
    {
        var stream = new StreamedToolCalls(openToken);
        var deltas = new List<ToolCallDelta>();
        for (int end = 0; end < answer.Length;)
        {
            int next = Math.Min(answer.Length, end + piece);
            if (openAt >= end && openAt < next)
            {
                // The open token arrives as a piece of its own, as the model writes it.
                deltas.AddRange(stream.Read(answer[..openAt]));
                stream.Token(7, openAt);
                next = openAt + "<tool_call>".Length;
            }

            deltas.AddRange(stream.Read(answer[..next]));
            end = next;
        }

        var calls = new List<(string Name, StringBuilder Arguments)>();
        foreach (ToolCallDelta delta in deltas)
        {
            if (delta.Name is not null)
            {
                Assert.Equal(calls.Count, delta.Index);
                calls.Add((delta.Name, new StringBuilder()));
            }

            Assert.True(delta.Index < calls.Count, $"arguments of call {delta.Index} before its name");
            calls[delta.Index].Arguments.Append(delta.Arguments);
        }

        return ([.. calls.Select(c => (c.Name, c.Arguments.ToString()))], deltas, stream);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(7)]
    [InlineData(1000)]
    public void CallsHeldThroughoutStreamTheirNamesAndArguments(int piece)
    {
        (List<(string Name, string Arguments)> calls, List<ToolCallDelta> deltas, StreamedToolCalls stream) = Streamed(s_two, piece);

        Assert.Equal([("get_weather", Weather), ("get_time", "{}")], calls);
        Assert.Equal(2, deltas.Count(d => d.Name is not null));
        int first = s_two.IndexOf("<tool_call>", StringComparison.Ordinal), second = s_two.LastIndexOf("<tool_call>", StringComparison.Ordinal);
        Assert.Equal([(first, second - 1), (second, s_two.Length)], stream.Calls.Select(c => (c.Start, c.End)));
        if (piece == 1)
        {
            // Character by character, the arguments go out as they come: one delta a character after the name's.
            Assert.Equal(Weather.Length, deltas.Count(d => d.Index == 0));
        }
    }

    [Fact]
    public void WithAnOpenTokenCallsStreamFromTheOneItBegins()
    {
        // The first <tool_call> here is text the model spelled out, not the token: it is not held, so it does not stream.
        string answer = "Write <tool_call> like this.<tool_call>\n{\"name\": \"ping\", \"arguments\": {}}\n</tool_call>";
        int held = answer.LastIndexOf("<tool_call>", StringComparison.Ordinal);

        (List<(string Name, string Arguments)> calls, _, StreamedToolCalls stream) = Streamed(answer, 3, openToken: 7, openAt: held);

        Assert.Equal([("ping", "{}")], calls);
        Assert.Equal(held, Assert.Single(stream.Calls).Start);
        Assert.Empty(Streamed(answer, 3, openToken: 7).Calls);
    }

    [Fact]
    public void AnAnswerCutInsideACallLeavesItOpen()
    {
        string answer = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Pa";

        (List<(string Name, string Arguments)> calls, _, StreamedToolCalls stream) = Streamed(answer, 4);

        Assert.Equal([("get_weather", "{\"city\": \"Pa")], calls);
        Assert.Equal(-1, Assert.Single(stream.Calls).End);
    }

    [Theory]
    [InlineData("<tool_call>\n{\"arguments\": {}, \"name\": \"ping\"}\n</tool_call>")]
    [InlineData("<tool_call>\n{\"name\": \"ping\", \"arguments\": \"{}\"}\n</tool_call>")]
    [InlineData("<tool_call>\n{\"name\": \"pi\\qg\", \"arguments\": {}}\n</tool_call>")]
    [InlineData("<tool_call>\n[\"ping\", {}]\n</tool_call>")]
    [InlineData("<tool_cal>\n{\"name\": \"ping\", \"arguments\": {}}\n</tool_call>")]
    public void OtherShapesStreamNothing(string answer)
    {
        for (int piece = 1; piece <= answer.Length; piece++)
        {
            Assert.Empty(Streamed(answer, piece).Calls);
        }
    }

    [Fact]
    public void AfterAShapeOfAnotherKindNothingMoreStreams()
    {
        // A second call with its keys the other way round: the first streamed, the second left to the answer's end.
        string answer = "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": 1}}\n</tool_call>\n<tool_call>\n{\"arguments\": {}, \"name\": \"b\"}\n</tool_call>";

        (List<(string Name, string Arguments)> calls, _, _) = Streamed(answer, 5);

        Assert.Equal([("a", "{\"x\": 1}")], calls);
    }
}
