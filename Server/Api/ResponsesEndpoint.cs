using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace QwenSharp.Server.Api;

/// <summary>
/// OpenAI's Responses API. <c>POST /v1/responses</c> (also <c>/responses</c>): the request rewritten as the chat
/// completions request it asks for (<see cref="ResponsesRequest"/>) and answered through the same path, in the
/// Responses shapes (<see cref="ResponsesWriter"/>), whole or streamed. A stored response (<see cref="ResponseStore"/>)
/// is read back by <c>GET /v1/responses/{id}</c>, its input items by <c>GET .../input_items</c>, and forgotten by
/// <c>DELETE</c>.
/// </summary>
internal static class ResponsesEndpoint
{
    private static readonly HashSet<string> s_getQuery = ["include", "include[]", "stream", "starting_after", "include_obfuscation"];
    private static readonly HashSet<string> s_listQuery = ["include", "include[]", "limit", "order", "after"];
    private static readonly HashSet<string> s_noQuery = [];

    public static async Task HandleAsync(HttpContext http, ServerState server)
    {
        Jobs.RequireGenerator(server);
        using JsonDocument body = await RequestBody.ReadJsonAsync(http, server.Options.MaxBodyBytes).ConfigureAwait(false);
        ResponsesRequest request = ResponsesRequest.Read(body.RootElement, server.Responses);
        using (request.Chat)
        {
            await ChatCompletionsEndpoint.AnswerAsync(http, server, request.Chat.RootElement,
                (job, model, _) => new ResponsesWriter(http, server, job, model, request)).ConfigureAwait(false);
        }
    }

    /// <summary><c>GET /v1/responses/{id}</c>: the stored response object as it was answered.</summary>
    public static Task GetAsync(HttpContext http, ServerState server)
    {
        IQueryCollection query = RequestQuery.Of(http, s_getQuery);
        if (query.TryGetValue("stream", out var stream) && stream.ToString() != "false")
        {
            throw ApiException.BadField("stream", "'stream': this server keeps a response's object, not its events; get it whole");
        }

        return ResponseJson.WriteAsync(http, 200, Stored(http, server).Json);
    }

    /// <summary><c>DELETE /v1/responses/{id}</c>: forgets a stored response.</summary>
    public static Task DeleteAsync(HttpContext http, ServerState server)
    {
        RequestQuery.Of(http, s_noQuery);
        string id = Stored(http, server).Id;
        server.Responses!.Remove(id);
        return ResponseJson.WriteAsync(http, 200, w =>
        {
            w.WriteStartObject();
            w.WriteString("id", id);
            w.WriteString("object", "response");
            w.WriteBoolean("deleted", true);
            w.WriteEndObject();
        });
    }

    /// <summary>
    /// <c>GET /v1/responses/{id}/input_items</c>: a page of a stored response's input items, newest first unless
    /// <c>order=asc</c>, <c>limit</c> (1 to 100, 20) of them after the item <c>after</c> names.
    /// </summary>
    public static Task InputItemsAsync(HttpContext http, ServerState server)
    {
        IQueryCollection query = RequestQuery.Of(http, s_listQuery);
        StoredResponse stored = Stored(http, server);
        int limit = 20;
        if (query.TryGetValue("limit", out var limitText)
            && (!int.TryParse(limitText.ToString(), NumberStyles.None, CultureInfo.InvariantCulture, out limit) || limit is < 1 or > 100))
        {
            throw ApiException.BadField("limit", $"'limit' is '{limitText}'; it is a whole number from 1 to 100");
        }

        string order = query.TryGetValue("order", out var orderText) ? orderText.ToString() : "desc";
        if (order is not ("asc" or "desc"))
        {
            throw ApiException.BadField("order", $"'order' is '{order}'; it is asc or desc");
        }

        List<JsonElement> items = [.. stored.InputItems];
        if (order == "desc")
        {
            items.Reverse();
        }

        int start = 0;
        if (query.TryGetValue("after", out var after))
        {
            int at = items.FindIndex(i => i.GetProperty("id").GetString() == after.ToString());
            start = at >= 0 ? at + 1 : throw ApiException.BadField("after", $"'after' is '{after}', which is not one of this response's input items");
        }

        JsonElement[] page = [.. items.Skip(start).Take(limit)];
        return ResponseJson.WriteAsync(http, 200, w =>
        {
            w.WriteStartObject();
            w.WriteString("object", "list");
            w.WriteStartArray("data");
            foreach (JsonElement item in page)
            {
                item.WriteTo(w);
            }

            w.WriteEndArray();
            ResponseJson.WriteStringOrNull(w, "first_id", page.Length > 0 ? page[0].GetProperty("id").GetString() : null);
            ResponseJson.WriteStringOrNull(w, "last_id", page.Length > 0 ? page[^1].GetProperty("id").GetString() : null);
            w.WriteBoolean("has_more", start + page.Length < items.Count);
            w.WriteEndObject();
        });
    }

    /// <summary><c>POST /v1/responses/{id}/cancel</c>: only a background response can be cancelled, and none runs here.</summary>
    public static Task CancelAsync(HttpContext http, ServerState server)
    {
        Stored(http, server);
        throw new ApiException(400, "Only responses created with background=true can be cancelled; this server runs none in the background.");
    }

    /// <summary>The stored response the path names; 404 in OpenAI's words when none is kept by that id.</summary>
    private static StoredResponse Stored(HttpContext http, ServerState server)
    {
        string id = http.Request.RouteValues["id"]?.ToString() ?? "";
        if (server.Responses is not ResponseStore store)
        {
            throw new ApiException(404, $"Response with id '{id}' not found: this server keeps no responses (it was started with --stored-responses 0).");
        }

        return store.Find(id) ?? throw new ApiException(404, $"Response with id '{id}' not found.");
    }
}
