using System.Diagnostics;
using System.Globalization;
using System.Runtime.Intrinsics.X86;
using System.Text.Json;
using LLama;
using LLama.Common;
using LLama.Native;
using QwenSharp.Backend;
using QwenSharp.Cpu;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;
using QwenSharp.Formats.Gguf;
using QwenSharp.Generation;
using QwenSharp.Qwen2;

namespace QwenSharp.Bench;

/// <summary>
/// QwenSharp and llama.cpp (through LLamaSharp's CPU build) decoding the same GGUF file on the same machine, one
/// after the other in rounds (each first in every other round), greedy, from the same random prompt; each figure is the
/// median of its rounds, and each ratio comes with the median and range of the rounds' own ratios.
/// <code>
///   dotnet run -c Release --project bench -- peer (--model FILE.gguf | --config CONFIG.json --type q8_0|q4_0|bf16|f16|q2_k|q3_k_m|iq3_s|iq3_m|iq4_xs|q4_k_m|q5_k_m|q6_k)
///       [--rounds 5] [--new-tokens 64] [--prefill 512] [--context 16] [--threads N] [--kv-cache-type f32|f16|q8_0|q4_0]
/// </code>
/// takes a GGUF file as it is (--model: a downloaded Qwen2.5 or Llama file), or writes a random-weight model of the
/// config's shape as a GGUF file of that type (with the tokenizer.json beside the config; q4_k_m and q6_k quantized by
/// llama.cpp itself from the BF16 file), then measures both on it: decode
/// (tokens/s over --new-tokens one-token steps after a --context-token prompt, 16 by default: llama.cpp's tg; a long one
/// measures how each engine's attention reads its KV cache) and prefill (a --prefill-token
/// prompt read in one call, llama.cpp's pp; 0 skips it). The read bandwidth (<see cref="MemoryBandwidth"/>, on the same
/// threads) is measured before the first round and after each, and each engine's decode GB/s (the weights one step reads,
/// times its tokens/s: the file's bytes for llama.cpp, <see cref="Qwen2Model.DecodeStepBytes"/> for ours) is set against
/// the reads either side of its round. Without --kv-cache-type each engine keeps its default cache (ours f32, llama.cpp's
/// f16); with it both store that type (llama.cpp's q8_0 with flash attention, which its quantized values need).
/// </summary>
internal static class PeerDecode
{
    /// <summary>The KV cache both engines store (--kv-cache-type), or null for each engine's default.</summary>
    private static DType? s_kvType;

