using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace QwenSharp.Server.Api;

/// <summary>
/// <c>POST /v1/messages</c>: Anthropic's Messages API, the request rewritten as the chat completions request it asks for
/// (<see cref="AnthropicRequest"/>) and answered through the same path in Anthropic's shapes (<see cref="AnthropicWriter"/>),
/// whole or streamed; <c>POST /v1/messages/count_tokens</c> gives the prompt's tokens. Errors on these paths take
/// Anthropic's error shape, and an <c>x-api-key</c> header stands for the bearer token, as Anthropic's clients send it.
/// </summary>
internal static class AnthropicEndpoint
{
    public const string Path = "/v1/messages";

    /// <summary>Whether <paramref name="http"/> is a request to the Messages API (whose errors take its shape).</summary>
    public static bool Handles(HttpContext http) => http.Request.Path.StartsWithSegments(Path, StringComparison.Ordinal);

    public static async Task MessagesAsync(HttpContext http, ServerState server)
    {
        Jobs.RequireGenerator(server);
        using JsonDocument body = await RequestBody.ReadJsonAsync(http, server.Options.MaxBodyBytes).ConfigureAwait(false);
        using JsonDocument chat = AnthropicRequest.ToChat(body.RootElement);
        await ChatCompletionsEndpoint.AnswerAsync(http, server, chat.RootElement, (job, model, _) => new AnthropicWriter(http, job, model)).ConfigureAwait(false);
    }

    public static async Task CountTokensAsync(HttpContext http, ServerState server)
    {
        using JsonDocument body = await RequestBody.ReadJsonAsync(http, server.Options.MaxBodyBytes).ConfigureAwait(false);
        using JsonDocument chat = AnthropicRequest.ToChat(body.RootElement, countOnly: true);
        int tokens = ChatCompletionsEndpoint.PromptTokens(server, chat.RootElement);
        await ResponseJson.WriteAsync(http, 200, w =>
        {
            w.WriteStartObject();
            w.WriteNumber("input_tokens", tokens);
            w.WriteEndObject();
        }).ConfigureAwait(false);
    }
}
