using QwenSharp.Hub;
using QwenSharp.Tests.Cli;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Engine;

/// <summary>
/// Models named as on the Hub, against a local stand-in for its API (<see cref="FakeHub"/>): the cache laid out as
/// huggingface_hub lays it out (so each finds the other's downloads), only the files a model needs fetched, GGUF files
/// chosen by tag, downloads resumed and checked, gated and missing models refused with what to do, and the cache used
/// offline.
/// </summary>
public sealed class HuggingFaceHubTests
{
    private const string Folder = "acme/stories";
    private const string GgufRepo = "acme/stories-GGUF";

    private static readonly Lazy<byte[]> s_gguf = new(() => File.ReadAllBytes(GgufFixture.Write(Fixtures.DemoModel)));

    /// <summary>The demo model's files, and files a model repository also holds that QwenSharp must not fetch.</summary>
    private static Dictionary<string, IReadOnlyDictionary<string, byte[]>> Repos()
    {
        var folder = Directory.GetFiles(Fixtures.DemoModel).ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes);
        folder["pytorch_model.bin"] = new byte[1000];
        folder["onnx/model.onnx"] = new byte[100];
        folder["README.md"] = "# stories"u8.ToArray();
        folder["1_Pooling/config.json"] = """{"pooling_mode_lasttoken": true}"""u8.ToArray();
        var gguf = new Dictionary<string, byte[]>
        {
            ["stories-Q4_K_M.gguf"] = s_gguf.Value,
            ["stories-Q8_0.gguf"] = [.. s_gguf.Value],
            ["mmproj-stories-f16.gguf"] = new byte[64],
            ["README.md"] = "# stories GGUF"u8.ToArray(),
        };
        return new() { [Folder] = folder, [GgufRepo] = gguf, ["acme/gated"] = folder };
    }

    private static HubOptions Options(FakeHub hub, string cache, string? token = null, bool offline = false) =>
        new() { Endpoint = hub.Endpoint, CacheDirectory = cache, Token = token, Offline = offline };

    [Fact]
    public async Task EmbeddingModel_FetchesTheModuleFoldersModulesJsonNames_WithADenseModulesWeights()
    {
        // stella_en_1.5B_v5's layout: modules.json names 2_Dense_1024 among several 2_Dense_* sizes, each with a pickle too.
        var module = new EmbeddingTests.DenseModule(64, 24, Bias: true, EmbeddingTests.IdentityActivation, "F32", Seed: 21);
        string weights = Path.Combine(Fixtures.TempDirectory(), "model.safetensors");
        module.WriteWeights(weights);
        var repo = Directory.GetFiles(Fixtures.DemoModel).ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes);
        repo["modules.json"] = """
            [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
             {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
             {"idx": 2, "name": "2", "path": "2_Dense_1024", "type": "sentence_transformers.models.Dense"}]
            """u8.ToArray();
        repo["1_Pooling/config.json"] = """{"pooling_mode_mean_tokens": true}"""u8.ToArray();
        repo["2_Dense_1024/config.json"] = System.Text.Encoding.UTF8.GetBytes(module.Config);
        repo["2_Dense_1024/model.safetensors"] = File.ReadAllBytes(weights);
        repo["2_Dense_1024/pytorch_model.bin"] = new byte[100];
        repo["2_Dense_256/config.json"] = "{}"u8.ToArray();
        repo["2_Dense_256/model.safetensors"] = new byte[100];
        await using FakeHub hub = await FakeHub.StartAsync(new Dictionary<string, IReadOnlyDictionary<string, byte[]>> { ["acme/stella"] = repo });
        string cache = Fixtures.TempDirectory();

        string path = await HuggingFaceHub.ResolveAsync("acme/stella", Options(hub, cache));

        Assert.True(File.Exists(Path.Combine(path, "2_Dense_1024", "model.safetensors")));
        Assert.True(File.Exists(Path.Combine(path, "2_Dense_1024", "config.json")));
        Assert.DoesNotContain(hub.Requests, r => r.Path.Contains("2_Dense_256", StringComparison.Ordinal) || r.Path.EndsWith(".bin", StringComparison.Ordinal));
        using QwenModel fromHub = await QwenModel.LoadAsync("acme/stella", new QwenModelOptions { Hub = Options(hub, cache, offline: true) });
        using QwenModel local = QwenModel.Load(EmbeddingTests.DenseFolder("pooling_mode_mean_tokens", normalize: false, module));
        Assert.Equal(24, fromHub.Model.EmbeddingDimensions);
        Assert.Equal(local.Embed("Once upon a time"), fromHub.Embed("Once upon a time"));

        // The listing counts the Dense module's weights among the model's bytes.
        CachedModel listed = Assert.Single(HuggingFaceHub.ListCached(Options(hub, cache)));
        Assert.Equal(repo.Where(f => !f.Key.Contains("2_Dense_256", StringComparison.Ordinal) && !f.Key.EndsWith(".bin", StringComparison.Ordinal)).Sum(f => (long)f.Value.Length), listed.Bytes);
    }

    [Fact]
    public async Task FolderModel_DownloadsWhatItNeeds_IntoHuggingFaceHubsLayout_ThenRunsFromTheCacheOffline()
    {
        await using FakeHub hub = await FakeHub.StartAsync(Repos());
        string cache = Fixtures.TempDirectory();

        string path = await HuggingFaceHub.ResolveAsync(Folder, Options(hub, cache));

        string repo = Path.Combine(cache, "models--acme--stories");
        Assert.Equal(Path.Combine(repo, "snapshots", FakeHub.Commit), path);
        Assert.Equal(FakeHub.Commit, File.ReadAllText(Path.Combine(repo, "refs", "main")));
        foreach ((string file, byte[] bytes) in hub.Repos[Folder])
        {
            string linked = Path.Combine(path, file);
            if (file is "pytorch_model.bin" or "onnx/model.onnx" or "README.md")
            {
                Assert.False(File.Exists(linked), $"{file} was fetched");
                continue;
            }

            // Each file is a relative link to blobs/{etag}: large files' SHA-256, small files' ETag.
            string etag = FakeHub.IsLarge(file) ? FakeHub.Sha256(bytes) : FakeHub.Sha256(bytes)[..40];
            var info = new FileInfo(linked);
            Assert.Equal(Path.Combine(file.Contains('/') ? "../../.." : "../..", "blobs", etag), info.LinkTarget);
            Assert.Equal(bytes, File.ReadAllBytes(linked));
        }

        Assert.DoesNotContain(hub.Requests, r => r.Path.EndsWith(".bin", StringComparison.Ordinal) || r.Path.EndsWith(".onnx", StringComparison.Ordinal) || r.Path.EndsWith(".md", StringComparison.Ordinal));
        Assert.Contains(hub.Requests, r => r.Path.EndsWith("/1_Pooling/config.json", StringComparison.Ordinal));

        // Again, offline: the cache answers without a request.
        int requests = hub.Requests.Count;
        Assert.Equal(path, await HuggingFaceHub.ResolveAsync(Folder, Options(hub, cache, offline: true)));
        Assert.Equal(requests, hub.Requests.Count);

        var greedy = new TextGenerationOptions { Sampling = new() { Temperature = 0 }, MaxNewTokens = 12 };
        using QwenModel ours = await QwenModel.LoadAsync(Folder, new QwenModelOptions { Hub = Options(hub, cache, offline: true) });
        using QwenModel demo = QwenModel.Load(Fixtures.DemoModel);
        Assert.Equal((await demo.GenerateBatchAsync(["Once upon a time"], greedy))[0].Ids, (await ours.GenerateBatchAsync(["Once upon a time"], greedy))[0].Ids);
    }

    [Fact]
    public async Task LoraAdapterRepository_IsDownloadedAndApplied_AndListedAsAnAdapter()
    {
        // A PEFT adapter repository: adapter_config.json and adapter_model.safetensors, no config.json.
        string peft = RandomLoraAdapter.Make(QwenSharp.Qwen2.Qwen2Config.Load(Path.Combine(Fixtures.DemoModel, "config.json")), 4, 8, 21, QwenSharp.Lora.LoraTargets.All, null)
            .WritePeft(Path.Combine(Fixtures.TempDirectory(), "peft"));
        var adapter = Directory.GetFiles(peft).ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes);
        adapter["README.md"] = "# a LoRA"u8.ToArray();
        await using FakeHub hub = await FakeHub.StartAsync(new Dictionary<string, IReadOnlyDictionary<string, byte[]>> { ["acme/stories-lora"] = adapter });
        string cache = Fixtures.TempDirectory();

        using QwenModel model = await QwenModel.LoadAsync(Fixtures.DemoModel,
            new QwenModelOptions { Hub = Options(hub, cache), LoraAdapters = [new LoraAdapterOptions("acme/stories-lora")] });

        string snapshot = Path.Combine(cache, "models--acme--stories-lora", "snapshots", FakeHub.Commit);
        Assert.Equal(snapshot, Assert.Single(model.Model.Adapters).Path);
        Assert.False(File.Exists(Path.Combine(snapshot, "README.md")));
        CachedModel listed = Assert.Single(HuggingFaceHub.ListCached(Options(hub, cache)));
        Assert.Equal("acme/stories-lora", listed.Name);
        Assert.Contains("a LoRA adapter (PEFT): give it to --lora", listed.Unsupported);
    }

    [Fact]
    public async Task CacheHuggingFaceCliWrote_IsFoundWithoutTheNetwork()
    {
        // huggingface_hub's layout, made by hand: refs/main names the commit, the snapshot links to blobs.
        string cache = Fixtures.TempDirectory();
        string repo = Path.Combine(cache, "models--Qwen--Qwen2.5-0.5B-Instruct");
        string commit = "7ae557604adf67be50417f59c2c2f167def9a775";
        string snapshot = Path.Combine(repo, "snapshots", commit);
        Directory.CreateDirectory(snapshot);
        Directory.CreateDirectory(Path.Combine(repo, "blobs"));
        Directory.CreateDirectory(Path.Combine(repo, "refs"));
        File.WriteAllText(Path.Combine(repo, "refs", "main"), commit);
        foreach (string file in Directory.GetFiles(Fixtures.DemoModel))
        {
            string blob = Path.Combine(repo, "blobs", FakeHub.Sha256(File.ReadAllBytes(file)));
            File.Copy(file, blob, overwrite: true);
            File.CreateSymbolicLink(Path.Combine(snapshot, Path.GetFileName(file)), Path.Combine("..", "..", "blobs", Path.GetFileName(blob)));
        }

        var options = new HubOptions { CacheDirectory = cache, Offline = true, Endpoint = new Uri("http://127.0.0.1:9/") };
        Assert.Equal(snapshot, await HuggingFaceHub.ResolveAsync("Qwen/Qwen2.5-0.5B-Instruct", options));
        Assert.Equal(snapshot, await HuggingFaceHub.ResolveAsync("hf.co/Qwen/Qwen2.5-0.5B-Instruct", options));
        Assert.Equal(snapshot, await HuggingFaceHub.ResolveAsync($"Qwen/Qwen2.5-0.5B-Instruct@{commit}", options));

        var e = await Assert.ThrowsAsync<HubException>(() => HuggingFaceHub.ResolveAsync("Qwen/Qwen2.5-7B-Instruct", options));
        Assert.Equal($"Qwen/Qwen2.5-7B-Instruct: not in the Hugging Face cache {cache}, and offline (HF_HUB_OFFLINE=1 or HubOptions.Offline) forbids downloading it", e.Message);
    }

    [Fact]
    public async Task GgufRepository_TheTagChoosesTheFile_ElseQ4KM_AndAnUnknownTagListsTheTags()
    {
        await using FakeHub hub = await FakeHub.StartAsync(Repos());
        string cache = Fixtures.TempDirectory();

        Assert.Equal("stories-Q4_K_M.gguf", Path.GetFileName(await HuggingFaceHub.ResolveAsync(GgufRepo, Options(hub, cache))));
        string q8 = await HuggingFaceHub.ResolveAsync(GgufRepo + ":q8_0", Options(hub, cache));
        Assert.Equal("stories-Q8_0.gguf", Path.GetFileName(q8));
        Assert.Equal(q8, await HuggingFaceHub.ResolveAsync(GgufRepo + ":Q8_0", Options(hub, cache, offline: true)));
        Assert.DoesNotContain(hub.Requests, r => r.Path.Contains("mmproj", StringComparison.Ordinal) || r.Path.EndsWith(".md", StringComparison.Ordinal));

        var e = await Assert.ThrowsAsync<HubException>(() => HuggingFaceHub.ResolveAsync(GgufRepo + ":Q5_K_M", Options(hub, cache)));
        Assert.Equal($"{GgufRepo}:Q5_K_M: the repository has no GGUF file tagged Q5_K_M; name one as {GgufRepo}:TAG with a tag of Q4_K_M, Q8_0", e.Message);

        using QwenModel model = QwenModel.Load(q8);
        Assert.NotEmpty((await model.GenerateBatchAsync(["Once upon a time"], new TextGenerationOptions { MaxNewTokens = 4 }))[0].Ids);
    }

    [Fact]
    public async Task SplitGguf_EveryPartIsDownloaded_TheFirstIsLoaded_AndItIsListedOnce()
    {
        // The demo model in three parts by ggml's own writer (as llama-gguf-split writes them), tagged Q8_0, beside a whole Q4_K_M.
        string whole = GgufFixture.Write(Fixtures.DemoModel);
        int tensors;
        using (var file = QwenSharp.Formats.Gguf.GgufFile.Open(whole))
        {
            tensors = file.TensorOrder.Count;
        }

        string[] parts = Ggml.SplitAsGgufSplit(whole, Path.Combine(Fixtures.TempDirectory(), "stories-Q8_0"), (tensors + 2) / 3);
        Assert.Equal(3, parts.Length);
        var repo = parts.ToDictionary(p => "Q8_0/" + Path.GetFileName(p), File.ReadAllBytes);
        repo["stories-Q4_K_M.gguf"] = s_gguf.Value;
        var broken = new Dictionary<string, byte[]>(repo);
        broken.Remove("Q8_0/stories-Q8_0-00002-of-00003.gguf");
        Dictionary<string, IReadOnlyDictionary<string, byte[]>> repos = Repos();
        repos["acme/split-GGUF"] = repo;
        repos["acme/broken-GGUF"] = broken;
        repos["acme/only-GGUF"] = parts.ToDictionary(p => Path.GetFileName(p), File.ReadAllBytes);
        await using FakeHub hub = await FakeHub.StartAsync(repos);
        string cache = Fixtures.TempDirectory();

        string first = await HuggingFaceHub.ResolveAsync("acme/split-GGUF:Q8_0", Options(hub, cache));
        Assert.Equal("stories-Q8_0-00001-of-00003.gguf", Path.GetFileName(first));
        Assert.Equal(3, hub.Requests.Count(r => r.Path.Contains("/resolve/", StringComparison.Ordinal) && r.Path.Contains("-of-00003.gguf", StringComparison.Ordinal)));
        Assert.Equal(first, await HuggingFaceHub.ResolveAsync("acme/split-GGUF:Q8_0", Options(hub, cache, offline: true)));
        using (QwenModel model = QwenModel.Load(first))
        {
            Assert.NotEmpty((await model.GenerateBatchAsync(["Once upon a time"], new TextGenerationOptions { MaxNewTokens = 4 }))[0].Ids);
        }

        // A repository holding one split model and nothing else needs no tag.
        Assert.Equal("stories-Q8_0-00001-of-00003.gguf", Path.GetFileName(await HuggingFaceHub.ResolveAsync("acme/only-GGUF", Options(hub, cache))));

        CachedModel listed = Assert.Single(HuggingFaceHub.ListCached(Options(hub, cache)), m => m.Name == "acme/split-GGUF:Q8_0");
        Assert.Equal(parts.Sum(p => new FileInfo(p).Length), listed.Bytes);
        Assert.Null(listed.Unsupported);

        // A part lost from the cache: listed as such, and not taken for the model offline.
        File.Delete(Path.Combine(Path.GetDirectoryName(first)!, "stories-Q8_0-00003-of-00003.gguf"));
        CachedModel partial = Assert.Single(HuggingFaceHub.ListCached(Options(hub, cache)), m => m.Name == "acme/split-GGUF:Q8_0");
        Assert.Equal("1 of its 3 parts are not downloaded (Q8_0/stories-Q8_0-00003-of-00003.gguf, ...): pull it again", partial.Unsupported);
        await Assert.ThrowsAsync<HubException>(() => HuggingFaceHub.ResolveAsync("acme/split-GGUF:Q8_0", Options(hub, cache, offline: true)));

        var e = await Assert.ThrowsAsync<HubException>(() => HuggingFaceHub.ResolveAsync("acme/broken-GGUF:Q8_0", Options(hub, cache)));
        Assert.Equal("acme/broken-GGUF:Q8_0: Q8_0/stories-Q8_0-00001-of-00003.gguf is the first of 3 parts of a split model, and the repository lacks Q8_0/stories-Q8_0-00002-of-00003.gguf", e.Message);
    }

    [Fact]
    public async Task BrokenDownload_IsResumedWithARange_AndACorruptOneIsDeleted()
    {
        await using FakeHub hub = await FakeHub.StartAsync(Repos());
        string cache = Fixtures.TempDirectory();
        long size = s_gguf.Value.Length;

        hub.BreakNextAfter = size / 3;
        var broken = await Assert.ThrowsAsync<HubException>(() => HuggingFaceHub.ResolveAsync(GgufRepo + ":Q8_0", Options(hub, cache)));
        Assert.Contains("run again to resume", broken.Message, StringComparison.Ordinal);
        string blobs = Path.Combine(cache, "models--acme--stories-GGUF", "blobs");
        // What arrived before the connection was aborted (the server's last buffered bytes may not have) is kept.
        long kept = new FileInfo(Path.Combine(blobs, FakeHub.Sha256(s_gguf.Value) + ".incomplete")).Length;
        Assert.InRange(kept, 1, size / 3);
        Assert.False(File.Exists(Path.Combine(cache, "models--acme--stories-GGUF", "refs", "main")));

        string path = await HuggingFaceHub.ResolveAsync(GgufRepo + ":Q8_0", Options(hub, cache));
        Assert.Contains(hub.Requests, r => r.Range == $"bytes={kept}-");
        Assert.Equal(s_gguf.Value, File.ReadAllBytes(path));

        // A corrupt download fails its SHA-256 and leaves nothing behind that looks complete.
        string other = Fixtures.TempDirectory();
        hub.CorruptNext = true;
        var corrupt = await Assert.ThrowsAsync<HubException>(() => HuggingFaceHub.ResolveAsync(GgufRepo + ":Q8_0", Options(hub, other)));
        Assert.Contains($"'stories-Q8_0.gguf' has SHA-256 ", corrupt.Message, StringComparison.Ordinal);
        Assert.Contains($"but the Hub says {FakeHub.Sha256(s_gguf.Value)}; the corrupt download was deleted", corrupt.Message, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFiles(Path.Combine(other, "models--acme--stories-GGUF", "blobs")));
        Assert.False(Directory.Exists(Path.Combine(other, "models--acme--stories-GGUF", "snapshots")));
    }

    [Fact]
    public async Task ADownloadAnotherProcessHolds_IsNotInterleaved()
    {
        await using FakeHub hub = await FakeHub.StartAsync(Repos());
        string cache = Fixtures.TempDirectory();
        string blobs = Directory.CreateDirectory(Path.Combine(cache, "models--acme--stories-GGUF", "blobs")).FullName;
        string partial = Path.Combine(blobs, FakeHub.Sha256(s_gguf.Value) + ".incomplete");
        using (var held = new FileStream(partial, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            held.Write(s_gguf.Value, 0, 1000);
            held.Flush();
            var e = await Assert.ThrowsAsync<HubException>(() => HuggingFaceHub.ResolveAsync(GgufRepo + ":Q8_0", Options(hub, cache)));
            Assert.Equal($"'stories-Q8_0.gguf' is being downloaded by another process ({partial} is open there); wait for it to finish", e.Message);
        }

        // Once it is let go, the next run resumes from its 1000 bytes.
        Assert.Equal(s_gguf.Value, File.ReadAllBytes(await HuggingFaceHub.ResolveAsync(GgufRepo + ":Q8_0", Options(hub, cache))));
        Assert.Contains(hub.Requests, r => r.Range == "bytes=1000-");
    }

    [Fact]
    public async Task GatedAndMissingModels_SayWhatToDo_AndTheTokenGoesToTheHubOnly()
    {
        await using FakeHub hub = await FakeHub.StartAsync(Repos());
        hub.Gated.Add("acme/gated");
        string cache = Fixtures.TempDirectory();

        var gated = await Assert.ThrowsAsync<HubException>(() => HuggingFaceHub.ResolveAsync("acme/gated", Options(hub, cache)));
        Assert.Equal("acme/gated: 127.0.0.1 answered 401: the model is gated or private; accept its terms on its page and set HF_TOKEN to an access token", gated.Message);

        var missing = await Assert.ThrowsAsync<HubException>(() => HuggingFaceHub.ResolveAsync("acme/nothing", Options(hub, cache)));
        Assert.Equal($"acme/nothing: no such model on {hub.Endpoint.GetLeftPart(UriPartial.Authority)} (or it is private: set HF_TOKEN)", missing.Message);

        var revision = await Assert.ThrowsAsync<HubException>(() => HuggingFaceHub.ResolveAsync("acme/stories@v9", Options(hub, cache)));
        Assert.Equal("acme/stories@v9: the repository has no revision 'v9'", revision.Message);

        hub.Requests.Clear();
        await HuggingFaceHub.ResolveAsync("acme/gated", Options(hub, cache, token: hub.GatedToken));
        Assert.All(hub.Requests.Where(r => !r.Path.StartsWith("/cdn/", StringComparison.Ordinal)), r => Assert.True(r.Token, r.Path));
        Assert.All(hub.Requests.Where(r => r.Path.StartsWith("/cdn/", StringComparison.Ordinal)), r => Assert.False(r.Token, r.Path));
        Assert.Contains(hub.Requests, r => r.Path.StartsWith("/cdn/", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct", "main", null)]
    [InlineData("hf.co/bartowski/Qwen2.5-7B-Instruct-GGUF:Q4_K_M", "bartowski/Qwen2.5-7B-Instruct-GGUF", "main", "Q4_K_M")]
    [InlineData("https://huggingface.co/Qwen/Qwen2-VL-2B-Instruct@refs/pr/3", "Qwen/Qwen2-VL-2B-Instruct", "refs/pr/3", null)]
    [InlineData("acme/x@v1.0:Q8_0", "acme/x", "v1.0", "Q8_0")]
    public void Reference_ReadsRepoRevisionAndTag(string text, string repo, string revision, string? tag)
    {
        Assert.True(HubReference.TryParse(text, out HubReference? reference));
        Assert.Equal(new HubReference(repo, revision, tag), reference);
    }

    [Theory]
    [InlineData("models/stories260K/")]
    [InlineData("./acme/x")]
    [InlineData("/abs/path")]
    [InlineData("model.gguf")]
    [InlineData("a--b/c")]
    [InlineData("a/b/c")]
    [InlineData("")]
    public void Reference_PathsAreNotReferences(string text) => Assert.False(HubReference.TryParse(text, out _));

    [Fact]
    public async Task Cli_PullThenModelByName_RunsAsTheFolderDoes_AndAnUnreachableHubIsOneLine()
    {
        await using FakeHub hub = await FakeHub.StartAsync(Repos());
        string cache = Fixtures.TempDirectory();
        var environment = new Dictionary<string, string> { ["HF_ENDPOINT"] = hub.Endpoint.ToString(), ["HF_HUB_CACHE"] = cache };

        CliRunner.Result pulled = CliRunner.RunProcess(environment, "pull", Folder);
        Assert.True(pulled.ExitCode == 0, pulled.Stderr);
        Assert.Equal(Path.Combine(cache, "models--acme--stories", "snapshots", FakeHub.Commit), pulled.Stdout.Trim());
        Assert.Contains("downloaded model.safetensors (", pulled.Stderr, StringComparison.Ordinal);

        // models lists what --model takes by name: the folder, one entry per GGUF file fetched, and a repository of another
        // architecture with why it cannot run.
        Assert.Equal(0, CliRunner.RunProcess(environment, "pull", GgufRepo + ":Q8_0").ExitCode);
        string bert = Path.Combine(cache, "models--acme--bert", "snapshots", FakeHub.Commit);
        Directory.CreateDirectory(bert);
        File.WriteAllText(Path.Combine(bert, "config.json"), """{"model_type": "bert", "hidden_size": 8}""");
        File.WriteAllBytes(Path.Combine(bert, "model.safetensors"), new byte[16]);
        CliRunner.Result listed = CliRunner.RunProcess(environment, "models", "--json");
        Assert.True(listed.ExitCode == 0, listed.Stderr);
        Assert.Equal(cache, listed.Json.GetProperty("cache").GetString());
        var models = listed.Json.GetProperty("models").EnumerateArray().ToDictionary(m => m.GetProperty("name").GetString()!);
        Assert.Equal(["acme/bert", "acme/stories", "acme/stories-GGUF:Q8_0"], models.Keys);
        Assert.Equal(pulled.Stdout.Trim(), models["acme/stories"].GetProperty("path").GetString());
        Assert.Equal(s_gguf.Value.Length, models["acme/stories-GGUF:Q8_0"].GetProperty("bytes").GetInt64());
        Assert.Equal(System.Text.Json.JsonValueKind.Null, models["acme/stories"].GetProperty("unsupported").ValueKind);
        Assert.StartsWith("config.json: model_type 'bert' is not supported", models["acme/bert"].GetProperty("unsupported").GetString(), StringComparison.Ordinal);

        environment["HF_HUB_OFFLINE"] = "1";
        string[] generate = ["generate", "--prompt", "Once upon a time", "--max-new-tokens", "12", "--greedy", "--json"];
        CliRunner.Result byName = CliRunner.RunProcess(environment, [.. generate, "--model", Folder]);
        CliRunner.Result byFolder = CliRunner.Run([.. generate, "--model", Fixtures.DemoModel]);
        Assert.True(byName.ExitCode == 0, byName.Stderr);
        Assert.Equal(byFolder.Json.GetProperty("sequences")[0].GetProperty("ids").GetRawText(), byName.Json.GetProperty("sequences")[0].GetProperty("ids").GetRawText());

        environment["HF_HUB_OFFLINE"] = "0";
        environment["HF_ENDPOINT"] = "ftp://mirror";
        Assert.Equal("qwensharp generate: error: --model acme/typo: no such folder or file here, and from the Hugging Face Hub: the Hub's address 'ftp://mirror' (HF_ENDPOINT or HubOptions.Endpoint) is not an http or https address",
            CliRunner.RunProcess(environment, [.. generate, "--model", "acme/typo"]).ErrorLines.Single());

        environment["HF_ENDPOINT"] = "http://127.0.0.1:9/";
        CliRunner.Result unreachable = CliRunner.RunProcess(environment, [.. generate, "--model", "acme/typo"]);
        Assert.Equal(2, unreachable.ExitCode);
        Assert.Single(unreachable.ErrorLines);
        Assert.StartsWith("qwensharp generate: error: --model acme/typo: no such folder or file here, and from the Hugging Face Hub: acme/typo: could not reach http://127.0.0.1:9 (", unreachable.ErrorLines[0], StringComparison.Ordinal);
    }
}
