using QwenSharp.Backend;
using QwenSharp.Formats;
using QwenSharp.Qwen2;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Model;

/// <summary>
/// A KV cache's rows read out and written back (<see cref="KvCache.ReadRows"/>, <see cref="KvCache.WriteRows"/>: what a
/// slot file holds): written into another slot they decode as the original, on each backend, for every cache type; and the
/// layout is the same on every backend, the CPU's (which stores llama.cpp's blocks as they are) being the one the GPU's
/// rows must match, so that rows read on one backend decode on the other.
/// </summary>
public sealed class KvCacheRowsTests
{
    public static TheoryData<string, DType> BackendsAndTypes()
    {
        var data = new TheoryData<string, DType>();
        foreach (string backend in new[] { "cpu", "cpu:scalar", TestBackends.Gpu, "cpu+gpu:1" })
        {
            foreach (DType type in KvCache.Types.Select(t => t.Type))
            {
                data.Add(backend, type);
            }
        }

        return data;
    }

    /// <summary>A Qwen2 model whose heads are whole q8_0/q4_0 blocks (64 values, rotated as the quantized caches rotate them).</summary>
    private static string ModelFor(DType type) => KvCache.IsQuantized(type) ? RandomKQuantModel.Qwen2Folder.Value : Fixtures.ModelDirectory("tiny-qwen2");

    private static int[] Prompt(int vocabulary) => [.. Enumerable.Range(0, 40).Select(i => 3 + (i * 37 % (vocabulary - 3)))];

    /// <summary>Reads <paramref name="prompt"/> into slot 0 of <paramref name="cache"/>.</summary>
    private static void ReadPrompt(Qwen2Model model, KvCache cache, ForwardState state, int[] prompt)
    {
        var batch = new TokenBatch(prompt.Length);
        for (int p = 0; p < prompt.Length; p++)
        {
            batch.Add(prompt[p], p, 0, wantLogits: p == prompt.Length - 1);
        }

        model.Forward(batch, cache, state);
    }

    /// <summary>Every layer's keys and values of positions [0, count) of a slot, layer by layer.</summary>
    private static (byte[] Keys, byte[] Values)[] Rows(KvCache cache, int slot, int count)
    {
        var rows = new (byte[], byte[])[cache.Layers];
        for (int layer = 0; layer < cache.Layers; layer++)
        {
            byte[] keys = new byte[count * cache.RowBytes], values = new byte[keys.Length];
            cache.ReadRows(layer, slot, 0, count, keys, values);
            rows[layer] = (keys, values);
        }

        return rows;
    }

    private static void Write(KvCache cache, int slot, (byte[] Keys, byte[] Values)[] rows, int count)
    {
        for (int layer = 0; layer < cache.Layers; layer++)
        {
            cache.WriteRows(layer, slot, 0, count, rows[layer].Keys, rows[layer].Values);
        }

        cache.Hold(slot, count);
    }

    [SkippableTheory]
    [MemberData(nameof(BackendsAndTypes))]
    public void RowsWrittenIntoAnotherSlot_DecodeAsTheOriginal(string backendName, DType type)
    {
        (IBackend backend, LayerOffload? offload) = TestBackends.CreatePlacement(backendName);
        using IBackend host = backend;
        using Qwen2Model model = Qwen2Model.Load(ModelFor(type), backend, offload: offload);
        model.KvCacheType = type;
        int[] prompt = Prompt(model.Config.VocabSize);
        using KvCache cache = model.CreateKvCache(2, prompt.Length + 1);
        using ForwardState state = model.CreateState(prompt.Length, 2);
        ReadPrompt(model, cache, state, prompt);

        (byte[] Keys, byte[] Values)[] rows = Rows(cache, 0, prompt.Length);
        Write(cache, 1, rows, prompt.Length);
        Assert.Equal(prompt.Length, cache.LengthOf(1));

        // Read back from slot 1, the same bytes; and the next token in both slots, in one step, has the same logits' bits.
        (byte[] Keys, byte[] Values)[] again = Rows(cache, 1, prompt.Length);
        for (int layer = 0; layer < cache.Layers; layer++)
        {
            Assert.True(rows[layer].Keys.AsSpan().SequenceEqual(again[layer].Keys), $"layer {layer}'s keys came back otherwise");
            Assert.True(rows[layer].Values.AsSpan().SequenceEqual(again[layer].Values), $"layer {layer}'s values came back otherwise");
        }

        var batch = new TokenBatch(2);
        batch.Add(prompt[0], prompt.Length, 0, wantLogits: true);
        batch.Add(prompt[0], prompt.Length, 1, wantLogits: true);
        model.Forward(batch, cache, state);
        Assert.True(state.LogitsOf(0).SequenceEqual(state.LogitsOf(1)), "the slot written from the rows decodes otherwise than the original");
    }

