using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using QwenSharp.Backend;
using QwenSharp.Cpu;
using QwenSharp.Memory;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Memory;

/// <summary>
/// The CPU KV cache starts on small pages and moves each whole 2 MiB page of a slot's positions onto a huge page once
/// written. Alone: it reads the process's mappings, which other tests' buffers would move under it.
/// </summary>
[Collection(AloneCollection.Name)]
public sealed unsafe class KvCacheHugePagesTests
{
    // 6144 positions of 128 floats: 3 MiB a slot, so slot 0 holds the layer's first 2 MiB page whole, the second page
    // straddles slots 0 and 1, and slot 1 holds the third whole.
    private const int Layers = 2, Slots = 2, Capacity = 6144, KvDim = 128;
    private const int PositionsPerPage = (int)(HugePages.Size / (KvDim * sizeof(float)));

    [SkippableFact]
    public void Filled_WholePagesOfASlot_GoOntoHugePages_OnlyOnceWritten_KeepingTheirValues()
    {
        string enabled = HugePagesOnFault.SkipUnlessOn();
        Skip.IfNot(CollapseWorksHere(), "this kernel does not collapse anonymous memory into huge pages (MADV_COLLAPSE, Linux 6.1)");

        using var cache = new CpuKvCache(Layers, Slots, Capacity, KvDim);
        Assert.Equal(0, HugeBytes(cache));

        // One position short of a page: nothing moves.
        Write(cache, layer: 0, slot: 0, positions: PositionsPerPage - 1);
        cache.Filled(0, 0, PositionsPerPage - 1);
        Assert.Equal(0, HugeBytes(cache));

        // The page's last position: layer 0's first page of keys and of values goes huge; layer 1, unwritten, does not.
        Write(cache, layer: 0, slot: 0, positions: PositionsPerPage);
        cache.Filled(0, 0, PositionsPerPage);
        Assert.Equal(2 * HugePages.Size, HugeBytes(cache));

        // Slot 1 filled whole: its one whole page goes huge, not the page it shares with slot 0.
        Write(cache, layer: 0, slot: 1, positions: Capacity);
        cache.Filled(0, 1, Capacity);
        Assert.Equal(4 * HugePages.Size, HugeBytes(cache));

        for (int slot = 0; slot < Slots; slot++)
        {
            int written = slot == 0 ? PositionsPerPage : Capacity;
            Span<float> keys = MemoryMarshal.Cast<byte, float>(cache.Keys(0, slot)), values = MemoryMarshal.Cast<byte, float>(cache.Values(0, slot));
            for (int i = 0; i < written * KvDim; i++)
            {
                Assert.True(keys[i] == Value(slot, i) && values[i] == -Value(slot, i), $"slot {slot}, value {i} changed ({enabled})");
            }
        }
    }

    [SkippableFact]
    public void AHalfCache_KeepsKeysAndValuesInOnePageTheyFillTogether()
    {
        // f16 keys and values of 128 elements side by side: 512 bytes a position, as f32 keys alone, so a page is whole
        // after the same PositionsPerPage positions (apart, each would be half a page then).
        _ = HugePagesOnFault.SkipUnlessOn();
        Skip.IfNot(CollapseWorksHere(), "this kernel does not collapse anonymous memory into huge pages (MADV_COLLAPSE, Linux 6.1)");
        using var cache = new CpuKvCache(1, 1, Capacity, KvDim, QwenSharp.Formats.DType.F16);
        float[] keys = [.. Enumerable.Range(0, KvDim).Select(i => i * 0.5f)], values = [.. Enumerable.Range(0, KvDim).Select(i => -i * 0.25f)];
        for (int p = 0; p < PositionsPerPage; p++)
        {
            cache.Store(0, 0, p, keys, values);
        }

        cache.Filled(0, 0, PositionsPerPage - 1);
        Assert.Equal(0, HugeBytes(cache, layers: 1));
        cache.Filled(0, 0, PositionsPerPage);
        Assert.Equal(HugePages.Size, HugeBytes(cache, layers: 1));

        // Each position's values beside its keys, every one as stored.
        Span<Half> k = MemoryMarshal.Cast<byte, Half>(cache.Keys(0, 0)), v = MemoryMarshal.Cast<byte, Half>(cache.Values(0, 0));
        for (int p = 0; p < PositionsPerPage; p += 97)
        {
            for (int i = 0; i < KvDim; i++)
            {
                Assert.True((float)k[(p * 2 * KvDim) + i] == keys[i] && (float)v[(p * 2 * KvDim) + i] == values[i], $"position {p}, element {i}");
            }
        }
    }

