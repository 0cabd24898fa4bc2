namespace QwenSharp.Hub;

/// <summary>
/// Models named as on the Hugging Face Hub (<c>Qwen/Qwen2.5-0.5B-Instruct</c>,
/// <c>Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q8_0</c>), found in huggingface_hub's cache or downloaded into it, so what
/// transformers, vLLM or <c>huggingface-cli</c> fetched before runs as it is, and what QwenSharp fetches they find.
/// </summary>
public static class HuggingFaceHub
{
    /// <summary>
    /// Whether <paramref name="model"/> names a Hub model rather than a path: no such folder or file exists, and it reads
    /// as owner/name.
    /// </summary>
    public static bool IsReference(string model) =>
        !Directory.Exists(model) && !File.Exists(model) && HubReference.TryParse(model, out _);

    /// <summary>
    /// The local path of <paramref name="model"/>: the snapshot folder of a folder model, or the GGUF file its tag chooses.
    /// The cache answers first, without the network; a model not there is downloaded (unless offline), and
    /// <see cref="HubOptions.Update"/> asks the Hub for the revision's newest commit first.
    /// </summary>
    public static async Task<string> ResolveAsync(string model, HubOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (!HubReference.TryParse(model, out HubReference? reference))
        {
            throw new ArgumentException($"'{model}' is not a Hugging Face model name (owner/name, optionally @revision and :TAG)", nameof(model));
        }

        options ??= new HubOptions();
        var cache = new HubCache(options.CacheDirectory ?? HubCache.DefaultRoot());
        if (!options.Update && Cached(cache, reference) is string cached)
        {
            return cached;
        }

        if (options.IsOffline)
        {
            throw new HubException($"{reference}: not in the Hugging Face cache {cache.Root}, and offline (HF_HUB_OFFLINE=1 or HubOptions.Offline) forbids downloading it");
        }

        using var downloader = new HubDownloader(options.EndpointOrDefault, options.TokenOrDefault(), cache, options.Progress);
        (string commit, string[] files) = await downloader.InfoAsync(reference, cancellationToken).ConfigureAwait(false);
        string[] wanted;
        string? gguf = null;
        if (reference.Tag is not null || (!files.Any(f => f.EndsWith(".safetensors", StringComparison.Ordinal)) && files.Any(HubFiles.IsGguf)))
        {
            wanted = HubFiles.ChooseGguf(files, reference.Tag, reference.ToString());
            gguf = wanted[0];
        }
        else
        {
            wanted = [.. files.Where(HubFiles.IsFolderModelFile)];
            if (!HasFolderModel(wanted))
            {
                throw new HubException($"{reference}: the repository has no config.json (or a LoRA adapter's adapter_config.json) with *.safetensors weights, and no GGUF files (QwenSharp reads those; PyTorch .bin weights are not read)");
            }
        }

        string snapshot = cache.SnapshotFolder(reference.Repo, commit);
        if (gguf is null && wanted.Contains(Qwen2.EmbeddingConfig.ModulesFileName))
        {
            // modules.json first, to learn which module folders (a Dense module's weights among them) the model runs.
            string modules = Path.Combine(snapshot, Qwen2.EmbeddingConfig.ModulesFileName);
            if (!File.Exists(modules))
            {
                await downloader.FetchAsync(reference, commit, Qwen2.EmbeddingConfig.ModulesFileName, cancellationToken).ConfigureAwait(false);
            }

            HashSet<string> folders = [.. Qwen2.EmbeddingConfig.ModuleFolders(modules)];
            wanted = [.. wanted.Union(files.Where(f => HubFiles.IsNamedModuleFile(f, folders)), StringComparer.Ordinal)];
        }

        // config.json comes last: a snapshot that has it holds the whole model, so an interrupted download is resumed, not run.
        wanted = [.. wanted.OrderBy(IsCompletionMarker)];
        foreach (string file in wanted)
        {
            if (!File.Exists(Path.Combine(snapshot, file)))
            {
                await downloader.FetchAsync(reference, commit, file, cancellationToken).ConfigureAwait(false);
            }
        }

        cache.WriteRef(reference.Repo, reference.Revision, commit);
        return gguf is null ? snapshot : Path.Combine(snapshot, gguf);
    }

    /// <summary>
    /// The models in the cache QwenSharp can be given: each repository's snapshot of <c>main</c> (else its newest), as a
    /// folder model (config.json beside *.safetensors) or one entry per GGUF file, with what it takes on disk and why it
    /// cannot run where its config says so (another architecture). Repositories with neither are left out.
    /// </summary>
    public static IReadOnlyList<CachedModel> ListCached(HubOptions? options = null)
    {
        var cache = new HubCache((options ?? new HubOptions()).CacheDirectory ?? HubCache.DefaultRoot());
        var models = new List<CachedModel>();
        if (!Directory.Exists(cache.Root))
        {
            return models;
        }

        foreach (string folder in Directory.EnumerateDirectories(cache.Root, "models--*").Order(StringComparer.Ordinal))
        {
            string[] parts = Path.GetFileName(folder)["models--".Length..].Split("--");
            string snapshots = Path.Combine(folder, "snapshots");
            if (parts.Length != 2 || !Directory.Exists(snapshots))
            {
                continue;
            }

            string repo = $"{parts[0]}/{parts[1]}";
            string? commit = cache.CommitOf(repo, "main")
                ?? Directory.EnumerateDirectories(snapshots).OrderByDescending(Directory.GetLastWriteTimeUtc).Select(Path.GetFileName).FirstOrDefault();
            if (commit is null)
            {
                continue;
            }

            string snapshot = cache.SnapshotFolder(repo, commit);
            string[] files = SnapshotFiles(snapshot);
            if (HasFolderModel(files))
            {
                HashSet<string> modules = ModuleFoldersOrNone(snapshot);
                long bytes = files.Where(f => HubFiles.IsFolderModelFile(f) || HubFiles.IsNamedModuleFile(f, modules)).Sum(f => SizeOf(Path.Combine(snapshot, f)));
                string? unsupported = files.Contains("config.json")
                    ? Unsupported(Path.Combine(snapshot, "config.json"))
                    : "a LoRA adapter (PEFT): give it to --lora, with its base model as --model";
                models.Add(new CachedModel(repo, commit, snapshot, bytes, unsupported));
            }

            foreach (string gguf in files.Where(f => HubFiles.IsGguf(f) && !HubFiles.IsLaterPart(f)).Order(StringComparer.Ordinal))
            {
                string tag = HubFiles.TagOf(gguf);
                string[] split = HubFiles.PartsOf(gguf);
                string[] here = [.. split.Where(files.Contains)];
                models.Add(new CachedModel($"{repo}:{tag}", commit, Path.Combine(snapshot, gguf), here.Sum(p => SizeOf(Path.Combine(snapshot, p))),
                    here.Length == split.Length ? null : $"{split.Length - here.Length} of its {split.Length} parts are not downloaded ({split.First(p => !here.Contains(p))}, ...): pull it again"));
            }
        }

        return models;
    }

