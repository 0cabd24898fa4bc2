using System.Globalization;
using QwenSharp.Backend;
using QwenSharp.Cpu;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;
using QwenSharp.Generation;
using QwenSharp.Memory;
using QwenSharp.Qwen2;
using QwenSharp.Sampling;

namespace QwenSharp.Cli.Commands;

/// <summary>
/// <c>qwensharp bench</c>: prefill and decode tokens/s, warm-up excluded, on a real model or on random
/// weights of any config's shape.
/// </summary>
internal sealed class BenchCommand : ICommand
{
    public string Name => "bench";

    public string Summary => "prefill and decode speed (tokens/s), on a model or random weights of a config's shape";

    public string Usage => "qwensharp bench (--model DIR | --config config.json --random-weights [--dtype bf16|f16|f32] | --memory) [--prompt-tokens N] [--new-tokens N] [--batch N] [--sample] [--prompt-lookup N | --draft-model PATH [--draft-tokens N]] [--threads N] [--device D] [--json]";

    public IReadOnlyList<OptionSpec> Options { get; } =
    [
        ModelLoading.Model,
        new("config", "FILE", "a config.json to build a same-shaped model from (with --random-weights)"),
        new("random-weights", null, "use random weights instead of a checkpoint (needs --config)"),
        new("dtype", "bf16|f16|f32", "weight type of the random weights (default bf16)"),
        new("prompt-tokens", "N", "prompt length for the prefill measurement (default 512)"),
        new("prompt-lookup", "N", "decode with prompt lookup, up to N guesses a step (as generate --prompt-lookup; with --serve, as serve --prompt-lookup); the weights' GB/s then follow the steps, fewer than the tokens"),
        ModelLoading.DraftModel,
        ModelLoading.DraftTokens,
        new("new-tokens", "N", "tokens for the decode measurement (default 64)"),
        new("batch", "N", "sequences decoded together, each in its own KV-cache slot (default 1); tokens/s count all of them"),
        new("sample", null, "choose the decoded tokens by sampling, not greedily, with the model's generation_config.json settings (temperature, top-k, top-p, repetition penalty; transformers' defaults where it has none: temperature 1, top-k 50) and a fixed seed: what a token's choice costs counted in; with --serve, every request asks for those settings"),
        new("memory", null, "measure the machine's read bandwidth only (1 thread and all threads), the bound on CPU decode"),
        new("serve", "N,N,...", "load-test the HTTP server: total tokens/s and time to first token at these numbers of concurrent streams (e.g. 1,4,16,64)"),
        new("rounds", "N", "measurements, each figure the median of its rounds: prefill and decode, each decode between two measurements of the read bandwidth (default 1); with --serve, rounds over the stream counts, interleaved (default 3)"),
        new("json", null, "print JSON: {\"prefill_tokens_per_s\",\"decode_tokens_per_s\",...}"),
        ModelLoading.Threads,
        ModelLoading.BatchInvariant,
        ModelLoading.Quantize,
        ModelLoading.Imatrix,
        ModelLoading.Lora,
        ModelLoading.LoraScale,
        ModelLoading.KvCacheType,
        ModelLoading.Device,
        ModelLoading.GpuLayers,
    ];

    public IReadOnlyList<string> Examples { get; } =
    [
        "qwensharp bench --config Qwen2.5-0.5B-Instruct/config.json --random-weights --dtype bf16",
        "qwensharp bench --model ~/models/Qwen2.5-0.5B-Instruct --threads 2 --json",
        "qwensharp bench --config Qwen2.5-7B-Instruct/config.json --random-weights --device gpu",
        "qwensharp bench --config Qwen2.5-0.5B-Instruct/config.json --random-weights --serve 1,4,16,64 --prompt-tokens 64 --new-tokens 64",
    ];

