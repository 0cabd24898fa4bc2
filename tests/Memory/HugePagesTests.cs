using QwenSharp.Memory;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Memory;

/// <summary>Alone: the real-memory test reads the process's mappings, which other tests' buffers would move under it.</summary>
[Collection(AloneCollection.Name)]
public sealed unsafe class HugePagesTests
{
    [Fact]
    public void Allocate_SmallAndLarge_AlignedAsPromisedAndEveryByteKept()
    {
        foreach (long bytes in new[] { 1L, HugePages.Threshold - 1, HugePages.Threshold, HugePages.Threshold + 4097 })
        {
            byte* memory = (byte*)HugePages.Allocate(bytes);
            try
            {
                long alignment = bytes < HugePages.Threshold ? 64 : HugePages.Size;
                Assert.Equal(0, (long)memory % alignment);
                var span = new Span<byte>(memory, checked((int)bytes));
                for (int i = 0; i < span.Length; i++)
                {
                    span[i] = (byte)(i * 7);
                }

                for (int i = 0; i < span.Length; i++)
                {
                    Assert.Equal((byte)(i * 7), span[i]);
                }
            }
            finally
            {
                HugePages.Free(memory);
            }
        }
    }

    [Fact]
    public void Allocate_MoreThanTheAddressSpace_ThrowsOutOfMemoryNamingTheSize()
    {
        var e = Assert.Throws<OutOfMemoryException>(() => HugePages.Allocate(1L << 60));
        if (OperatingSystem.IsLinux())
        {
            Assert.Contains($"could not map {1L << 60} bytes", e.Message);
        }
    }

    [Fact]
    public void Advise_RangeHoldingNoWholeHugePage_AsksNothing()
    {
        byte* memory = (byte*)HugePages.Allocate(4 * HugePages.Size);
        try
        {
            // 2 MiB starting one byte into a huge page holds no whole one: the advice must not round it out to a neighbour.
            Assert.False(HugePages.Advise(memory + 1, HugePages.Size));
            Assert.False(HugePages.Advise(memory, HugePages.Size - 1));
        }
        finally
        {
            HugePages.Free(memory);
        }
    }

    /// <summary>
    /// Where Linux has transparent huge pages on ("always" or "madvise"), a large allocation is advised and, once written,
    /// backed by them: the smaps entry of its mapping counts AnonHugePages (read by <see cref="HugePages.Residency(IReadOnlyList{ValueTuple{nint, long}})"/>).
    /// </summary>
    [SkippableFact]
    public void Allocate_Large_OnLinuxWithHugePages_IsBackedByHugePages()
    {
        string enabled = HugePagesOnFault.SkipUnlessOn();

        long bytes = 4 * HugePages.Size;
        byte* memory = (byte*)HugePages.Allocate(bytes);
        try
        {
            new Span<byte>(memory, (int)bytes).Fill(1);

            // The mapping that holds it: Linux may have merged it with a neighbour advised alike (another buffer of
            // this process), whose pages then count too, so its huge pages must be at least the allocation's own.
            long mappingHuge = HugePages.Mappings(File.ReadLines("/proc/self/smaps")).Single(m => m.Start <= (long)memory && (long)memory < m.End).Huge;
            Assert.True(mappingHuge >= bytes, $"{mappingHuge} bytes on huge pages in the mapping that holds the {bytes}-byte allocation at {(nint)memory:x} ({enabled})");
            (long resident, long huge) = HugePages.Residency([((nint)memory, bytes)]) ?? throw new InvalidOperationException("no /proc/self/smaps");
            Assert.True(resident > 0 && huge > 0, $"Residency: {resident} bytes resident, {huge} on huge pages");
            Assert.True(HugePages.Advise(memory, bytes));
        }
        finally
        {
            HugePages.Free(memory);
        }
    }

    /// <summary>
    /// A mapped file read whole is resident; its pages dropped (<see cref="QwenSharp.Formats.MappedFile.DropPages"/>, Linux) it
    /// is not, and every byte reads back as the file's, mapped again from the page cache. A range outside the mapping is
    /// refused, and anonymous memory is never given to it here (it would read back as zeros).
    /// </summary>
    [SkippableFact]
    public void DropPages_MappedFileReadWhole_LeavesMemoryAndReadsBackTheSameBytes()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "madvise and /proc/self/smaps are Linux's");
        string path = Path.Combine(Path.GetTempPath(), $"qwensharp-drop-{Guid.NewGuid():N}.bin");
        var bytes = new byte[4 << 20];
        new Random(5).NextBytes(bytes);
        File.WriteAllBytes(path, bytes);
        try
        {
            using var file = QwenSharp.Formats.MappedFile.Open(path, 1, "a test file");
            var mapped = new ReadOnlySpan<byte>(file.Pointer, bytes.Length);
            long Resident() => (HugePages.Residency([((nint)file.Pointer, file.Length)]) ?? throw new InvalidOperationException("no /proc/self/smaps")).Resident;

            Assert.True(mapped.SequenceEqual(bytes));
            Assert.True(Resident() >= bytes.Length / 2, $"{Resident()} bytes resident after reading all {bytes.Length}");
            Assert.False(file.DropPages(file.Pointer + 4096, file.Length), "a range running past the mapping's end");
            Assert.True(file.DropPages(file.Pointer, file.Length));
            Assert.True(Resident() <= 2 * 4096, $"{Resident()} bytes resident after dropping the pages");
            Assert.True(mapped.SequenceEqual(bytes), "the bytes read back after their pages were dropped differ from the file's");
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Residency_SmapsLines_SharesEachMappingsCountsByTheRangesPartOfIt()
    {
        // Two mappings: 8 MiB of a file, 6 MiB of it resident and 4 MiB of that on PMDs; 4 MiB anonymous, all resident,
        // 2 MiB of it huge. A third mapping the ranges miss must not count.
        string[] smaps =
        [
            "7f0000000000-7f0000800000 r--s 00000000 fe:00 11658146                   /models/q4_k_m.gguf",
            "Size:               8192 kB",
            "Rss:                6144 kB",
            "AnonHugePages:         0 kB",
            "FilePmdMapped:      4096 kB",
            "VmFlags: rd sh mr mw me ms hg",
            "7f0000800000-7f0000c00000 rw-p 00000000 00:00 0",
            "Rss:                4096 kB",
            "AnonHugePages:      2048 kB",
            "FilePmdMapped:         0 kB",
            "7f1000000000-7f1000400000 rw-p 00000000 00:00 0",
            "Rss:                4096 kB",
            "AnonHugePages:      4096 kB",
        ];
        const long MiB = 1 << 20;

        // The whole file mapping and half the anonymous one.
        (long resident, long huge) = HugePages.Residency(smaps, [(unchecked((nint)0x7f0000000000), 8 * MiB), (unchecked((nint)0x7f0000800000), 2 * MiB)]);
        Assert.Equal((6 * MiB) + (2 * MiB), resident);
        Assert.Equal((4 * MiB) + MiB, huge);

        // A quarter of the file mapping alone.
        Assert.Equal((6 * MiB / 4, MiB), HugePages.Residency(smaps, [(unchecked((nint)0x7f0000200000), 2 * MiB)]));
    }
}