    public static int Run(string[] args)
    {
        string? modelFile = Option(args, "--model"), config = Option(args, "--config"), typeName = Option(args, "--type");
        if ((modelFile is null) == (config is null))
        {
            throw new ArgumentException("peer needs either --model FILE.gguf (a GGUF file as it is) or --config CONFIG.json [--type T] (random weights of its shape)");
        }

        if (modelFile is not null && typeName is not null)
        {
            throw new ArgumentException($"--type {typeName}: goes with --config only; --model {modelFile} is measured in the types it holds");
        }

        int rounds = Count(args, "--rounds", 5, minimum: 1);
        int newTokens = Count(args, "--new-tokens", 64, minimum: 1);
        int prefill = Count(args, "--prefill", 512, minimum: 0);
        int context = Count(args, "--context", 16, minimum: 1);    // the prompt before the decode
        int threads = Count(args, "--threads", Environment.ProcessorCount, minimum: 1);
        s_kvType = Option(args, "--kv-cache-type") switch
        {
            null => null,
            "f32" => DType.F32,
            "f16" => DType.F16,
            "q8_0" => DType.Q8_0,
            "q4_0" => DType.Q4_0,
            string other => throw new ArgumentException($"--kv-cache-type {other}: the peer compares f32, f16, q8_0 or q4_0"),
        };
        string llamaBuild = MatchLlamaBuildToOurs();
        NativeApi.llama_empty_call();
        string gguf = modelFile is not null ? CheckedGguf(modelFile) : (typeName ?? "q8_0").ToLowerInvariant() switch
        {
            "q4_k_m" => LlamaQuantized(WriteModel(config!, DType.BF16), LLamaFtype.MOSTLY_Q4_K_M),
            "q5_k_m" => LlamaQuantized(WriteModel(config!, DType.BF16), LLamaFtype.MOSTLY_Q5_K_M),
            "q3_k_m" => LlamaQuantized(WriteModel(config!, DType.BF16), LLamaFtype.MOSTLY_Q3_K_M),
            "q2_k" => LlamaQuantized(WriteModel(config!, DType.BF16), LLamaFtype.MOSTLY_Q2_K),
            "iq4_xs" => LlamaQuantized(WriteModel(config!, DType.BF16), LLamaFtype.MOSTLY_IQ4_XS),
            "iq3_s" => LlamaQuantized(WriteModel(config!, DType.BF16), LLamaFtype.MOSTLY_IQ3_S),
            "iq3_m" => LlamaQuantized(WriteModel(config!, DType.BF16), LLamaFtype.MOSTLY_IQ3_M),
            "q6_k" => LlamaQuantized(WriteModel(config!, DType.BF16), LLamaFtype.MOSTLY_Q6_K),
            string name when DTypes.TryParse(name, out DType type) => WriteModel(config!, type),
            _ => throw new ArgumentException("--type: q8_0, q4_0, bf16, f16, f32, q2_k, q3_k_m, iq3_s, iq3_m, iq4_xs, q4_k_m, q5_k_m or q6_k"),
        };
        NativeLogConfig.llama_log_set((_, _) => { });
        var random = new Random(7);
        int[] prompt = [.. Enumerable.Range(0, context).Select(_ => random.Next(1000, 20000))];

        int[] longPrompt = [.. Enumerable.Range(0, prefill).Select(_ => random.Next(1000, 20000))];
        var ours = new List<double>();
        var theirs = new List<double>();
        var oursPrefill = new List<double>();
        var theirsPrefill = new List<double>();
        long stepBytes = StepBytes(gguf), ourStepBytes = OurStepBytes(gguf, threads);
        Ours(gguf, prompt, 8, threads);
        Theirs(gguf, prompt, 8, threads);
        var reads = new List<double> { MemoryBandwidth.Measure(threads) };
        var oursShares = new List<double>();
        var theirsShares = new List<double>();
        for (int r = 0; r < rounds; r++)
        {
            // Each engine goes first in every other round, so that neither always meets the host as the other left it.
            bool oursFirst = r % 2 == 0;
            InTurn(oursFirst, () => ours.Add(Ours(gguf, prompt, newTokens, threads)), () => theirs.Add(Theirs(gguf, prompt, newTokens, threads)));
            string line = $"round {r + 1}: decode QwenSharp {ours[^1]:F1} tokens/s, llama.cpp {theirs[^1]:F1} tokens/s";
            if (prefill > 0)
            {
                InTurn(oursFirst, () => oursPrefill.Add(OursPrefill(gguf, longPrompt, threads)), () => theirsPrefill.Add(TheirsPrefill(gguf, longPrompt, threads)));
                line += $"; prefill QwenSharp {oursPrefill[^1]:F1} tokens/s, llama.cpp {theirsPrefill[^1]:F1} tokens/s";
            }

            reads.Add(MemoryBandwidth.Measure(threads));
            double bound = (reads[^2] + reads[^1]) / 2;
            oursShares.Add(GbPerSecond(ourStepBytes, ours[^1]) / bound);
            theirsShares.Add(GbPerSecond(stepBytes, theirs[^1]) / bound);
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{line}; reads {reads[^2]:F1} and {reads[^1]:F1} GB/s"));
        }

        Console.WriteLine($"{Path.GetFileName(gguf)}, {threads} threads: {llamaBuild}");
        double a = Median(ours), b = Median(theirs);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{Path.GetFileName(gguf)}, {threads} threads, decode of {newTokens} tokens after {context}, median of {rounds} rounds: QwenSharp {a:F1} tokens/s, llama.cpp {b:F1} tokens/s ({a / b:F2}x; {RoundRatios(ours, theirs)})"));
        string ourBytes = ourStepBytes == stepBytes ? "" : string.Create(CultureInfo.InvariantCulture, $" (QwenSharp {ourStepBytes / 1048576.0:F1} MiB: what it multiplies, as it stores them at load)");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{Path.GetFileName(gguf)}, {threads} threads, decode reads {stepBytes / 1048576.0:F1} MiB of weights a step{ourBytes}: QwenSharp {GbPerSecond(ourStepBytes, a):F2} GB/s ({100 * Median(oursShares):F0}% of the read bound), llama.cpp {GbPerSecond(stepBytes, b):F2} GB/s ({100 * Median(theirsShares):F0}%); each round against the reads either side of it, {string.Join(", ", reads.Select(x => x.ToString("F1", CultureInfo.InvariantCulture)))} GB/s on {threads} threads"));
        if (prefill > 0)
        {
            double c = Median(oursPrefill), d = Median(theirsPrefill);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{Path.GetFileName(gguf)}, {threads} threads, prefill of {prefill} tokens, median of {rounds} rounds: QwenSharp {c:F1} tokens/s, llama.cpp {d:F1} tokens/s ({c / d:F2}x; {RoundRatios(oursPrefill, theirsPrefill)})"));
        }

        return 0;
    }