    public int Run(Arguments args, TextWriter stdout, TextWriter stderr)
    {
        int threads = args.Int("threads", 1, 1024) ?? Environment.ProcessorCount;
        if (args.Flag("memory"))
        {
            return RunMemory(args, threads, stdout);
        }

        int? givenPrompt = args.Int("prompt-tokens", 1), givenNew = args.Int("new-tokens", 1);
        if (args.Value("serve") is string serve)
        {
            if (args.Has("draft-model"))
            {
                throw new UsageException("--draft-model does not apply to --serve (bench the server with serve --draft-model)");
            }

            return RunServe(args, Arguments.ParseIds("serve", serve), givenPrompt ?? 64, givenNew ?? 64, stdout, stderr);
        }

        int batch = args.Int("batch", 1, 256) ?? 1;
        int rounds = args.Int("rounds", 1, 100) ?? 1;
        string? draftPath = ModelLoading.DraftPath(args, stderr);
        (IBackend backend, Qwen2Model model) = Load(args, stderr, (givenPrompt ?? 512) + (givenNew ?? 64) + 2, batch);
        using (backend)
        using (model)
        using (Qwen2Model? draftWeights = draftPath is null ? null : Qwen2Model.Load(draftPath, backend))
        using (DraftModel? drafter = draftWeights is null ? null : new DraftModel(draftWeights))
        {
            (int promptTokens, int newTokens) = FitToContext(model.Config.MaxPositionEmbeddings, givenPrompt, givenNew, stderr);
            int context = promptTokens + newTokens;
            var random = new Random(1234);
            int[][] prompts = [.. Enumerable.Range(0, batch).Select(_ => Enumerable.Range(0, promptTokens).Select(_ => random.Next(model.Config.VocabSize)).ToArray())];

            // With a draft model its guesses are checked as lookup's are (the GB/s below count the model's weights only).
            PromptLookup? lookup = ModelLoading.LookupFrom(args, drafter is not null);

            // Greedy, or with --sample drawn with the model's settings (seeded: the same tokens every round).
            SamplingOptions sampling = args.Flag("sample") ? SampledSettings(model) with { Seed = 1234 } : SamplingOptions.Greedy;

            // Warm-up, not measured: every kernel runs often enough here for the JIT to finish optimizing it.
            Generator.Generate(model, [.. prompts.Select(p => p[..Math.Min(32, promptTokens)])],
                new GenerationOptions { MaxNewTokens = Math.Min(16, newTokens + 1), IgnoreEos = true, PromptLookup = lookup, DraftModel = drafter, Sampling = sampling });

            // The bound the decode figure is set against, measured in the same run (on the CPU backend's threads) just
            // before and just after each round's decode: on a shared host the read bandwidth drifts by tens of percent
            // within minutes, and one measurement taken after a decode of several seconds set it against whichever way
            // the host had moved. With rounds, each decode is set against the measurements either side of it and the
            // share is the median of those ratios, which a drift between rounds does not move.
            bool bounded = backend is Cpu.CpuBackend && model.OffloadBackend is null && newTokens > 0;    // (a split model's GB/s have no one bound)
            ModelSummary summary = ModelSummary.Of(model);
            var reads = new List<double>();
            var results = new List<GenerationResult>();
            if (bounded)
            {
                reads.Add(Cpu.MemoryBandwidth.Measure(threads));
            }

            for (int round = 0; round < rounds; round++)
            {
                // The first new token comes from the prefill pass; the next newTokens come from decode steps.
                results.Add(Generator.Generate(model, prompts, new GenerationOptions
                {
                    MaxNewTokens = newTokens + 1, IgnoreEos = true, Context = context + 1, PromptLookup = lookup, DraftModel = drafter, Sampling = sampling,
                }));
                if (bounded && results[^1].DecodeTokens > 0)
                {
                    reads.Add(Cpu.MemoryBandwidth.Measure(threads));
                }
            }

            // The round of median decode speed gives the figures below; its prefill is that of the median prefill round.
            GenerationResult result = Median(results, r => r.DecodeTokensPerSecond);
            double prefillTokensPerSecond = Median(results, r => r.PrefillTokensPerSecond).PrefillTokensPerSecond;

            // A decode step reads the weights once for the whole batch: weight traffic follows steps, not tokens. A step
            // with prompt lookup chooses one token per sequence and one more per guess taken.
            double steps = StepsOf(result, batch);
            double stepsPerSecond = steps / Math.Max(result.DecodeTime.TotalSeconds, 1e-9);
            double gbPerSecond = summary.DecodeBytesPerToken * stepsPerSecond / 1e9;
            string dtype = summary.TensorsByDType[0].DType;
            bool decoded = result.DecodeTokens > 0;
            double[] roundGbPerSecond = [.. results.Select(r => summary.DecodeBytesPerToken * StepsOf(r, batch) / Math.Max(r.DecodeTime.TotalSeconds, 1e-9) / 1e9)];
            double[] shares = bounded && decoded && reads.Count == results.Count + 1
                ? [.. roundGbPerSecond.Select((gb, i) => gb / ((reads[i] + reads[i + 1]) / 2))]
                : [];
            double before = shares.Length > 0 ? reads[0] : 0, after = shares.Length > 0 ? reads[^1] : 0;
            double? share = shares.Length > 0 ? MedianOf(shares) : null;
            double? bound = shares.Length == 0 ? null : rounds == 1 ? (before + after) / 2 : MedianOf([.. reads]);

            // How much of the weights decode streams sits on 2 MiB pages (Linux): a file read into the page cache before
            // this run keeps the small pages it came in on (Core/Memory/HugePages.cs).
            (long Resident, long Huge)? pages = backend is Gpu.VulkanBackend ? null
                : HugePages.Residency([.. ModelSummary.TensorsOf(model).Select(t => (t.Data, t.ByteLength))]);

            // A Qwen2-VL model: a picture through the processor and the vision tower, against the text prefill's GFLOP/s.
            double prefillGflops = VisionBench.TextPrefillFlops(model.Config, promptTokens, batch) * prefillTokensPerSecond / (promptTokens * batch) / 1e9;
            VisionBenchResult? vision = model.Vision is null ? null : VisionBench.Measure(model, prefillGflops, newTokens);
            if (args.Flag("json"))
            {
                JsonOutput.Write(stdout, w =>
                {
                    w.WriteStartObject();
                    w.WriteNumber("prefill_tokens_per_s", Math.Round(prefillTokensPerSecond, 3));
                    w.WriteNumber("decode_tokens_per_s", Math.Round(result.DecodeTokensPerSecond, 3));
                    w.WriteNumber("decode_tokens_per_s_per_sequence", Math.Round(result.DecodeTokensPerSecond / batch, 3));
                    w.WriteNumber("prompt_tokens", promptTokens);
                    w.WriteNumber("batch", batch);
                    w.WriteBoolean("sampled", !sampling.IsGreedy);
                    w.WriteNumber("rounds", rounds);
                    w.WriteNumber("new_tokens", result.DecodeTokens / batch);
                    w.WriteNumber("new_tokens_total", result.DecodeTokens);
                    if (lookup is not null)
                    {
                        w.WriteNumber("lookup_drafted", result.LookupTokens.Drafted);
                        w.WriteNumber("lookup_accepted", result.LookupTokens.Accepted);
                        w.WriteNumber("decode_steps", steps);
                    }

                    w.WriteString("dtype", dtype);
                    w.WriteNumber("parameters", summary.Parameters);
                    w.WriteNumber("decode_bytes_per_token", summary.DecodeBytesPerToken);
                    if (pages is (long resident, long huge))
                    {
                        w.WriteNumber("weights_resident_bytes", resident);
                        w.WriteNumber("weights_huge_page_bytes", huge);
                    }

                    w.WriteNumber("weights_repacked_bytes", backend is CpuBackend cpu ? cpu.RepackedBytes : 0);
                    w.WriteNumber("decode_gb_per_s", Math.Round(gbPerSecond, 3));
                    if (bound is double read && share is double fraction)
                    {
                        w.WriteNumber("memory_read_gb_per_s", Math.Round(read, 3));
                        w.WriteNumber("memory_read_gb_per_s_before", Math.Round(before, 3));
                        w.WriteNumber("memory_read_gb_per_s_after", Math.Round(after, 3));
                        w.WriteNumber("decode_fraction_of_read_bandwidth", Math.Round(fraction, 4));
                        WriteArray(w, "memory_read_gb_per_s_measured", reads);
                        WriteArray(w, "decode_gb_per_s_by_round", roundGbPerSecond);
                        WriteArray(w, "decode_fraction_of_read_bandwidth_by_round", shares);
                    }

                    w.WriteNumber("prefill_gflop_per_s", Math.Round(prefillGflops, 3));
                    if (vision is not null)
                    {
                        w.WriteStartObject("vision");
                        w.WriteNumber("width", vision.Width);
                        w.WriteNumber("height", vision.Height);
                        w.WriteNumber("patches", vision.Patches);
                        w.WriteNumber("image_tokens", vision.ImageTokens);
                        w.WriteNumber("preprocess_s", Math.Round(vision.PreprocessSeconds, 6));
                        w.WriteNumber("encoder_s", Math.Round(vision.EncoderSeconds, 6));
                        w.WriteNumber("encoder_gflop", Math.Round(vision.EncoderGflops, 3));
                        w.WriteNumber("matmul_gflop_per_s", Math.Round(vision.MatmulGflopPerSecond, 3));
                        w.WriteNumber("matmul_fraction_of_prefill", Math.Round(vision.MatmulFractionOfPrefill, 4));
                        w.WriteNumber("preprocess_fraction_of_encoder", Math.Round(vision.PreprocessFraction, 4));
                        w.WriteNumber("prompt_tokens", vision.PromptTokens);
                        w.WriteNumber("prompt_prefill_tokens_per_s", Math.Round(vision.PromptPrefillTokensPerSecond, 3));
                        w.WriteNumber("decode_tokens_per_s", Math.Round(vision.DecodeTokensPerSecond, 3));
                        w.WriteEndObject();
                    }

                    w.WriteString("backend", model.Placement);
                    if (model.OffloadBackend is not null)
                    {
                        w.WriteNumber("gpu_layers", model.OffloadedLayers);
                    }

                    w.WriteString("kv_cache_type", KvCache.NameOf(model.KvCacheType));
                    w.WriteNumber("vector_bits", InfoCommand.VectorBits(backend));
                    w.WriteString("cpu", CpuIdentity.Describe());
                    if ((model.OffloadBackend ?? backend) is Gpu.VulkanBackend gpu)
                    {
                        w.WriteNumber("device_memory_bytes", gpu.AllocatedBytes);
                        w.WriteNumber("last_step_dispatches", gpu.LastStep.Dispatches);
                        w.WriteNumber("last_step_barriers", gpu.LastStep.Barriers);
                    }

                    w.WriteEndObject();
                });
            }
            else
            {
                var c = CultureInfo.InvariantCulture;
                stdout.WriteLine(string.Create(c, $"model    {model.Config.Architecture ?? model.Config.ModelType}, {summary.Parameters / 1e6:F1} M parameters, {dtype}"));
                stdout.WriteLine($"backend  {model.Placement} ({InfoCommand.VectorText(model)}){(model.KvCacheType == DType.F32 ? "" : $", KV cache {KvCache.NameOf(model.KvCacheType)}")}");
                stdout.WriteLine($"cpu      {CpuIdentity.Describe()}");
                string ofRounds = rounds > 1 ? $" (medians of {rounds} rounds)" : "";
                stdout.WriteLine(string.Create(c, $"prefill  {promptTokens * batch} tokens in {promptTokens * batch / prefillTokensPerSecond:F3} s: {prefillTokensPerSecond:F2} tokens/s{ofRounds}"));
                if (decoded)
                {
                    string perSequence = batch > 1 ? string.Create(c, $" in all, {batch} sequences of {result.DecodeTokens / batch} ({result.DecodeTokensPerSecond / batch:F2} tokens/s each)") : "";
                    perSequence += sampling.IsGreedy ? "" : $", sampled ({SamplingText(sampling)})";
                    perSequence += lookup is null ? "" : string.Create(c, $"; {steps:F0} steps, {result.LookupTokens.Accepted} of {result.LookupTokens.Drafted} {(drafter is null ? "looked-up" : "drafted")} guesses taken");
                    stdout.WriteLine(string.Create(c, $"decode   {result.DecodeTokens} tokens in {result.DecodeTime.TotalSeconds:F3} s: {result.DecodeTokensPerSecond:F2} tokens/s{perSequence}{ofRounds}"));
                    string threadsText = $"{threads} thread{(threads == 1 ? "" : "s")}";
                    string ofBound = bound is not double read || share is not double fraction ? ""
                        : rounds == 1 ? string.Create(c, $", {100 * fraction:F0}% of the {read:F1} GB/s this machine reads ({threadsText}; {before:F1} before, {after:F1} after)")
                        : string.Create(c, $", {100 * fraction:F0}% of what this machine reads ({threadsText}; the median of the rounds' shares, each of the reads either side of it: {string.Join(", ", shares.Select(x => (100 * x).ToString("F0", c) + "%"))}; reads {string.Join(", ", reads.Select(x => x.ToString("F1", c)))} GB/s)");
                    stdout.WriteLine(string.Create(c, $"         {InfoCommand.FormatBytes(summary.DecodeBytesPerToken)} of weights per decode step: {gbPerSecond:F2} GB/s{ofBound}"));
                    if (pages is (long resident, long huge) && resident > 0)
                    {
                        stdout.WriteLine(string.Create(c, $"         {100.0 * huge / resident:F0}% of the weights' {InfoCommand.FormatBytes(resident)} in memory on 2 MiB pages"));
                    }

                    if (backend is CpuBackend { RepackedBytes: > 0 } cpu)
                    {
                        stdout.WriteLine($"         {InfoCommand.FormatBytes(cpu.RepackedBytes)} of matrices repacked at load (panels for steps of several rows; where this CPU pairs them, Q4_K and Q5_K rows for decode), besides them (QWENSHARP_REPACK=0: none)");
                    }
                    if (backend is Gpu.VulkanBackend vulkan)
                    {
                        stdout.WriteLine($"         a decode step is one submit of {vulkan.LastStep.Dispatches} dispatches and {vulkan.LastStep.Barriers} barriers");
                    }
                }

                stdout.WriteLine(string.Create(c, $"         prefill runs its matmuls and attention at {prefillGflops:F1} GFLOP/s"));
                if (vision is not null)
                {
                    stdout.WriteLine(string.Create(c, $"vision   {vision.Width}x{vision.Height} picture, {vision.Patches} patches -> {vision.ImageTokens} tokens: preprocessing {vision.PreprocessSeconds * 1e3:F1} ms ({100 * vision.PreprocessFraction:F1}% of the encoder), encoder {vision.EncoderSeconds:F3} s"));
                    stdout.WriteLine(string.Create(c, $"         {vision.EncoderGflops:F1} GFLOP; its matmuls at {vision.MatmulGflopPerSecond:F1} GFLOP/s, {100 * vision.MatmulFractionOfPrefill:F0}% of the text prefill's"));
                    stdout.WriteLine(string.Create(c, $"         a prompt of {vision.PromptTokens} tokens around it: prefill {vision.PromptPrefillTokensPerSecond:F2} tokens/s, decode {vision.DecodeTokensPerSecond:F2} tokens/s"));
                }
            }
        }

        return 0;
    }

