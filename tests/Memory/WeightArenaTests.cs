using System.Runtime.InteropServices;
using QwenSharp.Memory;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Memory;

/// <summary>Alone: the huge-page test reads the process's mappings, which other tests' buffers would move under it.</summary>
[Collection(AloneCollection.Name)]
public sealed unsafe class WeightArenaTests
{
    [Fact]
    public void Allocate_TensorsOfEverySize_AlignedDisjointAndEachKeepsItsBytes()
    {
        // Small ones share a chunk; one larger than a chunk gets its own; a zero-byte one still gets its own address.
        long[] sizes = [1, 63, 64, 65, 0, 3 << 20, WeightArena.ChunkBytes + 100, 5, WeightArena.ChunkBytes - 10, 4096];
        using var arena = new WeightArena();
        var blocks = new List<(long Start, long Bytes)>();
        for (int i = 0; i < sizes.Length; i++)
        {
            byte* memory = (byte*)arena.Allocate(sizes[i]);
            Assert.Equal(0, (long)memory % WeightArena.Alignment);
            new Span<byte>(memory, checked((int)sizes[i])).Fill((byte)(i + 1));
            blocks.Add(((long)memory, sizes[i]));
        }

        // Each tensor's bytes are still its own once all are written (an overlap would have overwritten some).
        for (int i = 0; i < blocks.Count; i++)
        {
            var span = new ReadOnlySpan<byte>((byte*)blocks[i].Start, checked((int)blocks[i].Bytes));
            Assert.True(span.IndexOfAnyExcept((byte)(i + 1)) < 0, $"tensor {i} ({blocks[i].Bytes} bytes) was overwritten");
        }

        var sorted = blocks.OrderBy(b => b.Start).ToList();
        for (int i = 1; i < sorted.Count; i++)
        {
            Assert.True(sorted[i].Start >= sorted[i - 1].Start + Math.Max(sorted[i - 1].Bytes, 1), $"blocks at {sorted[i - 1].Start:x} and {sorted[i].Start:x} overlap");
        }
    }

    [Fact]
    public void Free_LastPieceOfAnOldChunk_UnmapsIt_AndTheCurrentChunkIsReusedOnceEmpty()
    {
        using var arena = new WeightArena();
        byte* first = (byte*)arena.Allocate(1000);
        byte* second = (byte*)arena.Allocate(1000);
        Assert.Equal((nint)first + 1024, (nint)second);

        // Too big for what is left: a fresh chunk; the first one, half freed, stays mapped until its last piece goes.
        byte* big = (byte*)arena.Allocate(WeightArena.ChunkBytes);
        arena.Free(first);
        Assert.Equal(2, arena.ChunkCount);
        arena.Free(second);
        Assert.Equal(1, arena.ChunkCount);

        // The big one's chunk is the current one: emptied, the next piece starts at its beginning again.
        arena.Free(big);
        Assert.Equal(1, arena.ChunkCount);
        Assert.Equal((nint)big, (nint)arena.Allocate(64));
    }

    [Fact]
    public void Free_MemoryNotFromThisArena_ThrowsNamingIt()
    {
        using var arena = new WeightArena();
        _ = arena.Allocate(100);
        nint elsewhere = (nint)NativeMemory.Alloc(64);
        try
        {
            var e = Assert.Throws<ArgumentException>(() => arena.Free((void*)elsewhere));
            Assert.Contains("was not allocated by this arena", e.Message);
        }
        finally
        {
            NativeMemory.Free((void*)elsewhere);
        }
    }

    [Fact]
    public void Dispose_ThenFree_DoesNothing_ThenAllocate_Throws()
    {
        var arena = new WeightArena();
        void* memory = arena.Allocate(100);
        arena.Dispose();
        arena.Free(memory);    // a weight disposed after its backend: the memory went with the arena
        Assert.Throws<ObjectDisposedException>(() => arena.Allocate(100));
    }

    [Fact]
    public void Allocate_NegativeSize_Throws() =>
        Assert.Throws<ArgumentOutOfRangeException>(() =>
        {
            using var arena = new WeightArena();
            arena.Allocate(-1);
        });

    /// <summary>
    /// The reason it exists: tensors each under <see cref="HugePages.Threshold"/> (Qwen2.5-1.5B's k and v projections
    /// are 0.8 MB in BF16, q and o 4.7 MB), which alone would come from the C heap on 4 KiB pages, sit on huge pages
    /// together, where Linux has them for advised memory.
    /// </summary>
    [SkippableFact]
    public void Allocate_ManySmallTensors_OnLinuxWithHugePages_SitOnHugePages()
    {
        string enabled = HugePagesOnFault.SkipUnlessOn();

        const int Tensors = 32, Bytes = 1 << 20;
        using var arena = new WeightArena();
        var ranges = new List<(nint Start, long Length)>();
        for (int i = 0; i < Tensors; i++)
        {
            byte* memory = (byte*)arena.Allocate(Bytes);
            new Span<byte>(memory, Bytes).Fill(1);
            ranges.Add(((nint)memory, Bytes));
        }

        (long resident, long huge) = HugePages.Residency(ranges) ?? throw new InvalidOperationException("no /proc/self/smaps");
        Assert.True(huge >= 0.9 * resident, $"{huge} of the {resident} resident bytes of {Tensors} tensors of {Bytes} bytes on huge pages ({enabled})");
    }
}
