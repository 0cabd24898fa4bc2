using System.Collections.Concurrent;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace QwenSharp.Tests.Support;

/// <summary>
/// A local stand-in for the Hugging Face Hub's HTTP API, as huggingface_hub sees it (huggingface_hub's file_download.py
/// and the Hub's documented answers): <c>/api/models/{repo}/revision/{rev}</c> gives the commit and its files;
/// <c>/{repo}/resolve/{commit}/{file}</c> answers small files itself with an ETag, and large (LFS) files with a 302 to
/// a CDN address (localhost: another host name) carrying <c>X-Linked-Etag</c> (their SHA-256) and <c>X-Linked-Size</c>. Gated repositories answer
/// 401 without the right token. It can break a download off, or corrupt one, once.
/// </summary>
internal sealed class FakeHub : IAsyncDisposable
{
    public const string Commit = "0123456789abcdef0123456789abcdef01234567";

    private readonly WebApplication _app;
    private readonly ConcurrentDictionary<string, (string Repo, byte[] Bytes)> _blobs = new();

    private FakeHub(WebApplication app, IReadOnlyDictionary<string, IReadOnlyDictionary<string, byte[]>> repos)
    {
        _app = app;
        Repos = repos;
    }

    /// <summary>Each repository's files by path.</summary>
    public IReadOnlyDictionary<string, IReadOnlyDictionary<string, byte[]>> Repos { get; }

    /// <summary>Repositories that answer 401 unless the request carries "Bearer {GatedToken}".</summary>
    public HashSet<string> Gated { get; } = [];

    public string GatedToken { get; } = "hf_sesame";

    /// <summary>The next CDN download stops after this many bytes, its connection aborted.</summary>
    public long? BreakNextAfter { get; set; }

    /// <summary>The next CDN download has one byte changed.</summary>
    public bool CorruptNext { get; set; }

    /// <summary>Every request: method, path, whether it carried a token, its Range header.</summary>
    public ConcurrentQueue<(string Path, bool Token, string? Range)> Requests { get; } = new();

    public Uri Endpoint { get; private set; } = null!;

    public static bool IsLarge(string file) => file.EndsWith(".safetensors", StringComparison.Ordinal) || file.EndsWith(".gguf", StringComparison.Ordinal) || file.EndsWith(".bin", StringComparison.Ordinal);

    public static string Sha256(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    public static async Task<FakeHub> StartAsync(IReadOnlyDictionary<string, IReadOnlyDictionary<string, byte[]>> repos)
    {
        WebApplicationBuilder builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        WebApplication app = builder.Build();
        var hub = new FakeHub(app, repos);
        app.Use(async (context, next) =>
        {
            hub.Requests.Enqueue((context.Request.Path.Value ?? "", context.Request.Headers.Authorization.Count > 0, context.Request.Headers.Range.FirstOrDefault()));
            await next(context);
        });
        app.MapGet("/api/models/{owner}/{name}/revision/{revision}", (string owner, string name, string revision, HttpContext context) =>
        {
            string repo = $"{owner}/{name}";
            if (hub.Refused(repo, context) is IResult refused)
            {
                return refused;
            }

            if (revision is not ("main" or Commit))
            {
                context.Response.Headers["X-Error-Code"] = "RevisionNotFound";
                return Results.NotFound();
            }

            return Results.Json(new { id = repo, sha = Commit, siblings = hub.Repos[repo].Keys.Select(f => new { rfilename = f }).ToArray() });
        });
        app.MapGet("/{owner}/{name}/resolve/{commit}/{**file}", (string owner, string name, string commit, string file, HttpContext context) =>
        {
            string repo = $"{owner}/{name}";
            if (hub.Refused(repo, context) is IResult refused)
            {
                return refused;
            }

            if (commit != Commit || !hub.Repos[repo].TryGetValue(file, out byte[]? bytes))
            {
                context.Response.Headers["X-Error-Code"] = "EntryNotFound";
                return Results.NotFound();
            }

            context.Response.Headers["X-Repo-Commit"] = Commit;
            if (!IsLarge(file))
            {
                context.Response.Headers.ETag = $"\"{Sha256(bytes)[..40]}\"";
                return Results.Bytes(bytes, "application/octet-stream");
            }

            string sha = Sha256(bytes);
            hub._blobs[sha] = (repo, bytes);
            context.Response.Headers["X-Linked-Etag"] = $"\"{sha}\"";
            context.Response.Headers["X-Linked-Size"] = bytes.Length.ToString(System.Globalization.CultureInfo.InvariantCulture);
            context.Response.Headers.ETag = $"\"{sha}\"";
            // Another host name for the same server, as the Hub's CDN is another host: the token must not follow.
            return Results.Redirect($"http://localhost:{context.Connection.LocalPort}/cdn/{sha}");
        });
        app.MapGet("/cdn/{sha}", async (string sha, HttpContext context) =>
        {
            byte[] bytes = hub._blobs[sha].Bytes;
            if (hub.CorruptNext)
            {
                hub.CorruptNext = false;
                bytes = [.. bytes];
                bytes[bytes.Length / 2] ^= 0x40;
            }

            long from = 0;
            if (context.Request.Headers.Range.FirstOrDefault() is string range && range.StartsWith("bytes=", StringComparison.Ordinal) && range.EndsWith('-'))
            {
                from = long.Parse(range[6..^1], System.Globalization.CultureInfo.InvariantCulture);
                context.Response.StatusCode = StatusCodes.Status206PartialContent;
                context.Response.Headers.ContentRange = $"bytes {from}-{bytes.Length - 1}/{bytes.Length}";
            }

            context.Response.ContentLength = bytes.Length - from;
            long end = bytes.Length;
            if (hub.BreakNextAfter is long cut)
            {
                hub.BreakNextAfter = null;
                end = from + cut;
                await context.Response.Body.WriteAsync(bytes.AsMemory((int)from, (int)(end - from)));
                await context.Response.Body.FlushAsync();
                context.Abort();
                return;
            }

            await context.Response.Body.WriteAsync(bytes.AsMemory((int)from, (int)(end - from)));
        });
        await app.StartAsync();
        string address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        hub.Endpoint = new Uri(address + "/");
        return hub;
    }

    private IResult? Refused(string repo, HttpContext context)
    {
        if (!Repos.ContainsKey(repo))
        {
            context.Response.Headers["X-Error-Code"] = "RepoNotFound";
            return Results.StatusCode(401);
        }

        if (Gated.Contains(repo) && context.Request.Headers.Authorization.FirstOrDefault() != $"Bearer {GatedToken}")
        {
            context.Response.Headers["X-Error-Code"] = "GatedRepo";
            return Results.StatusCode(401);
        }

        return null;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
