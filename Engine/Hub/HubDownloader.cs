using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text.Json;

namespace QwenSharp.Hub;

/// <summary>
/// The Hub's HTTP API as huggingface_hub uses it: <c>GET /api/models/{repo}/revision/{revision}</c> for the commit and its
/// files, <c>GET /{repo}/resolve/{commit}/{file}</c> for a file (large ones redirect to a CDN, and the first answer
/// carries the file's <c>X-Linked-Etag</c>, its SHA-256, and <c>X-Linked-Size</c>). Files go to
/// <c>blobs/{etag}.incomplete</c> first, resume there with a Range request, are checked against their SHA-256 and only
/// then take their blob name, so an interrupted or corrupt download never looks complete.
/// </summary>
internal sealed class HubDownloader : IDisposable
{
    /// <summary>A connection that sends nothing for this long is given up (and the next run resumes).</summary>
    private static readonly TimeSpan s_stall = TimeSpan.FromSeconds(60);

    private readonly HttpClient _http;
    private readonly Uri _endpoint;
    private readonly string? _token;
    private readonly HubCache _cache;
    private readonly IProgress<HubProgress>? _progress;

    public HubDownloader(Uri endpoint, string? token, HubCache cache, IProgress<HubProgress>? progress)
    {
        // Redirects are followed here, so the first answer's headers can be read and the token sent to the Hub only.
        _http = new HttpClient(new SocketsHttpHandler { AllowAutoRedirect = false, AutomaticDecompression = DecompressionMethods.None })
        {
            Timeout = Timeout.InfiniteTimeSpan,
        };
        _http.DefaultRequestHeaders.UserAgent.Add(new ProductInfoHeaderValue("qwensharp", "1.0"));
        _endpoint = endpoint;
        _token = token;
        _cache = cache;
        _progress = progress;
    }

    /// <summary>The commit <paramref name="reference"/>'s revision points at, and the paths of its files.</summary>
    public async Task<(string Commit, string[] Files)> InfoAsync(HubReference reference, CancellationToken cancellationToken)
    {
        var address = new Uri(_endpoint, $"api/models/{reference.Repo}/revision/{Uri.EscapeDataString(reference.Revision)}");
        using HttpResponseMessage response = await SendAsync(address, null, reference, cancellationToken).ConfigureAwait(false);
        byte[] body = await ReadSmallAsync(response, reference, cancellationToken).ConfigureAwait(false);
        try
        {
            using JsonDocument json = JsonDocument.Parse(body);
            string commit = json.RootElement.GetProperty("sha").GetString() ?? "";
            if (!HubCache.IsCommit(commit))
            {
                throw new HubException($"{reference}: {address} gave the commit '{commit}', expected 40 hex digits");
            }

            string[] files = [.. json.RootElement.GetProperty("siblings").EnumerateArray().Select(s => s.GetProperty("rfilename").GetString() ?? "")
                .Where(f => f.Length > 0)];
            return (commit, files);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new HubException($"{reference}: {address} did not answer with the Hub's model JSON ({e.Message})", e);
        }
    }

    /// <summary>Downloads one file of the commit into the cache (unless its blob is there) and links it into the snapshot.</summary>
    public async Task<string> FetchAsync(HubReference reference, string commit, string file, CancellationToken cancellationToken)
    {
        string escaped = string.Join('/', file.Split('/').Select(Uri.EscapeDataString));
        Uri address = new(_endpoint, $"{reference.Repo}/resolve/{commit}/{escaped}");
        HttpResponseMessage response = await SendAsync(address, null, reference, cancellationToken).ConfigureAwait(false);
        try
        {
            string? etag = Header(response, "X-Linked-Etag") ?? response.Headers.ETag?.Tag;
            long? size = long.TryParse(Header(response, "X-Linked-Size"), out long linked) ? linked : response.Content.Headers.ContentLength;
            etag = etag?.Replace("W/", "", StringComparison.Ordinal).Trim('"');
            if (string.IsNullOrEmpty(etag) || etag.IndexOfAny(['/', '\\', '.']) >= 0)
            {
                throw new HubException($"{reference}: {address} gave no usable ETag for '{file}'");
            }

            string blob = _cache.BlobPath(reference.Repo, etag);
            if (!File.Exists(blob))
            {
                Directory.CreateDirectory(Path.GetDirectoryName(blob)!);
                string partial = blob + ".incomplete";
                long have = File.Exists(partial) ? new FileInfo(partial).Length : 0;

                if (size is not long whole || have != whole)
                {
                    // A large file redirects to where its bytes are; that request resumes from what an earlier run left.
                    for (int hops = 0; IsRedirect(response.StatusCode); hops++)
                    {
                        Uri location = response.Headers.Location is { } l ? new Uri(address, l)
                            : throw new HubException($"{reference}: {address} redirected without a Location");
                        if (hops == 5)
                        {
                            throw new HubException($"{reference}: more than 5 redirects fetching '{file}'");
                        }

                        response.Dispose();
                        response = await SendAsync(location, have > 0 ? have : null, reference, cancellationToken).ConfigureAwait(false);
                        address = location;
                    }

                    if (response.StatusCode != HttpStatusCode.PartialContent)
                    {
                        have = 0;
                    }

                    await DownloadAsync(response, partial, have, size, file, cancellationToken).ConfigureAwait(false);
                }

                Verify(partial, etag, size, reference, file);
                File.Move(partial, blob, overwrite: true);
            }

            string linkedPath = _cache.Link(reference.Repo, commit, file, etag);
            _progress?.Report(new HubProgress(file, new FileInfo(blob).Length, size, Done: true));
            return linkedPath;
        }
        finally
        {
            response.Dispose();
        }
    }