    /// <summary>Runs <paramref name="ours"/> and <paramref name="theirs"/>, ours first where <paramref name="oursFirst"/>.</summary>
    internal static void InTurn(bool oursFirst, Action ours, Action theirs)
    {
        (oursFirst ? ours : theirs)();
        (oursFirst ? theirs : ours)();
    }

    /// <summary>
    /// The rounds' own ratios, ours over theirs: their median and range. Each round's two runs are seconds apart, so its
    /// ratio holds still while this host's bandwidth drifts by a third within minutes and moves both medians.
    /// </summary>
    internal static string RoundRatios(List<double> ours, List<double> theirs)
    {
        List<double> ratios = [.. ours.Zip(theirs, (a, b) => a / b)];
        return string.Create(CultureInfo.InvariantCulture, $"rounds' own ratios {ratios.Min():F2}-{ratios.Max():F2}x, median {Median(ratios):F2}x");
    }

    /// <summary>
    /// <paramref name="path"/> when it is a GGUF file; otherwise an error that says what it is instead (missing, a folder, not
    /// GGUF), before either engine opens it.
    /// </summary>
    internal static string CheckedGguf(string path)
    {
        if (Directory.Exists(path))
        {
            throw new ArgumentException($"--model {path}: a folder; peer measures one GGUF file, which both engines load");
        }

        if (!File.Exists(path))
        {
            throw new ArgumentException($"--model {path}: no such file");
        }

        return GgufFile.HasMagic(path) ? path : throw new ArgumentException($"--model {path}: not a GGUF file (it does not start with \"GGUF\"); llama.cpp reads only GGUF");
    }

    /// <summary>
    /// Picks LLamaSharp's llama.cpp build for the instructions this process's JIT uses, so that both engines run the same
    /// instruction set: with AVX-512 hidden from the JIT (<c>DOTNET_EnableAVX512=0</c>, and <c>DOTNET_EnableAVXVNNI=0
    /// DOTNET_EnableGFNI=0</c> for an AMD Zen 3's set) llama.cpp's avx2 build (AVX2, FMA and F16C, no VNNI), which it would
    /// not choose on an AVX-512 CPU by itself. Says which.
    /// </summary>
    internal static string MatchLlamaBuildToOurs()
    {
        if (Avx512F.IsSupported)
        {
            return $"llama.cpp's build as LLamaSharp picks it for this CPU; QwenSharp with AVX-512; CPU {CpuIdentity.Describe()}";
        }

        AvxLevel level = Avx2.IsSupported ? AvxLevel.Avx2 : Avx.IsSupported ? AvxLevel.Avx : AvxLevel.None;
        NativeLibraryConfig.All.WithAvx(level);
        // The CPU's line names the instruction sets our kernels see (CpuIdentity.Describe: the JIT's, AVX-512 hidden).
        return $"llama.cpp's {level.ToString().ToLowerInvariant()} build, QwenSharp without AVX-512 (its 256-bit kernels); CPU {CpuIdentity.Describe()}";
    }

    /// <summary>The weights one decode step reads as the file stores them (llama.cpp's count; its Q4_0 repacking keeps the size).</summary>
    private static long StepBytes(string gguf)
    {
        // The file's bytes of each matrix, as llama.cpp reads them: a matrix QwenSharp stores again at load (Q3_K as Q6_K,
        // IQ4_NL as Q8_0) has its view in the wider type.
        using GgufCheckpoint checkpoint = GgufCheckpoint.Open(gguf);
        using GgufFile file = GgufFile.Open(gguf);
        Qwen2Weights<TensorView> weights = Qwen2WeightBinder.Bind(checkpoint.Config, checkpoint);
        long Stored(TensorView view) => file.Tensors.TryGetValue(view.Name, out GgufTensorInfo? info) && GgmlTypes.TryGetBlock(info.Type, out int values, out int bytes)
            ? info.Shape.Aggregate(1L, (a, b) => a * b) / values * bytes
            : view.ByteLength;
        return Stored(weights.LmHead) + weights.Layers.SelectMany(layer => layer.Tensors).Where(t => t.Shape.Length == 2).Sum(Stored);
    }

    /// <summary>The weights one of our decode steps reads (as <c>qwensharp bench</c> counts them: repacked panels where one token reads them).</summary>
    private static long OurStepBytes(string gguf, int threads)
    {
        using IBackend backend = new CpuBackend(new CpuBackendOptions { Threads = threads });
        using Qwen2Model model = Qwen2Model.Load(gguf, backend);
        return model.DecodeStepBytes;
    }