    /// <summary>Decode steps per sequence: each chose one token, and one more for every looked-up guess it took.</summary>
    private static double StepsOf(GenerationResult result, int batch) => (double)(result.DecodeTokens - result.LookupTokens.Accepted) / batch;

    /// <summary>bench --serve: the server under load at each number of concurrent streams (Cli/ServeBench.cs).</summary>
    private static int RunServe(Arguments args, int[] streamCounts, int promptTokens, int newTokens, TextWriter stdout, TextWriter stderr)
    {
        if (streamCounts.Length == 0 || streamCounts.Any(n => n is < 1 or > 1024))
        {
            throw new UsageException("--serve takes numbers of concurrent streams from 1 to 1024, such as 1,4,16,64");
        }

        if (args.Has("batch"))
        {
            throw new UsageException("--batch does not apply to --serve (the stream counts are the batches)");
        }

        int rounds = args.Int("rounds", 1, 100) ?? 3;
        (IBackend backend, Qwen2Model model) = Load(args, stderr, promptTokens + newTokens + 2, streamCounts.Max());
        using (backend)
        using (model)
        {
            if (promptTokens + newTokens + 1 > model.Config.MaxPositionEmbeddings)
            {
                throw new UsageException($"--prompt-tokens {promptTokens} + --new-tokens {newTokens} exceed the model's context of {model.Config.MaxPositionEmbeddings}");
            }

            Tokenization.Tokenizer tokenizer = BenchTokenizer(args, stderr);
            stderr.WriteLine($"serve bench: {promptTokens}-token prompts, {newTokens} new tokens per stream, {rounds} round(s) over {string.Join(", ", streamCounts)} streams ({model.Placement})");
            int? lookup = GenerateCommand.PromptLookupFrom(args);
            IReadOnlyList<ServeBench.Level> levels = ServeBench.Run(model, tokenizer, streamCounts, promptTokens, newTokens, rounds, lookup, args.Flag("sample") ? SampledSettings(model) : null, stderr);
            ServeBench.Level one = levels.FirstOrDefault(l => l.Streams == 1) ?? levels[0];
            if (args.Flag("json"))
            {
                JsonOutput.Write(stdout, w =>
                {
                    w.WriteStartObject();
                    w.WriteString("backend", model.Placement);
                    w.WriteNumber("prompt_tokens", promptTokens);
                    w.WriteNumber("new_tokens", newTokens);
                    w.WriteNumber("rounds", rounds);
                    w.WriteStartArray("levels");
                    foreach (ServeBench.Level level in levels)
                    {
                        w.WriteStartObject();
                        w.WriteNumber("streams", level.Streams);
                        WriteIfFinite(w, "tokens_per_s", level.TokensPerSecond);
                        WriteIfFinite(w, "speedup_over_first", level.TokensPerSecond / one.TokensPerSecond);
                        WriteIfFinite(w, "decode_tokens_per_s", level.DecodeTokensPerSecond);
                        WriteIfFinite(w, "decode_speedup_over_first", level.DecodeTokensPerSecond / one.DecodeTokensPerSecond);
                        WriteIfFinite(w, "steady_decode_tokens_per_s", level.SteadyDecodeTokensPerSecond);
                        WriteIfFinite(w, "steady_decode_speedup_over_first", level.SteadyDecodeTokensPerSecond / one.SteadyDecodeTokensPerSecond);
                        w.WriteNumber("first_token_p50_s", Math.Round(level.FirstTokenP50, 4));
                        w.WriteNumber("first_token_p99_s", Math.Round(level.FirstTokenP99, 4));
                        if (lookup is not null)
                        {
                            w.WriteNumber("lookup_drafted", level.Guessed);
                            w.WriteNumber("lookup_accepted", level.Taken);
                        }

                        w.WriteEndObject();
                    }

                    w.WriteEndArray();
                    w.WriteEndObject();
                });
            }
            else
            {
                var c = CultureInfo.InvariantCulture;
                stdout.WriteLine($"backend  {model.Placement}, {promptTokens}-token prompts, {newTokens} new tokens per stream, medians of {rounds} round(s)");
                stdout.WriteLine("streams   tokens/s   vs first   decode tokens/s   vs first   all decoding   vs first   first token p50     p99   (n+1) x first of 1");
                foreach (ServeBench.Level level in levels)
                {
                    // A stream's first token waits for the prompts queued before it: n prefills and a step, about (n + 1) x one alone.
                    stdout.WriteLine(string.Create(c,
                        $"{level.Streams,7}  {Rate(level.TokensPerSecond, one.TokensPerSecond, 9)}  {Rate(level.DecodeTokensPerSecond, one.DecodeTokensPerSecond, 15)}  {Rate(level.SteadyDecodeTokensPerSecond, one.SteadyDecodeTokensPerSecond, 12)}  {level.FirstTokenP50 * 1000,12:F0} ms  {level.FirstTokenP99 * 1000,6:F0} ms  {(level.Streams + 1) * one.FirstTokenP50 * 1000,10:F0} ms"));
                }

                if (lookup is not null)
                {
                    stdout.WriteLine($"prompt lookup of {lookup}: guesses taken, by streams: {string.Join(", ", levels.Select(l => string.Create(c, $"{l.Streams}: {l.Taken} of {l.Guessed}")))}");
                }
            }
        }

        return 0;
    }

