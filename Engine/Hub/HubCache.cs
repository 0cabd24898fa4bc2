namespace QwenSharp.Hub;

/// <summary>
/// The Hugging Face cache on disk, laid out as <c>huggingface_hub</c> lays it out, so models downloaded by
/// <c>huggingface-cli</c>, transformers or vLLM are found here and ours are found there:
/// <code>
///   {root}/models--{owner}--{name}/refs/{revision}          the commit a branch or tag pointed at
///   {root}/models--{owner}--{name}/blobs/{etag}             each file's bytes, named by its ETag (LFS: its SHA-256)
///   {root}/models--{owner}--{name}/snapshots/{commit}/{file} a link to its blob
/// </code>
/// The root is <c>HF_HUB_CACHE</c>, else <c>HF_HOME</c>/hub, else <c>XDG_CACHE_HOME</c>/huggingface/hub, else
/// ~/.cache/huggingface/hub, as huggingface_hub chooses it.
/// </summary>
internal sealed class HubCache(string root)
{
    public string Root { get; } = root;

    public static string DefaultRoot()
    {
        if (Environment.GetEnvironmentVariable("HF_HUB_CACHE") is { Length: > 0 } hubCache)
        {
            return hubCache;
        }

        return Path.Combine(HomeDirectory(), "hub");
    }

    /// <summary>HF_HOME, else XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface: where the token file lives too.</summary>
    public static string HomeDirectory() =>
        Environment.GetEnvironmentVariable("HF_HOME") is { Length: > 0 } home ? home
        : Path.Combine(Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache"), "huggingface");

    public string RepoFolder(string repo) => Path.Combine(Root, "models--" + repo.Replace("/", "--", StringComparison.Ordinal));

    public string SnapshotFolder(string repo, string commit) => Path.Combine(RepoFolder(repo), "snapshots", commit);

    public string BlobPath(string repo, string etag) => Path.Combine(RepoFolder(repo), "blobs", etag);

    /// <summary>The commit <paramref name="revision"/> names in the cache: a commit that has a snapshot, or what refs/ says; null when neither.</summary>
    public string? CommitOf(string repo, string revision)
    {
        if (IsCommit(revision))
        {
            return Directory.Exists(SnapshotFolder(repo, revision)) ? revision : null;
        }

        string reference = Path.Combine(RepoFolder(repo), "refs", revision);
        if (!File.Exists(reference))
        {
            return null;
        }

        string commit = File.ReadAllText(reference).Trim();
        return IsCommit(commit) && Directory.Exists(SnapshotFolder(repo, commit)) ? commit : null;
    }

    public void WriteRef(string repo, string revision, string commit)
    {
        if (revision == commit)
        {
            return;
        }

        string reference = Path.Combine(RepoFolder(repo), "refs", revision);
        Directory.CreateDirectory(Path.GetDirectoryName(reference)!);
        File.WriteAllText(reference, commit);
    }

    /// <summary>
    /// Puts <paramref name="file"/> of the snapshot in place as a relative link to its blob (a copy where links cannot be
    /// made, as huggingface_hub does on Windows without developer mode).
    /// </summary>
    public string Link(string repo, string commit, string file, string etag)
    {
        string target = Path.Combine(SnapshotFolder(repo, commit), file);
        Directory.CreateDirectory(Path.GetDirectoryName(target)!);
        string blob = BlobPath(repo, etag);
        if (File.Exists(target) || Directory.Exists(target))
        {
            File.Delete(target);
        }

        try
        {
            File.CreateSymbolicLink(target, Path.GetRelativePath(Path.GetDirectoryName(target)!, blob));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or PlatformNotSupportedException)
        {
            File.Copy(blob, target);
        }

        return target;
    }

    /// <summary>A 40-digit lowercase hex commit hash.</summary>
    public static bool IsCommit(string revision) => revision.Length == 40 && revision.All(char.IsAsciiHexDigitLower);
}