    /// <summary>The bytes of a snapshot's file: its blob's, through the link (a link's own length is its target's name).</summary>
    private static long SizeOf(string path) => (File.ResolveLinkTarget(path, returnFinalTarget: true) as FileInfo ?? new FileInfo(path)).Length;

    /// <summary>Why a folder's config.json cannot run here (its first line), or null.</summary>
    private static string? Unsupported(string config)
    {
        try
        {
            Qwen2.Qwen2Config.Load(config);
            return null;
        }
        catch (Exception e) when (e is NotSupportedException or InvalidDataException or IOException)
        {
            return e.Message;
        }
    }

    /// <summary>The module folders the snapshot's modules.json names (a Dense module's weights count as the model's); none without one, or when it cannot be read.</summary>
    private static HashSet<string> ModuleFoldersOrNone(string snapshot)
    {
        string modules = Path.Combine(snapshot, Qwen2.EmbeddingConfig.ModulesFileName);
        try
        {
            return File.Exists(modules) ? [.. Qwen2.EmbeddingConfig.ModuleFolders(modules)] : [];
        }
        catch (Exception e) when (e is InvalidDataException or IOException)
        {
            // Loading the model says what is wrong with it; the listing only sizes it.
            return [];
        }
    }

    /// <summary>A snapshot's files, as paths in the repository ('/' between folders).</summary>
    private static string[] SnapshotFiles(string snapshot) =>
        [.. Directory.EnumerateFiles(snapshot, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(snapshot, f).Replace('\\', '/'))];

    /// <summary>config.json beside *.safetensors: a Hugging Face folder model; or adapter_config.json beside them: a PEFT LoRA adapter.</summary>
    private static bool HasFolderModel(string[] files) =>
        files.Any(IsCompletionMarker) && files.Any(f => f.EndsWith(".safetensors", StringComparison.Ordinal));

    /// <summary>The file fetched last, whose presence says the snapshot is whole: a model's config.json, an adapter's adapter_config.json.</summary>
    private static bool IsCompletionMarker(string file) => file is "config.json" or "adapter_config.json";

    /// <summary>Every shard model.safetensors.index.json names is in the snapshot (or there is no index).</summary>
    private static bool ShardsPresent(string snapshot, string[] files)
    {
        string index = Path.Combine(snapshot, "model.safetensors.index.json");
        if (!File.Exists(index))
        {
            return true;
        }

        try
        {
            using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(index));
            return json.RootElement.GetProperty("weight_map").EnumerateObject().All(e => files.Contains(e.Value.GetString()));
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or KeyNotFoundException or InvalidOperationException)
        {
            // The loader names what is wrong with the index.
            return true;
        }
    }

    /// <summary>The cached snapshot's model, when it is complete enough to load: a GGUF file the tag chooses, or config.json beside weights.</summary>
    private static string? Cached(HubCache cache, HubReference reference)
    {
        if (cache.CommitOf(reference.Repo, reference.Revision) is not string commit)
        {
            return null;
        }

        string snapshot = cache.SnapshotFolder(reference.Repo, commit);
        string[] files = SnapshotFiles(snapshot);
        bool folderModel = HasFolderModel(files) && ShardsPresent(snapshot, files);
        if (reference.Tag is null && folderModel)
        {
            return snapshot;
        }

        try
        {
            // Without a tag the cache holds what an earlier run chose: Q4_K_M, or a repository's only file.
            return files.Any(HubFiles.IsGguf) ? Path.Combine(snapshot, HubFiles.ChooseGguf(files, reference.Tag, reference.ToString())[0]) : null;
        }
        catch (HubException)
        {
            // The tag names a file this snapshot lacks: ask the Hub.
            return null;
        }
    }
}

/// <summary>A model in the Hugging Face cache (<see cref="HuggingFaceHub.ListCached"/>).</summary>
/// <param name="Name">What --model takes: owner/name, or owner/name:TAG for one GGUF file.</param>
/// <param name="Commit">The snapshot's commit.</param>
/// <param name="Path">The snapshot folder, or the GGUF file.</param>
/// <param name="Bytes">What its files take on disk.</param>
/// <param name="Unsupported">Why QwenSharp cannot run it (its config's first complaint), or null.</param>
public sealed record CachedModel(string Name, string Commit, string Path, long Bytes, string? Unsupported);