    /// <summary>
    /// A tokens/s column (<paramref name="width"/> wide) and its ratio to one stream's, each "n/a" where it has no value: no
    /// round had every stream decoding at once, or one stream decoded nothing to time (one new token, or no token with text).
    /// </summary>
    private static string Rate(double tokensPerSecond, double first, int width)
    {
        double ratio = tokensPerSecond / first;
        string value = double.IsFinite(tokensPerSecond) ? tokensPerSecond.ToString("F1", CultureInfo.InvariantCulture) : "n/a";
        string times = double.IsFinite(ratio) ? ratio.ToString("F2", CultureInfo.InvariantCulture) + "x" : "n/a";
        return value.PadLeft(width) + "  " + times.PadLeft(9);
    }

    /// <summary>A JSON number rounded to 3 places, left out when it is NaN or infinite (JSON has no such numbers).</summary>
    private static void WriteIfFinite(System.Text.Json.Utf8JsonWriter w, string name, double value)
    {
        if (double.IsFinite(value))
        {
            w.WriteNumber(name, Math.Round(value, 3));
        }
    }

    /// <summary>The tokenizer of --model, or the one beside --config's file, else the demo model's (the load test sends token ids; text is only decoded).</summary>
    private static Tokenization.Tokenizer BenchTokenizer(Arguments args, TextWriter stderr)
    {
        if (args.Value("config") is string config)
        {
            string folder = Path.GetDirectoryName(Path.GetFullPath(config))!;
            if (File.Exists(Path.Combine(folder, "tokenizer.json")))
            {
                return Tokenization.Tokenizer.FromDirectory(folder);
            }

            stderr.WriteLine("note: no tokenizer.json beside the config; the demo model's tokenizer decodes the (random) answers");
            return Tokenization.Tokenizer.FromDirectory(ModelLoading.DemoModelDirectory);
        }

        return TextInput.LoadTokenizer(ModelLoading.ResolveDirectory(args, TextWriter.Null));
    }