    private static double GbPerSecond(long stepBytes, double stepsPerSecond) => stepBytes * stepsPerSecond / 1e9;

    /// <summary>Prompt tokens per second reading <paramref name="prompt"/> in one call (the first token's forward passes).</summary>
    private static double OursPrefill(string gguf, int[] prompt, int threads)
    {
        using IBackend backend = new CpuBackend(new CpuBackendOptions { Threads = threads });
        using Qwen2Model model = Qwen2Model.Load(gguf, backend);
        model.KvCacheType = s_kvType ?? DType.F32;
        GenerationResult result = Generator.Greedy(model, [prompt], new GenerationOptions { MaxNewTokens = 1, IgnoreEos = true });
        return result.PrefillTokensPerSecond;
    }

    /// <summary>llama.cpp reading the same prompt in one batch (its pp figure), only the decode call timed.</summary>
    private static double TheirsPrefill(string gguf, int[] prompt, int threads)
    {
        var parameters = WithKvType(new ModelParams(gguf) { ContextSize = (uint)prompt.Length + 16, GpuLayerCount = 0, Threads = threads, BatchThreads = threads, BatchSize = (uint)prompt.Length, UBatchSize = (uint)prompt.Length });
        using LLamaWeights weights = LLamaWeights.LoadFromFile(parameters);
        using LLamaContext context = weights.CreateContext(parameters);
        var batch = new LLamaBatch();
        for (int i = 0; i < prompt.Length; i++)
        {
            batch.Add(prompt[i], i, LLamaSeqId.Zero, i == prompt.Length - 1);
        }

        var clock = Stopwatch.StartNew();
        Check(context.NativeHandle.Decode(batch));
        return prompt.Length / clock.Elapsed.TotalSeconds;
    }

    private static double Ours(string gguf, int[] prompt, int newTokens, int threads)
    {
        using IBackend backend = new CpuBackend(new CpuBackendOptions { Threads = threads });
        using Qwen2Model model = Qwen2Model.Load(gguf, backend);
        model.KvCacheType = s_kvType ?? DType.F32;
        GenerationResult result = Generator.Greedy(model, [prompt], new GenerationOptions { MaxNewTokens = newTokens + 1, IgnoreEos = true });
        return result.DecodeTokensPerSecond;
    }

    /// <summary>llama.cpp as its users run it (its default f16 KV cache, or --kv-cache-type), timing only the one-token decode calls.</summary>
    private static double Theirs(string gguf, int[] prompt, int newTokens, int threads)
    {
        uint size = (uint)(prompt.Length + newTokens + 16);
        var parameters = WithKvType(new ModelParams(gguf) { ContextSize = Math.Max(512, size), GpuLayerCount = 0, Threads = threads, BatchThreads = threads, BatchSize = Math.Max(512, size), UBatchSize = 512 });
        using LLamaWeights weights = LLamaWeights.LoadFromFile(parameters);
        using LLamaContext context = weights.CreateContext(parameters);
        var batch = new LLamaBatch();
        for (int i = 0; i < prompt.Length; i++)
        {
            batch.Add(prompt[i], i, LLamaSeqId.Zero, i == prompt.Length - 1);
        }

        Check(context.NativeHandle.Decode(batch));
        int position = prompt.Length;
        int token = ArgMax(context.NativeHandle.GetLogitsIth(batch.TokenCount - 1));
        var clock = Stopwatch.StartNew();
        for (int n = 0; n < newTokens; n++)
        {
            batch.Clear();
            batch.Add(token, position++, LLamaSeqId.Zero, true);
            Check(context.NativeHandle.Decode(batch));
            token = ArgMax(context.NativeHandle.GetLogitsIth(0));
        }

        return newTokens / clock.Elapsed.TotalSeconds;
    }

    /// <summary>llama.cpp's parameters with the cache of --kv-cache-type, if given (a quantized one runs flash attention).</summary>
    private static ModelParams WithKvType(ModelParams parameters)
    {
        if (s_kvType is DType type)
        {
            parameters.TypeK = parameters.TypeV = type switch
            {
                DType.F32 => GGMLType.GGML_TYPE_F32, DType.F16 => GGMLType.GGML_TYPE_F16, DType.Q8_0 => GGMLType.GGML_TYPE_Q8_0, _ => GGMLType.GGML_TYPE_Q4_0,
            };
            if (type is DType.Q8_0 or DType.Q4_0)
            {
                parameters.FlashAttention = true;
            }
        }

        return parameters;
    }

