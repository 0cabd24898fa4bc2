using System.Diagnostics;
using System.Globalization;
using LLama;
using LLama.Common;
using LLama.Native;
using QwenSharp.Backend;
using QwenSharp.Cpu;
using QwenSharp.Formats;
using QwenSharp.Generation;
using QwenSharp.Qwen2;

namespace QwenSharp.Bench;

/// <summary>
/// QwenSharp and llama.cpp (LLamaSharp's CPU build) embedding the same texts from the same GGUF file, in rounds (each
/// engine first in every other round); each figure is the median of its rounds.
/// <code>
///   dotnet run -c Release --project bench -- peer-embed (--model FILE.gguf | --config CONFIG.json --type q8_0|bf16|...)
///       [--texts 64] [--tokens 128] [--batch 512] [--pooling last|mean] [--attention causal|non-causal] [--rounds 5] [--threads N]
/// </code>
/// --texts random texts of --tokens tokens each, packed into steps of up to --batch tokens by both engines (ours: the
/// embedder's steps, each text in its own slot; llama.cpp: one decode call per batch, each text its own sequence, the
/// cache cleared between batches, as its llama-embedding tool does). Only the embedding is timed, not the load.
/// </summary>
internal static class PeerEmbed
{
    public static int Run(string[] args)
    {
        string? modelFile = PeerDecode.Option(args, "--model"), config = PeerDecode.Option(args, "--config"), typeName = PeerDecode.Option(args, "--type");
        if ((modelFile is null) == (config is null))
        {
            throw new ArgumentException("peer-embed needs either --model FILE.gguf or --config CONFIG.json [--type T] (random weights of its shape)");
        }

        int texts = PeerDecode.Count(args, "--texts", 64, minimum: 1);
        int tokens = PeerDecode.Count(args, "--tokens", 128, minimum: 1);
        int batchTokens = PeerDecode.Count(args, "--batch", 512, minimum: tokens);
        int rounds = PeerDecode.Count(args, "--rounds", 5, minimum: 1);
        int threads = PeerDecode.Count(args, "--threads", Environment.ProcessorCount, minimum: 1);
        EmbeddingPooling pooling = EmbeddingPoolings.Parse(PeerDecode.Option(args, "--pooling") ?? "last")
            ?? throw new ArgumentException("--pooling: last, mean or cls");
        bool bidirectional = (PeerDecode.Option(args, "--attention") ?? "causal") switch
        {
            "causal" => false,
            "non-causal" => true,
            string other => throw new ArgumentException($"--attention {other}: causal or non-causal"),
        };
        string llamaBuild = PeerDecode.MatchLlamaBuildToOurs();
        NativeApi.llama_empty_call();
        NativeLogConfig.llama_log_set((_, _) => { });
        string gguf = modelFile is not null ? PeerDecode.CheckedGguf(modelFile)
            : DTypes.TryParse(typeName ?? "q8_0", out DType type) ? PeerDecode.WriteModel(config!, type)
            : throw new ArgumentException("--type: q8_0, q4_0, bf16, f16 or f32");
        var random = new Random(11);
        int[][] inputs = [.. Enumerable.Range(0, texts).Select(_ => Enumerable.Range(0, tokens).Select(_ => random.Next(1000, 20000)).ToArray())];

        var ours = new List<double>();
        var theirs = new List<double>();
        Ours(gguf, inputs[..1], batchTokens, pooling, bidirectional, threads);
        Theirs(gguf, inputs[..1], batchTokens, pooling, bidirectional, threads);
        for (int r = 0; r < rounds; r++)
        {
            PeerDecode.InTurn(r % 2 == 0,
                () => ours.Add(Ours(gguf, inputs, batchTokens, pooling, bidirectional, threads)),
                () => theirs.Add(Theirs(gguf, inputs, batchTokens, pooling, bidirectional, threads)));
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"round {r + 1}: QwenSharp {ours[^1] * tokens:F0} tokens/s, llama.cpp {theirs[^1] * tokens:F0} tokens/s"));
        }

        double a = PeerDecode.Median(ours), b = PeerDecode.Median(theirs);
        Console.WriteLine($"{Path.GetFileName(gguf)}, {threads} threads: {llamaBuild}");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{Path.GetFileName(gguf)}, {threads} threads, {texts} texts of {tokens} tokens, steps of {batchTokens}, {EmbeddingPoolings.NameOf(pooling)} pooling, {(bidirectional ? "non-causal" : "causal")}, median of {rounds} rounds: QwenSharp {a:F1} texts/s ({a * tokens:F0} tokens/s), llama.cpp {b:F1} texts/s ({b * tokens:F0} tokens/s), {a / b:F2}x; {PeerDecode.RoundRatios(ours, theirs)}"));
        return 0;
    }

    /// <summary>Texts per second through the embedder (its steps hold up to <paramref name="batchTokens"/> tokens).</summary>
    private static double Ours(string gguf, int[][] inputs, int batchTokens, EmbeddingPooling pooling, bool bidirectional, int threads)
    {
        using IBackend backend = new CpuBackend(new CpuBackendOptions { Threads = threads });
        using Qwen2Model model = Qwen2Model.Load(gguf, backend);
        using var embedder = new Embedder(model, batchTokens);
        var clock = Stopwatch.StartNew();
        embedder.Embed(inputs, pooling, normalize: true, bidirectional: bidirectional);
        return inputs.Length / clock.Elapsed.TotalSeconds;
    }

    /// <summary>llama.cpp: as many texts a decode call as fit <paramref name="batchTokens"/>, each its own sequence, then normalized.</summary>
    private static double Theirs(string gguf, int[][] inputs, int batchTokens, EmbeddingPooling pooling, bool bidirectional, int threads)
    {
        int perBatch = Math.Max(1, batchTokens / inputs[0].Length);
        var parameters = new ModelParams(gguf)
        {
            ContextSize = (uint)batchTokens, BatchSize = (uint)batchTokens, UBatchSize = (uint)batchTokens, SeqMax = (uint)perBatch,
            GpuLayerCount = 0, Threads = threads, BatchThreads = threads, Embeddings = true,
            PoolingType = pooling switch { EmbeddingPooling.Mean => LLamaPoolingType.Mean, EmbeddingPooling.Cls => LLamaPoolingType.CLS, _ => LLamaPoolingType.Last },
            AttentionType = bidirectional ? LLamaAttentionType.NonCausal : LLamaAttentionType.Causal,
        };
        using LLamaWeights weights = LLamaWeights.LoadFromFile(parameters);
        using LLamaContext context = weights.CreateContext(parameters);
        var batch = new LLamaBatch();
        var clock = Stopwatch.StartNew();
        for (int first = 0; first < inputs.Length; first += perBatch)
        {
            batch.Clear();
            int count = Math.Min(perBatch, inputs.Length - first);
            for (int s = 0; s < count; s++)
            {
                int[] text = inputs[first + s];
                for (int i = 0; i < text.Length; i++)
                {
                    batch.Add(text[i], i, (LLamaSeqId)s, true);
                }
            }

            PeerDecode.Check(context.NativeHandle.Decode(batch));
            for (int s = 0; s < count; s++)
            {
                EmbeddingRun.Normalize(context.NativeHandle.GetEmbeddingsSeq((LLamaSeqId)s).ToArray());
            }

            context.NativeHandle.MemoryClear(true);
        }

        return inputs.Length / clock.Elapsed.TotalSeconds;
    }
}