    /// <summary>The median of <paramref name="values"/> (the lower of the middle two for an even count).</summary>
    private static double MedianOf(double[] values) => values.Order().ElementAt((values.Length - 1) / 2);

    private static void WriteArray(System.Text.Json.Utf8JsonWriter w, string name, IEnumerable<double> values)
    {
        w.WriteStartArray(name);
        foreach (double value in values)
        {
            w.WriteNumberValue(Math.Round(value, 4));
        }

        w.WriteEndArray();
    }

    /// <summary>The round whose <paramref name="key"/> is the median (the lower of the middle two for an even count).</summary>
    private static GenerationResult Median(List<GenerationResult> rounds, Func<GenerationResult, double> key) =>
        rounds.OrderBy(key).ElementAt((rounds.Count - 1) / 2);

    /// <summary>bench --memory: read bandwidth on one thread and on <paramref name="threads"/>.</summary>
    private static int RunMemory(Arguments args, int threads, TextWriter stdout)
    {
        string? other = new[] { "model", "config", "random-weights", "dtype", "prompt-tokens", "new-tokens", "batch", "quantize", "lora", "device" }.FirstOrDefault(args.Has);
        if (other is not null)
        {
            throw new UsageException($"--memory measures the machine alone; --{other} does not apply to it");
        }

        double one = Cpu.MemoryBandwidth.Measure(1), all = Cpu.MemoryBandwidth.Measure(threads);
        if (args.Flag("json"))
        {
            JsonOutput.Write(stdout, w =>
            {
                w.WriteStartObject();
                w.WriteNumber("read_gb_per_s_1_thread", Math.Round(one, 3));
                w.WriteNumber("read_gb_per_s", Math.Round(all, 3));
                w.WriteNumber("threads", threads);
                w.WriteEndObject();
            });
        }
        else
        {
            var c = CultureInfo.InvariantCulture;
            stdout.WriteLine(string.Create(c, $"memory   read {one:F1} GB/s on 1 thread, {all:F1} GB/s on {threads} threads ({Cpu.MemoryBandwidth.DefaultBytes >> 20} MiB, best of 3)"));
        }

        return 0;
    }