    internal static void Check(DecodeResult result)
    {
        if (result != DecodeResult.Ok)
        {
            throw new InvalidOperationException($"llama.cpp's decode failed: {result}");
        }
    }

    private static int ArgMax(Span<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++)
        {
            best = logits[i] > logits[best] ? i : best;
        }

        return best;
    }

    /// <summary>The GGUF file quantized by llama.cpp's own quantizer (kept for the next run).</summary>
    private static string LlamaQuantized(string source, LLamaFtype type)
    {
        string destination = Path.Combine(Path.GetDirectoryName(source)!, $"random.{type.ToString().Replace("MOSTLY_", "", StringComparison.Ordinal).ToLowerInvariant()}.gguf");
        if (!File.Exists(destination))
        {
            LLamaModelQuantizeParams parameters = LLamaModelQuantizeParams.Default();
            parameters.ftype = type;
            parameters.nthread = Environment.ProcessorCount;
            uint result = NativeApi.llama_model_quantize(source, destination, ref parameters);
            if (result != 0)
            {
                throw new InvalidOperationException($"llama.cpp could not quantize {source} to {type}: {result}");
            }
        }

        return destination;
    }

    /// <summary>Random BF16 weights of the config's shape as a safetensors folder, exported as GGUF of <paramref name="type"/> (kept for the next run).</summary>
    internal static string WriteModel(string configPath, DType type)
    {
        string folder = Path.GetDirectoryName(Path.GetFullPath(configPath))!;
        string cache = Path.Combine(Path.GetTempPath(), "qwensharp-peer", Path.GetFileName(folder));
        string gguf = Path.Combine(cache, $"random.{DTypes.Name(type).ToLowerInvariant()}.gguf");
        if (File.Exists(gguf))
        {
            return gguf;
        }

        Directory.CreateDirectory(cache);
        foreach (string file in (string[])["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"])
        {
            if (File.Exists(Path.Combine(folder, file)))
            {
                File.Copy(Path.Combine(folder, file), Path.Combine(cache, file), overwrite: true);
            }
        }

        Qwen2Config config = Qwen2Config.Load(configPath);
        using (var source = new RandomTensorSource(config, DType.BF16))
        {
            WriteSafeTensors(Path.Combine(cache, "model.safetensors"), source);
        }

        GgufExport.Write(cache, gguf, type == DType.BF16 ? null : type);
        File.Delete(Path.Combine(cache, "model.safetensors"));
        return gguf;
    }

    private static unsafe void WriteSafeTensors(string path, RandomTensorSource source)
    {
        var views = source.TensorNames.Order(StringComparer.Ordinal).Select(n => source.TryGetView(n, out TensorView? v) ? v : null).OfType<TensorView>().ToList();
        using var header = new MemoryStream();
        using (var writer = new Utf8JsonWriter(header))
        {
            writer.WriteStartObject();
            long offset = 0;
            foreach (TensorView view in views)
            {
                writer.WriteStartObject(view.Name);
                writer.WriteString("dtype", DTypes.Name(view.DType));
                writer.WriteStartArray("shape");
                foreach (long dim in view.Shape)
                {
                    writer.WriteNumberValue(dim);
                }

                writer.WriteEndArray();
                writer.WriteStartArray("data_offsets");
                writer.WriteNumberValue(offset);
                writer.WriteNumberValue(offset + view.ByteLength);
                writer.WriteEndArray();
                writer.WriteEndObject();
                offset += view.ByteLength;
            }

            writer.WriteEndObject();
        }

        using FileStream file = File.Create(path);
        file.Write(BitConverter.GetBytes((ulong)header.Length));
        file.Write(header.ToArray());
        foreach (TensorView view in views)
        {
            for (long at = 0; at < view.ByteLength; at += 1 << 30)
            {
                int length = (int)Math.Min(1 << 30, view.ByteLength - at);
                file.Write(new ReadOnlySpan<byte>((byte*)view.Data + at, length));
            }
        }
    }

    /// <summary>A whole-number option of at least <paramref name="minimum"/>, or <paramref name="fallback"/> when it is not given.</summary>
    internal static int Count(string[] args, string name, int fallback, int minimum)
    {
        string? text = Option(args, name);
        if (text is null)
        {
            return fallback;
        }

        return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int value) && value >= minimum
            ? value
            : throw new ArgumentException($"{name} {text}: expected a whole number of at least {minimum}");
    }

    internal static string? Option(string[] args, string name)
    {
        int at = Array.IndexOf(args, name);
        return at >= 0 && at + 1 < args.Length ? args[at + 1] : null;
    }

    internal static double Median(List<double> values)
    {
        double[] sorted = [.. values.Order()];
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
    }
}
