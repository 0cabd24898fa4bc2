namespace QwenSharp.Hub;

/// <summary>Where and how <see cref="HuggingFaceHub"/> finds and downloads models.</summary>
public sealed record HubOptions
{
    /// <summary>The Hub's address: <c>HF_ENDPOINT</c>, else https://huggingface.co (a mirror serves the same API).</summary>
    public Uri? Endpoint { get; init; }

    /// <summary>The cache folder: huggingface_hub's own by default (<c>HF_HUB_CACHE</c>, <c>HF_HOME</c>/hub, ~/.cache/huggingface/hub).</summary>
    public string? CacheDirectory { get; init; }

    /// <summary>An access token for gated and private models: <c>HF_TOKEN</c>, else the token file <c>huggingface-cli login</c> writes.</summary>
    public string? Token { get; init; }

    /// <summary>Never touch the network, only the cache (also with <c>HF_HUB_OFFLINE=1</c>).</summary>
    public bool Offline { get; init; }

    /// <summary>Ask the Hub for the revision's newest commit even when the cache holds one (<c>qwensharp pull</c>).</summary>
    public bool Update { get; init; }

    /// <summary>Told as files download.</summary>
    public IProgress<HubProgress>? Progress { get; init; }

    /// <summary>The endpoint with a closing slash, so a mirror's path prefix (https://host/hf) stays in the addresses made from it.</summary>
    internal Uri EndpointOrDefault
    {
        get
        {
            string endpoint = Endpoint?.ToString() ?? (Environment.GetEnvironmentVariable("HF_ENDPOINT") is { Length: > 0 } variable ? variable : "https://huggingface.co");
            return Uri.TryCreate(endpoint.EndsWith('/') ? endpoint : endpoint + "/", UriKind.Absolute, out Uri? address) && address.Scheme is "http" or "https"
                ? address
                : throw new HubException($"the Hub's address '{endpoint}' (HF_ENDPOINT or HubOptions.Endpoint) is not an http or https address");
        }
    }

    /// <summary>huggingface_hub's reading of HF_HUB_OFFLINE: 1, on, yes or true, in any case.</summary>
    internal bool IsOffline => Offline
        || Environment.GetEnvironmentVariable("HF_HUB_OFFLINE")?.Trim().ToUpperInvariant() is "1" or "ON" or "YES" or "TRUE";

    internal string? TokenOrDefault()
    {
        if (Token is { Length: > 0 } token)
        {
            return token;
        }

        if (Environment.GetEnvironmentVariable("HF_TOKEN") is { Length: > 0 } variable)
        {
            return variable;
        }

        string file = Path.Combine(HubCache.HomeDirectory(), "token");
        return File.Exists(file) && File.ReadAllText(file).Trim() is { Length: > 0 } stored ? stored : null;
    }
}

/// <summary>One file's download so far.</summary>
/// <param name="File">The file's path in the repository.</param>
/// <param name="Bytes">Bytes on disk so far (a resumed download starts where the last one stopped).</param>
/// <param name="Total">The file's size, when the Hub says it.</param>
/// <param name="Done">The file is complete and in the cache.</param>
public readonly record struct HubProgress(string File, long Bytes, long? Total, bool Done);

/// <summary>A model the Hub or the cache cannot give: not found, gated, offline, interrupted or corrupt. The message says which and what to do.</summary>
public sealed class HubException : IOException
{
    public HubException(string message) : base(message)
    {
    }

    public HubException(string message, Exception inner) : base(message, inner)
    {
    }

    public HubException()
    {
    }
}
