using System.Buffers;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace QwenSharp.Server.Api;

/// <summary>A request body read whole (up to the server's limit) and parsed as strict JSON.</summary>
internal static class RequestBody
{
    /// <summary>Deeper than any real request: a deeper body is an attack or a bug, refused before it costs anything.</summary>
    private const int MaxDepth = 64;

    public static async Task<JsonDocument> ReadJsonAsync(HttpContext http, long maxBytes)
    {
        if (http.Request.ContentLength > maxBytes)
        {
            throw new ApiException(413, $"the body is {http.Request.ContentLength} bytes; this server takes at most {maxBytes}", "body", "body_too_large");
        }

        if (http.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
        {
            limit.MaxRequestBodySize = maxBytes;
        }

        var buffer = new ArrayBufferWriter<byte>();
        try
        {
            while (true)
            {
                Memory<byte> memory = buffer.GetMemory(64 * 1024);
                int read = await http.Request.Body.ReadAsync(memory, http.RequestAborted).ConfigureAwait(false);
                if (read == 0)
                {
                    break;
                }

                buffer.Advance(read);
                if (buffer.WrittenCount > maxBytes)
                {
                    throw new ApiException(413, $"the body is larger than this server's limit of {maxBytes} bytes", "body", "body_too_large");
                }
            }
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            throw new ApiException(413, $"the body is larger than this server's limit of {maxBytes} bytes", "body", "body_too_large");
        }

        if (buffer.WrittenCount == 0)
        {
            throw new ApiException(400, "the request has no body; send a JSON object", "body", "invalid_json");
        }

        try
        {
            return JsonDocument.Parse(buffer.WrittenMemory, new JsonDocumentOptions { MaxDepth = MaxDepth });
        }
        catch (JsonException e)
        {
            // The reader's message names the line and byte; invalid UTF-8, NaN and too deep nesting all land here.
            throw new ApiException(400, $"the body is not valid JSON: {e.Message}", "body", "invalid_json");
        }
    }
}
