using System.Globalization;
using System.Runtime.InteropServices;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;

namespace QwenSharp.Bench;

/// <summary>
/// Decode attention over a long context, for each KV cache type: one token's query heads of a key-value head
/// (<c>AttentionKernel.Block</c>, as a decode step runs it) over every position, a layer after another so the cache comes
/// from memory as in a model, in nanoseconds per position and head and as GB/s of cache read. With <c>--per-head</c>, each
/// query head alone (<c>AttentionKernel.Head</c>, as a step runs it when its key-value heads are too few to keep the
/// threads busy: one sequence of Qwen2.5-7B's 4 key-value heads on 16 threads).
/// <code>
///   dotnet run -c Release --project bench -- attention [--positions 4096] [--head-dim 64] [--heads 7] [--kv-heads 2] [--layers 24] [--rounds 5] [--per-head]
/// </code>
/// </summary>
internal static class AttentionKernels
{
    public static int Run(string[] args)
    {
        int positions = PeerDecode.Count(args, "--positions", 4096, minimum: 1);
        int d = PeerDecode.Count(args, "--head-dim", 64, minimum: 8);
        int heads = PeerDecode.Count(args, "--heads", 7, minimum: 1);
        int kvHeads = PeerDecode.Count(args, "--kv-heads", 2, minimum: 1);
        int layers = PeerDecode.Count(args, "--layers", 24, minimum: 1);
        int rounds = PeerDecode.Count(args, "--rounds", 5, minimum: 1);
        bool perHead = args.Contains("--per-head");
        KernelPath path = KernelPaths.Default;
        int kvDim = kvHeads * d;
        float[] keys = Values(positions * kvDim, 1), values = Values(positions * kvDim, 2), queries = Values(heads * d, 3);
        float[] scores = new float[heads * positions], outputs = new float[heads * d];
        float scale = 1f / MathF.Sqrt(d);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{path}{(perHead ? ", a query head at a time" : "")}: {heads} query heads of {d} a key-value head, {kvHeads} key-value heads, over {positions} positions, {layers} layers in turn; medians of {rounds}"));
        foreach (DType type in (DType[])[DType.F32, DType.F16, DType.BF16, DType.Q8_0, DType.Q4_0])
        {
            if (!QwenSharp.Backend.KvCache.HoldsHeads(type, d))
            {
                continue;
            }


            // The model's cache, filled as a prompt fills it (whole 2 MiB pages of a slot's positions made huge).
            using var cache = new QwenSharp.Cpu.CpuKvCache(layers, 1, positions, kvDim, type);
            for (int l = 0; l < layers; l++)
            {
                for (int p = 0; p < positions; p++)
                {
                    cache.Store(l, 0, p, keys.AsSpan(p * kvDim, kvDim), values.AsSpan(p * kvDim, kvDim));
                }

                cache.Filled(l, 0, positions);
            }

            void Step()
            {
                for (int l = 0; l < layers; l++)
                {
                    for (int h = 0; h < kvHeads; h++)
                    {
                        if (!perHead)
                        {
                            Block(type, path, queries, heads * d, cache.Keys(l, 0), cache.Values(l, 0), cache.PositionStride, h * d, d, positions, scale, heads, scores, outputs);
                            continue;
                        }

                        for (int qh = 0; qh < heads; qh++)
                        {
                            Head(type, path, queries.AsSpan(qh * d, d), cache.Keys(l, 0), cache.Values(l, 0), cache.PositionStride, h * d, positions, scale, scores,
                                outputs.AsSpan(qh * d, d));
                        }
                    }
                }
            }

            double seconds = FewTokenKernels.MedianNanoseconds(Step, rounds, iterations: 1, work: 1) / 1e9;
            double bytes = 2.0 * layers * positions * cache.RowBytes;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {DTypes.Name(type),-4}: {seconds * 1e9 / ((double)layers * kvHeads * positions * heads):F3} ns per position and query head, {bytes / seconds / 1e9:F1} GB/s of cache, {seconds * 1e3:F2} ms for the {layers} layers"));
        }

        return 0;
    }

    private static void Block(DType type, KernelPath path, float[] queries, int rowStride, ReadOnlySpan<byte> keys, ReadOnlySpan<byte> values, int positionStride, int offset, int d,
        int positions, float scale, int heads, float[] scores, float[] outputs)
    {
        switch (type)
        {
            case DType.F32: AttentionKernel<F32Load>.Block(path, queries, rowStride, 1, keys, values, positionStride, offset, positions, scale, heads, d, scores, outputs); break;
            case DType.F16: AttentionKernel<F16Load>.Block(path, queries, rowStride, 1, keys, values, positionStride, offset, positions, scale, heads, d, scores, outputs); break;
            case DType.BF16: AttentionKernel<Bf16Load>.Block(path, queries, rowStride, 1, keys, values, positionStride, offset, positions, scale, heads, d, scores, outputs); break;
            case DType.Q8_0: AttentionKernel<Q8_0KvLoad>.Block(path, queries, rowStride, 1, keys, values, positionStride, offset, positions, scale, heads, d, scores, outputs); break;
            default: AttentionKernel<Q4_0KvLoad>.Block(path, queries, rowStride, 1, keys, values, positionStride, offset, positions, scale, heads, d, scores, outputs); break;
        }
    }

    private static void Head(DType type, KernelPath path, ReadOnlySpan<float> query, ReadOnlySpan<byte> keys, ReadOnlySpan<byte> values, int positionStride, int offset,
        int positions, float scale, Span<float> scores, Span<float> output)
    {
        switch (type)
        {
            case DType.F32: AttentionKernel<F32Load>.Head(path, query, keys, values, positionStride, offset, positions, scale, scores, output); break;
            case DType.F16: AttentionKernel<F16Load>.Head(path, query, keys, values, positionStride, offset, positions, scale, scores, output); break;
            case DType.BF16: AttentionKernel<Bf16Load>.Head(path, query, keys, values, positionStride, offset, positions, scale, scores, output); break;
            case DType.Q8_0: AttentionKernel<Q8_0KvLoad>.Head(path, query, keys, values, positionStride, offset, positions, scale, scores, output); break;
            default: AttentionKernel<Q4_0KvLoad>.Head(path, query, keys, values, positionStride, offset, positions, scale, scores, output); break;
        }
    }

    private static float[] Values(int count, int seed)
    {
        var random = new Random(seed);
        return [.. Enumerable.Range(0, count).Select(_ => (float)((random.NextDouble() * 2) - 1))];
    }
}