    private async Task DownloadAsync(HttpResponseMessage response, string partial, long have, long? size, string file, CancellationToken cancellationToken)
    {
        using var stall = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        await using Stream body = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
        FileStream opened;
        try
        {
            opened = new FileStream(partial, have > 0 ? FileMode.Append : FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true);
        }
        catch (IOException e) when (File.Exists(partial))
        {
            // Another process holds it: two downloads of one file would interleave their bytes.
            throw new HubException($"'{file}' is being downloaded by another process ({partial} is open there); wait for it to finish", e);
        }

        await using FileStream output = opened;
        byte[] buffer = new byte[1 << 20];
        long reported = 0;
        while (true)
        {
            stall.CancelAfter(s_stall);
            int read;
            try
            {
                read = await body.ReadAsync(buffer, stall.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new HubException($"'{file}': nothing arrived for {s_stall.TotalSeconds:F0} s after {have} bytes; run again to resume");
            }
            catch (Exception e) when (e is IOException or HttpRequestException)
            {
                throw new HubException($"'{file}': the download broke off after {have} bytes ({e.Message}); run again to resume", e);
            }

            if (read == 0)
            {
                break;
            }

            await output.WriteAsync(buffer.AsMemory(0, read), cancellationToken).ConfigureAwait(false);
            have += read;
            if (have - reported >= 1 << 24)
            {
                reported = have;
                _progress?.Report(new HubProgress(file, have, size, Done: false));
            }
        }
    }

    /// <summary>The bytes are the file's: its size, and for a large (LFS) file its SHA-256, which is its ETag.</summary>
    private static void Verify(string partial, string etag, long? size, HubReference reference, string file)
    {
        long length = new FileInfo(partial).Length;
        if (size is long expected && length != expected)
        {
            // Short: keep it to resume from. Long: it cannot be this file.
            if (length > expected)
            {
                File.Delete(partial);
            }

            throw new HubException($"{reference}: '{file}' arrived with {length} bytes of {expected}; run again to {(length > expected ? "download it anew" : "resume")}");
        }

        if (etag.Length == 64 && etag.All(char.IsAsciiHexDigit))
        {
            string actual;
            using (FileStream stream = File.OpenRead(partial))
            {
                actual = Convert.ToHexStringLower(SHA256.HashData(stream));
            }

            if (!string.Equals(actual, etag, StringComparison.OrdinalIgnoreCase))
            {
                File.Delete(partial);
                throw new HubException($"{reference}: '{file}' has SHA-256 {actual}, but the Hub says {etag}; the corrupt download was deleted, run again");
            }
        }
    }

    private async Task<HttpResponseMessage> SendAsync(Uri address, long? from, HubReference reference, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, address);
        // The token goes to the Hub only, not to the CDN a large file redirects to.
        if (_token is not null && address.Host == _endpoint.Host && address.Port == _endpoint.Port)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _token);
        }

        if (from is long start)
        {
            request.Headers.Range = new RangeHeaderValue(start, null);
        }

        HttpResponseMessage response;
        using var stall = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        stall.CancelAfter(s_stall);
        try
        {
            response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, stall.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new HubException($"{reference}: {address.GetLeftPart(UriPartial.Authority)} did not answer within {s_stall.TotalSeconds:F0} s");
        }
        catch (HttpRequestException e)
        {
            throw new HubException($"{reference}: could not reach {address.GetLeftPart(UriPartial.Authority)} ({e.Message}); a model already in the cache runs without the network", e);
        }

        if (response.IsSuccessStatusCode || IsRedirect(response.StatusCode))
        {
            return response;
        }

        using (response)
        {
            string? code = Header(response, "X-Error-Code");
            int status = (int)response.StatusCode;
            throw new HubException(response.StatusCode switch
            {
                HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden when code is not ("RepoNotFound" or "RevisionNotFound" or "EntryNotFound") =>
                    $"{reference}: {address.Host} answered {status}: the model is gated or private; accept its terms on its page and set HF_TOKEN to an access token{(_token is null ? "" : " (the token given was refused)")}",
                _ when code == "RevisionNotFound" => $"{reference}: the repository has no revision '{reference.Revision}'",
                HttpStatusCode.NotFound or HttpStatusCode.Unauthorized when code is "RepoNotFound" or null && address.AbsolutePath.StartsWith("/api/", StringComparison.Ordinal) =>
                    $"{reference}: no such model on {_endpoint.GetLeftPart(UriPartial.Authority)} (or it is private: set HF_TOKEN)",
                _ => $"{reference}: {address} answered {status} {response.ReasonPhrase}",
            });
        }
    }

    private static async Task<byte[]> ReadSmallAsync(HttpResponseMessage response, HubReference reference, CancellationToken cancellationToken)
    {
        if (response.Content.Headers.ContentLength > 64 << 20)
        {
            throw new HubException($"{reference}: the Hub's answer is {response.Content.Headers.ContentLength} bytes, too large for a model's description");
        }

        return await response.Content.ReadAsByteArrayAsync(cancellationToken).ConfigureAwait(false);
    }

    private static bool IsRedirect(HttpStatusCode status) => (int)status is >= 300 and < 400;

    private static string? Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out IEnumerable<string>? values) ? values.FirstOrDefault() : null;

    public void Dispose() => _http.Dispose();
}
