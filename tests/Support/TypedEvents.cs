using System.Net;
using System.Text;
using System.Text.Json;

namespace QwenSharp.Tests.Support;

/// <summary>
/// A stream of typed server-sent events, as the Responses and Messages APIs send them: each <c>event: TYPE</c> then
/// <c>data: {json}</c>, and no OpenAI <c>[DONE]</c> at the end.
/// </summary>
internal static class TypedEvents
{
    public static async Task<List<(string Event, JsonElement Data)>> PostAsync(TestServer server, string path, string json)
    {
        using var content = new StringContent(json, Encoding.UTF8, "application/json");
        using HttpResponseMessage response = await server.Http.PostAsync(path, content);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        string text = await response.Content.ReadAsStringAsync();
        Assert.DoesNotContain("[DONE]", text, StringComparison.Ordinal);
        var events = new List<(string, JsonElement)>();
        foreach (string block in text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries))
        {
            string[] lines = block.Split('\n');
            Assert.Equal(2, lines.Length);
            Assert.StartsWith("event: ", lines[0], StringComparison.Ordinal);
            Assert.StartsWith("data: ", lines[1], StringComparison.Ordinal);
            events.Add((lines[0]["event: ".Length..], JsonDocument.Parse(lines[1]["data: ".Length..]).RootElement));
        }

        return events;
    }
}
