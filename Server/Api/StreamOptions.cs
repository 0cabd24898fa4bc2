namespace QwenSharp.Server.Api;

/// <summary>OpenAI's <c>stream_options</c>, as both completion endpoints take it.</summary>
internal static class StreamOptions
{
    private static readonly HashSet<string> s_fields = ["include_usage", "continuous_usage_stats"];

    /// <summary>Whether a stream ends with a chunk that carries only the usage.</summary>
    public static bool IncludeUsage(RequestFields request) =>
        request.Get("stream_options") is System.Text.Json.JsonElement options && (RequestFields.Of(options, "stream_options", s_fields).Bool("include_usage") ?? false);
}
