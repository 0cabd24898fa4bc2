using System.Text.Json;

namespace QwenSharp.Server.Api;

/// <summary>A tool call's arguments as the APIs that give them as an object write them (Anthropic's <c>input</c>, Ollama's <c>arguments</c>).</summary>
internal static class CallArguments
{
    /// <summary>The held call's arguments, a JSON object's text, as that object; anything else reads as {}.</summary>
    public static void WriteObject(Utf8JsonWriter w, string arguments)
    {
        try
        {
            using JsonDocument parsed = JsonDocument.Parse(arguments);
            if (parsed.RootElement.ValueKind == JsonValueKind.Object)
            {
                parsed.RootElement.WriteTo(w);
                return;
            }
        }
        catch (JsonException)
        {
        }

        w.WriteStartObject();
        w.WriteEndObject();
    }
}