    public static TheoryData<DType> Types() => [.. KvCache.Types.Select(t => t.Type)];

    [SkippableTheory]
    [MemberData(nameof(Types))]
    public void RowsOfOneBackend_AreTheOthersLayout_AndDecodeThere(DType type)
    {
        TestBackends.RequireGpu();
        using IBackend cpu = TestBackends.Create("cpu"), gpu = TestBackends.Create(TestBackends.Gpu);
        using Qwen2Model onCpu = Qwen2Model.Load(ModelFor(type), cpu), onGpu = Qwen2Model.Load(ModelFor(type), gpu);
        onCpu.KvCacheType = type;
        onGpu.KvCacheType = type;
        int[] prompt = Prompt(onCpu.Config.VocabSize);
        using KvCache cpuCache = onCpu.CreateKvCache(1, prompt.Length + 1), gpuCache = onGpu.CreateKvCache(2, prompt.Length + 1);
        using ForwardState cpuState = onCpu.CreateState(prompt.Length, 1), gpuState = onGpu.CreateState(prompt.Length, 2);
        ReadPrompt(onCpu, cpuCache, cpuState, prompt);
        ReadPrompt(onGpu, gpuCache, gpuState, prompt);

        // The same positions computed by the two backends: their rows agree value by value within a rounding (a q4_0 row
        // read in another nibble order, or q8_0's scales beside the wrong codes, would be about 1.4 apart).
        (byte[] Keys, byte[] Values)[] cpuRows = Rows(cpuCache, 0, prompt.Length), gpuRows = Rows(gpuCache, 0, prompt.Length);
        double worst = 0;
        for (int layer = 0; layer < cpuCache.Layers; layer++)
        {
            for (int p = 0; p < prompt.Length; p++)
            {
                int at = p * cpuCache.RowBytes;
                worst = Math.Max(worst, SlotFile.Distance(cpuCache, cpuRows[layer].Keys.AsSpan(at), gpuRows[layer].Keys.AsSpan(at)));
                worst = Math.Max(worst, SlotFile.Distance(cpuCache, cpuRows[layer].Values.AsSpan(at), gpuRows[layer].Values.AsSpan(at)));
            }
        }

        double rounding = type switch { DType.F32 => 1e-4, DType.F16 or DType.BF16 => 2e-2, DType.Q8_0 => 5e-2, _ => 0.25 };
        Assert.True(worst < rounding, $"{KvCache.NameOf(type)}: the CPU's and the GPU's rows of the same positions are {worst:E3} apart");

        // The CPU's rows written into the GPU's slot 1 decode the next token as the GPU's own slot 0 does, within what the
        // rows' differences move the logits.
        Write(gpuCache, 1, cpuRows, prompt.Length);
        var batch = new TokenBatch(2);
        batch.Add(prompt[0], prompt.Length, 0, wantLogits: true);
        batch.Add(prompt[0], prompt.Length, 1, wantLogits: true);
        onGpu.Forward(batch, gpuCache, gpuState);
        double apart = LogitComparison.LargestRelativeError([gpuState.LogitsOf(0).ToArray()], [gpuState.LogitsOf(1).ToArray()]);
        Assert.True(apart < (KvCache.IsQuantized(type) ? 0.1 : 1e-2), $"{KvCache.NameOf(type)}: the CPU's rows decode on the GPU {apart:E3} from the GPU's own");
    }
}
