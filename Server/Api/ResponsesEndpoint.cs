using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace QwenSharp.Server.Api;

/// <summary>
/// <c>POST /v1/responses</c> (also <c>/responses</c>): OpenAI's Responses API, the request rewritten as the chat
/// completions request it asks for (<see cref="ResponsesRequest"/>) and answered through the same path, in the
/// Responses shapes (<see cref="ResponsesWriter"/>), whole or streamed.
/// </summary>
internal static class ResponsesEndpoint
{
    public static async Task HandleAsync(HttpContext http, ServerState server)
    {
        Jobs.RequireGenerator(server);
        using JsonDocument body = await RequestBody.ReadJsonAsync(http, server.Options.MaxBodyBytes).ConfigureAwait(false);
        ResponsesRequest request = ResponsesRequest.Read(body.RootElement);
        using (request.Chat)
        {
            await ChatCompletionsEndpoint.AnswerAsync(http, server, request.Chat.RootElement,
                (job, model, _) => new ResponsesWriter(http, server, job, model, request)).ConfigureAwait(false);
        }
    }
}
