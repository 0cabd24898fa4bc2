using System.Globalization;
using System.Runtime.InteropServices;
using QwenSharp.Server;

namespace QwenSharp.Cli.Commands;

/// <summary>
/// <c>qwensharp serve</c>: the OpenAI API (chat and text completions, models, tokenize, health, metrics)
/// over HTTP, many requests sharing the model through continuous batching. Runs until Ctrl+C or SIGTERM,
/// which drain: no new requests, running ones finish (up to --drain seconds), exit 0.
/// </summary>
internal sealed class ServeCommand : ICommand
{
    public string Name => "serve";

    public string Summary => "an OpenAI-compatible HTTP server (/v1/chat/completions, /v1/completions, ...) with continuous batching";

    public string Usage => "qwensharp serve [--model DIR] [--host 127.0.0.1] [--port 8080] [--api-key KEY] [--max-concurrent N] [--context N] [--device D] [--gpu-layers N|auto]";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        ModelLoading.Model,
        new("host", "ADDR", "address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 for every interface)"),
        new("port", "N", "TCP port (default: 8080; 0 picks a free one)"),
        new("api-key", "KEY", "require 'Authorization: Bearer KEY' on every request but /health"),
        new("api-key-file", "F", "the API key from the first line of a file (keeps it out of the process list)"),
        MaxConcurrentSpec,
        ContextSpec,
        new("max-queue", "N", "requests that may wait for a slot; beyond that the answer is 429 (default: 64)"),
        new("timeout", "SECONDS", "longest a request may take, waiting included (default: 600)"),
        new("drain", "SECONDS", "on Ctrl+C, how long running requests may take to finish (default: 30)"),
        new("name", "NAME", "the model id /v1/models lists (default: the model folder's or GGUF file's name)"),
        new("no-prefill-assistant", null, "answer a chat that ends with the assistant's message in a new turn, as vLLM does, instead of continuing that message (llama-server's default; a request's continue_final_message decides for itself)"),
        new("stored-responses", "N", "Responses API answers kept in memory for previous_response_id and GET /v1/responses/ID, the oldest going first past N or 256 MiB (default: 1000; 0: none)"),
        new("slot-save-path", "DIR", "where POST /slots/ID?action=save writes a slot's tokens, keys and values and action=restore reads them back, as llama-server's (made if missing; without it, save and restore are refused)"),
        RerankCommand.TemplateSpec,
        .. RunningSpecs,
    ];

    /// <summary>--slot-save-path as a full path, the folder made if it is missing; null when not given.</summary>
    private static string? SlotSavePathOf(Arguments args)
    {
        if (args.Value("slot-save-path") is not string given)
        {
            return null;
        }

        string full = Path.GetFullPath(given);
        if (File.Exists(full))
        {
            throw new UsageException($"--slot-save-path {given}: is a file; give a folder for the slot files");
        }

        try
        {
            Directory.CreateDirectory(full);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UsageException($"--slot-save-path {given}: cannot make the folder: {e.Message}");
        }

        return full;
    }

    /// <summary>Sequences decoding at once (serve's and batch's).</summary>
    internal static readonly OptionSpec MaxConcurrentSpec = new("max-concurrent", "N", "sequences decoding at once, each with its own KV cache slot (default: 8)");

    /// <summary>Tokens per sequence (serve's and batch's).</summary>
    internal static readonly OptionSpec ContextSpec = new("context", "N", "tokens per sequence, prompt and answer (default: max_position_embeddings, at most 4096)");

    /// <summary>How the served model runs: guesses, a draft model, threads, weights, adapters, cache and device (serve's and batch's).</summary>
    internal static readonly OptionSpec[] RunningSpecs =
    [
        GenerateCommand.PromptLookupSpec,
        ModelLoading.DraftModel,
        ModelLoading.DraftTokens,
        ModelLoading.Threads,
        ModelLoading.BatchInvariant,
        ModelLoading.Quantize,
        ModelLoading.Imatrix,
        ModelLoading.ServeLora,
        ModelLoading.LoraScale,
        ModelLoading.KvCacheType,
        ModelLoading.Attention,
        ModelLoading.Device,
        ModelLoading.GpuLayers,
    ];

    public IReadOnlyList<string> Examples { get; } =
    [
        "qwensharp serve --model ~/models/Qwen2.5-0.5B-Instruct",
        "qwensharp serve --model ~/models/Qwen2.5-0.5B-Instruct --port 9000 --max-concurrent 16 --context 8192",
        "curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' -d '{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}'",
    ];

    public int Run(Arguments args, TextWriter stdout, TextWriter stderr)
    {
        string directory = ModelLoading.ResolveDirectory(args, stderr);
        string device = ModelLoading.CheckDevice(args);
        if (args.Has("api-key") && args.Has("api-key-file"))
        {
            throw new UsageException("give --api-key or --api-key-file, not both");
        }

        string host = args.Value("host") ?? "127.0.0.1";
        if (host != "localhost" && !System.Net.IPAddress.TryParse(host, out _))
        {
            // Kestrel would bind a host name it does not know to every interface: refuse rather than expose the model.
            throw new UsageException($"--host '{host}' is not an IP address: give one such as 127.0.0.1, ::1, 0.0.0.0 or ::, or localhost");
        }

        var options = new ServerOptions
        {
            Host = host,
            Port = args.Int("port", 0, 65535) ?? 8080,
            ApiKey = args.Value("api-key") ?? (args.Value("api-key-file") is string keyFile ? ReadKey(keyFile) : null),
            MaxConcurrent = args.Int("max-concurrent", 1, 1024) ?? 8,
            MaxQueue = args.Int("max-queue", 0, 1_000_000) ?? 64,
            RequestTimeout = TimeSpan.FromSeconds(args.Double("timeout", 0.001, 1e6) ?? 600),
            DrainTimeout = TimeSpan.FromSeconds(args.Double("drain", 0, 1e6) ?? 30),
            ModelName = args.Value("name"),
            PromptLookup = ModelLoading.GuessesFrom(args),
            RerankTemplate = RerankCommand.TemplateOf(args),
            StoredResponses = args.Int("stored-responses", 0, 1_000_000) ?? 1000,
            PrefillAssistant = !args.Flag("no-prefill-assistant"),
            SlotSavePath = SlotSavePathOf(args),
        };
        using QwenModel model = ModelLoading.LoadEngineModel(directory, device, args, stderr, slots: options.MaxConcurrent);
        ModelLoading.SetEmbeddingAttention(model.Model, args);
        if (options.RerankTemplate is not null)
        {
            model.Model.RequireReranker("--rerank-template", directory);
        }

        int context = ServedContext(args, model, device, options.MaxConcurrent);
        options = options with { Context = context };

        using var stop = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true;
            stop.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        using PosixSignalRegistration sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c =>
        {
            c.Cancel = true;
            stop.Cancel();
        });
        try
        {
            QwenServer server;
            try
            {
                server = QwenServer.StartAsync(model, options).GetAwaiter().GetResult();
            }
            catch (IOException e)
            {
                // Kestrel's "address already in use" and friends.
                throw new UsageException($"cannot listen on {options.Host}:{options.Port}: {e.Message}");
            }

            if (options.ApiKey is null && !IsLoopback(options.Host))
            {
                stderr.WriteLine($"note: listening on {options.Host} without --api-key: anyone who can reach this port can use the model");
            }

            for (int i = 0; i < model.AdapterNames.Count; i++)
            {
                stderr.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"qwensharp serve: LoRA adapter {i}: '{model.AdapterNames[i]}' at scale {model.Model.Adapters[i].Scale} ({model.Model.Adapters[i].Path})"));
            }

            stderr.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"qwensharp serve: listening on {server.Address} ({Path.GetFileName(Path.TrimEndingDirectorySeparator(directory))}, {(model.Model.OffloadBackend is null ? device : $"{device} for the last {model.Model.OffloadedLayers} of {model.Model.Config.NumHiddenLayers + 1} layers")}, {(model.Model.IsReranker ? "a classifier of one label: POST /classify, /rerank" : model.Model.Config.IsSequenceClassifier ? "a classifier: POST /classify" : $"{options.MaxConcurrent} slots of {context} tokens")}{(model.Model.KvCacheType == Formats.DType.F32 ? "" : $" in {QwenSharp.Backend.KvCache.NameOf(model.Model.KvCacheType)}")}{(model.DraftDirectory is string draftModel ? $", draft model {Path.GetFileName(Path.TrimEndingDirectorySeparator(draftModel))}" : options.PromptLookup is int draft ? $", prompt lookup of {draft}" : "")}{(args.Flag("batch-invariant") ? ", batch-invariant" : "")}{(options.ApiKey is null ? "" : ", API key required")}); Ctrl+C stops"));
            stop.Token.WaitHandle.WaitOne();
            stderr.WriteLine("qwensharp serve: stopping: finishing running requests");
            server.StopAsync().GetAwaiter().GetResult();
            stderr.WriteLine("qwensharp serve: stopped");
            return CliApp.ExitOk;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    private static bool IsLoopback(string host) =>
        host == "localhost" || (System.Net.IPAddress.TryParse(host, out System.Net.IPAddress? address) && System.Net.IPAddress.IsLoopback(address));

    private static string ReadKey(string path)
    {
        string key = File.ReadLines(path).FirstOrDefault()?.Trim() ?? "";
        return key.Length > 0 ? key : throw new UsageException($"--api-key-file {path}: the first line is empty");
    }

    /// <summary>
    /// The tokens per sequence the server runs (--context, else max_position_embeddings up to 4096), its KV cache for
    /// <paramref name="slots"/> sequences checked against the machine's memory on the CPU (serve's and batch's).
    /// </summary>
    internal static int ServedContext(Arguments args, QwenModel model, string device, int slots)
    {
        int context = ModelLoading.Context(args, model.Model.Config) ?? Math.Min(model.Model.Config.MaxPositionEmbeddings, 4096);
        // A classifier keeps no generation cache (its /classify inputs take an embedding run's own).
        if (device == "cpu" && !model.Model.Config.IsSequenceClassifier)
        {
            CheckKvMemory(model, slots, context);
        }

        return context;
    }

    /// <summary>The KV cache is allocated whole at start: refuse one the machine cannot hold, naming the options that size it.</summary>
    private static void CheckKvMemory(QwenModel model, int slots, int context)
    {
        long bytes = ModelSummary.Of(model.Model).KvBytesPerToken * slots * context;
        long available = HostMemory.Available();
        if (bytes > available)
        {
            throw new UsageException(string.Create(CultureInfo.InvariantCulture,
                $"the KV cache for {slots} slots of {context} tokens needs {InfoCommand.FormatBytes(bytes)} and {InfoCommand.FormatBytes(available)} is available; lower --max-concurrent or --context{SmallerCacheHint(model.Model)}"));
        }
    }

    /// <summary>
    /// The --kv-cache-type that would take less memory, if any: f16 from f32, then q8_0 (about half of f16) and q4_0 (about
    /// half of q8_0) where the backend and heads allow them.
    /// </summary>
    internal static string SmallerCacheHint(Qwen2.Qwen2Model model)
    {
        bool blocks = model.Backend.StoresKvCacheAs(Formats.DType.Q8_0) && model.Backend.StoresKvCacheAs(Formats.DType.Q4_0)
            && QwenSharp.Backend.KvCache.HoldsHeads(Formats.DType.Q8_0, model.Config.HeadDim);
        return model.KvCacheType switch
        {
            Formats.DType.F32 => blocks ? ", or store it in half the memory (--kv-cache-type f16), a quarter (q8_0) or a seventh (q4_0)" : ", or store it in half the memory (--kv-cache-type f16)",
            Formats.DType.F16 or Formats.DType.BF16 when blocks => ", or store it in about half the memory (--kv-cache-type q8_0) or a quarter (q4_0)",
            Formats.DType.Q8_0 when blocks => ", or store it in about half the memory (--kv-cache-type q4_0)",
            _ => "",
        };
    }
}