    /// <summary>
    /// The prompt and decode lengths: as given, which must fit the model's context; left out, 512 and 64, shrunk
    /// (with a note) to fit a model of a shorter context, such as the bundled demo model's 512.
    /// </summary>
    private static (int Prompt, int New) FitToContext(int maxPositions, int? givenPrompt, int? givenNew, TextWriter stderr)
    {
        int newTokens = givenNew ?? Math.Min(64, Math.Max(1, maxPositions / 4));
        int promptTokens = givenPrompt ?? Math.Min(512, maxPositions - newTokens - 1);
        if (promptTokens < 1 || promptTokens + newTokens + 1 > maxPositions)
        {
            throw new UsageException(
                $"--prompt-tokens {promptTokens} + --new-tokens {newTokens} exceed the model's context of {maxPositions}");
        }

        if ((givenPrompt is null && promptTokens != 512) || (givenNew is null && newTokens != 64))
        {
            stderr.WriteLine($"note: measuring a {promptTokens}-token prompt and {newTokens} new tokens (the defaults, 512 and 64, do not fit the model's context of {maxPositions})");
        }

        return (promptTokens, newTokens);
    }

    /// <param name="positions">Positions per sequence the run will use at most, for the memory check.</param>
    private static (IBackend, Qwen2Model) Load(Arguments args, TextWriter stderr, int positions, int batch)
    {
        string? configPath = args.Value("config");
        bool random = args.Flag("random-weights");
        if (configPath is null)
        {
            if (random || args.Has("dtype"))
            {
                throw new UsageException("--random-weights and --dtype need --config config.json");
            }

            return ModelLoading.Load(args, stderr);
        }

        if (!random)
        {
            throw new UsageException("--config needs --random-weights (to benchmark a checkpoint, use --model DIR)");
        }

        if (args.Has("model"))
        {
            throw new UsageException("give either --model or --config, not both");
        }

        string dtypeText = args.Value("dtype") ?? "bf16";
        if (!DTypes.TryParse(dtypeText, out DType dtype) || DTypes.IsQuantized(dtype))
        {
            throw new UsageException($"--dtype '{dtypeText}' is not one of bf16, f16, f32 (block types come from --quantize)");
        }

        Qwen2Config config = Qwen2Config.Load(configPath);
        DType kvType = ModelLoading.KvCacheTypeOf(args);
        CheckHostMemory(configPath, config, dtype, kvType, Math.Min(positions, config.MaxPositionEmbeddings + 1), batch);
        QuantizationMix? quantize = ModelLoading.QuantizeType(args);
        (IBackend backend, LayerOffload? offload) = ModelLoading.CreateBackends(args);
        ITensorSource source = new RandomTensorSource(config, dtype);
        if (quantize is not null)
        {
            source = new QuantizingTensorSource(source, quantize, config.QuantizationShape);
        }

        Qwen2Model? model = null;
        try
        {
            model = new Qwen2Model(config, source, backend, ownsSource: true, offload: offload);
            ModelLoading.SetKvCacheType(model, kvType);
            model.ApplyAdapterFiles([.. ModelLoading.LoraAdapters(args, stderr).Select(a => (a.Path, a.Scale))]);
            return (backend, model);
        }
        catch
        {
            if (model is null)
            {
                source.Dispose();
            }
            else
            {
                model.Dispose();
            }

            backend.Dispose();
            throw;
        }
    }

