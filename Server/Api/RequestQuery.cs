using Microsoft.AspNetCore.Http;

namespace QwenSharp.Server.Api;

/// <summary>A GET request's query, refused (400, naming it) when it holds a parameter the path does not take.</summary>
internal static class RequestQuery
{
    public static IQueryCollection Of(HttpContext http, IReadOnlySet<string> known)
    {
        foreach (string name in http.Request.Query.Keys)
        {
            if (!known.Contains(name))
            {
                throw ApiException.BadField(name, known.Count == 0
                    ? $"query parameter '{name}': this path takes none"
                    : $"query parameter '{name}' is not one of {string.Join(", ", known)}");
            }
        }

        return http.Request.Query;
    }
}
