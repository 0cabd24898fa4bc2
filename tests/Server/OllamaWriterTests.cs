using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using QwenSharp.Server.Api;
using QwenSharp.Server.Scheduling;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Server;

/// <summary>
/// <see cref="OllamaWriter"/>'s stream of a chat answer that ends in tool calls, as Ollama sends one: the text as it
/// comes, then the calls whole (each call's streamed arguments joined into an object) in one message before the last
/// line, which says done, stop and the counts. (A real model's call needs a model that makes one; the server's path to
/// here is the one the chat completions tests take.)
/// </summary>
public sealed class OllamaWriterTests
{
    [Fact]
    public async Task ToolCalls_GoOutWhole_InTheMessageBeforeTheLastLine()
    {
        var http = new DefaultHttpContext();
        using var body = new MemoryStream();
        http.Response.Body = body;
        var writer = new OllamaWriter(http, TestTokenizers.Qwen, "tiny:latest", chat: true);

        await writer.OpenAsync(0);
        await writer.ChunkAsync(0, "Let me check.", null, null, null);
        await writer.ChunkAsync(0, "", null, [new ToolCallDelta(0, "get_weather", "{\"city\": "), new ToolCallDelta(0, null, "\"Paris\"}")], null);
        await writer.ChunkAsync(0, "", null, [new ToolCallDelta(1, "get_time", "{}")], "tool_calls");
        await writer.FinishedAsync(new JobFinishedEvent(10, 0, 5));
        await http.Response.BodyWriter.FlushAsync();

        Assert.Equal("application/x-ndjson", http.Response.ContentType);
        JsonElement[] lines = [.. Encoding.UTF8.GetString(body.ToArray()).Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement)];
        Assert.Equal(3, lines.Length);
        Assert.Equal("Let me check.", lines[0].GetProperty("message").GetProperty("content").GetString());
        Assert.False(lines[0].TryGetProperty("tool_calls", out _));

        JsonElement calls = lines[1].GetProperty("message").GetProperty("tool_calls");
        Assert.False(lines[1].GetProperty("done").GetBoolean());
        Assert.Equal(2, calls.GetArrayLength());
        Assert.Equal("get_weather", calls[0].GetProperty("function").GetProperty("name").GetString());
        Assert.Equal("Paris", calls[0].GetProperty("function").GetProperty("arguments").GetProperty("city").GetString());
        Assert.Equal(1, calls[1].GetProperty("function").GetProperty("index").GetInt32());
        Assert.Equal(JsonValueKind.Object, calls[1].GetProperty("function").GetProperty("arguments").ValueKind);

        JsonElement last = lines[2];
        Assert.True(last.GetProperty("done").GetBoolean());
        Assert.Equal("stop", last.GetProperty("done_reason").GetString());
        Assert.Equal(10, last.GetProperty("prompt_eval_count").GetInt32());
        Assert.Equal(5, last.GetProperty("eval_count").GetInt32());
        Assert.Equal("", last.GetProperty("message").GetProperty("content").GetString());
    }
}