    /// <summary>Refuses random weights and a KV cache that would not fit the memory free now, before allocating any.</summary>
    private static void CheckHostMemory(string configPath, Qwen2Config config, DType dtype, DType kvType, int positions, int batch)
    {
        long weights = RandomTensorSource.ByteSize(config, dtype);
        long kvCache = KvCache.BytesPerToken(config.NumHiddenLayers, config.KvDim, kvType) * positions * batch;
        long available = HostMemory.Available();
        if (weights + kvCache > available)
        {
            throw new UsageException(
                $"--config {configPath}: random {DTypes.Name(dtype)} weights ({InfoCommand.FormatBytes(weights)}) and a KV cache of {batch} x {positions} positions ({InfoCommand.FormatBytes(kvCache)}) need {InfoCommand.FormatBytes(weights + kvCache)}; {InfoCommand.FormatBytes(available)} of memory is available");
        }
    }

    /// <summary>
    /// What <c>--sample</c> draws with: generation_config.json's settings (transformers' defaults for those it lacks), sampled
    /// even where it says <c>do_sample: false</c> or has temperature 0 (then 1), so that the flag never measures greedy.
    /// </summary>
    private static SamplingOptions SampledSettings(Qwen2Model model)
    {
        SamplingOptions configured = SamplingOptions.FromGenerationConfig(model.GenerationConfig);
        return configured with { DoSample = true, Temperature = configured.Temperature > 0 ? configured.Temperature : 1.0 };
    }

    /// <summary>The settings <c>--sample</c> took from the model's generation_config.json, for the decode line.</summary>
    private static string SamplingText(SamplingOptions sampling) => string.Create(CultureInfo.InvariantCulture,
        $"temperature {sampling.Temperature}, top-k {sampling.TopK}, top-p {sampling.TopP}, repetition penalty {sampling.RepetitionPenalty}");
}