    /// <summary>The backend tells the cache what attention wrote: a prefill that fills a slot's page puts it on huge pages.</summary>
    [SkippableFact]
    public void Attention_PrefillFillingAPage_PutsItOnHugePages()
    {
        _ = HugePagesOnFault.SkipUnlessOn();
        Skip.IfNot(CollapseWorksHere(), "this kernel does not collapse anonymous memory into huge pages (MADV_COLLAPSE, Linux 6.1)");

        // Eight KV heads of 128: 512 positions are one 2 MiB page, the whole slot.
        var shape = new AttentionShape(8, 8, 128, 10000);
        int dim = shape.NumHeads * shape.HeadDim, rows = (int)(HugePages.Size / (dim * sizeof(float)));
        using IBackend backend = TestBackends.Create("cpu");
        using var cache = (CpuKvCache)backend.CreateKvCache(1, 1, rows, dim);
        using DeviceBuffer q = backend.Allocate(rows, dim), k = backend.Allocate(rows, dim), v = backend.Allocate(rows, dim), output = backend.Allocate(rows, dim);
        float[] values = [.. Enumerable.Range(0, rows * dim).Select(i => (i % 7) * 0.125f)];
        backend.Write(values, q.Rows(rows));
        backend.Write(values, k.Rows(rows));
        backend.Write(values, v.Rows(rows));

        // All but the last position first: the page is not whole yet.
        backend.Attention(q.Rows(rows - 1), k.Rows(rows - 1), v.Rows(rows - 1), cache, 0, new int[rows - 1], [.. Enumerable.Range(0, rows - 1)], shape, output.Rows(rows - 1));
        Assert.Equal(0, HugeBytes(cache, layers: 1));
        backend.Attention(q.Rows(1), k.Rows(1), v.Rows(1), cache, 0, [0], [rows - 1], shape, output.Rows(1));
        Assert.Equal(2 * HugePages.Size, HugeBytes(cache, layers: 1));
    }

    private static float Value(int slot, int i) => (slot * 1_000_000) + i;

    private static void Write(CpuKvCache cache, int layer, int slot, int positions)
    {
        Span<float> keys = MemoryMarshal.Cast<byte, float>(cache.Keys(layer, slot)), values = MemoryMarshal.Cast<byte, float>(cache.Values(layer, slot));
        for (int i = 0; i < positions * KvDim; i++)
        {
            keys[i] = Value(slot, i);
            values[i] = -Value(slot, i);
        }
    }

    /// <summary>The huge-page bytes of the mappings that hold the cache (each layer's keys and values start one).</summary>
    private static long HugeBytes(CpuKvCache cache, int layers = Layers)
    {
        var starts = new List<long>();
        for (int l = 0; l < layers; l++)
        {
            starts.Add((long)Unsafe.AsPointer(ref MemoryMarshal.GetReference(cache.Keys(l, 0))));
            starts.Add((long)Unsafe.AsPointer(ref MemoryMarshal.GetReference(cache.Values(l, 0))));
        }

        // Neighbouring mappings with the same flags may be merged into one: count each mapping once.
        return HugePages.Mappings(File.ReadLines("/proc/self/smaps"))
            .Where(m => starts.Any(s => m.Start <= s && s < m.End))
            .Sum(m => m.Huge);
    }

    /// <summary>Whether this kernel collapses a written page of a fresh mapping (MADV_COLLAPSE).</summary>
    private static bool CollapseWorksHere()
    {
        byte* probe = (byte*)HugePages.AllocateUnadvised(HugePages.Size);
        try
        {
            new Span<byte>(probe, (int)HugePages.Size).Fill(1);
            return HugePages.Collapse(probe, HugePages.Size);
        }
        finally
        {
            HugePages.Free(probe);
        }
    }
}
