using System.Globalization;
using System.Runtime.InteropServices;

namespace QwenSharp.Memory;

/// <summary>
/// Transparent huge pages (2 MiB) for the large buffers decode streams through: the weights, mapped or allocated at
/// load, and the read-bandwidth measurement they are set against. A decode kernel's software prefetches run a few pages
/// ahead of it, and on 4 KiB pages every one of them that enters a new page first needs that page's translation; on
/// 2 MiB pages almost none do. The KV cache fills a position at a time, and advised from the start a huge page would
/// hold 2 MiB of memory per layer for the first position written into it: it is mapped unadvised
/// (<see cref="AllocateUnadvised"/>) and each page collapsed once written whole (<see cref="Collapse"/>).
/// </summary>
/// <remarks>
/// Measured on the 2-core Intel Xeon (a KVM guest, Linux 6.18, transparent huge pages "madvise"), one thread: the Q4_K
/// kernel over 512 MiB read 0.85-0.87 of a plain sum's bandwidth (the sum on 4 KiB pages) from huge pages against
/// 0.74-0.77 from 4 KiB ones, and the sum itself read about 3% more from huge pages (medians of 12 alternating passes).
/// Linux only: elsewhere, and where huge pages are off, the buffers are as before.
/// </remarks>
internal static unsafe partial class HugePages
{
    /// <summary>The huge page size on x64 and arm64 Linux.</summary>
    public const long Size = 2L << 20;

    /// <summary>
    /// Allocations from this size up are mapped afresh, 2 MiB aligned, and advised: below it, the alignment could waste
    /// more than a quarter of the buffer.
    /// </summary>
    public const long Threshold = 8L << 20;

    private const int MadviseDontNeed = 4;
    private const int MadviseHugePage = 14;
    private const int MadviseCollapse = 25;
    private const int ProtectReadWrite = 0x1 | 0x2;
    private const int MapPrivateAnonymous = 0x02 | 0x20;

    /// <summary>The mappings <see cref="Allocate"/> and <see cref="AllocateUnadvised"/> made, by the address returned: their length, for munmap.</summary>
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<nint, nuint> Mapped = new();

    /// <summary>
    /// <paramref name="bytes"/> of native memory (free with <see cref="Free"/>), 64-byte aligned. From
    /// <see cref="Threshold"/> up on Linux, a fresh anonymous mapping, 2 MiB aligned and advised before anything touches
    /// it, so that its pages are huge from the first fault where the system allows. Not from the C heap: glibc serves
    /// even large requests out of memory freed before once its mmap threshold has grown, pages already faulted in small,
    /// which advice does not change (in the test run, 8 MiB came back on no huge page at all).
    /// </summary>
    public static void* Allocate(long bytes)
    {
        if (bytes < Threshold || !OperatingSystem.IsLinux())
        {
            return FromHeap(bytes);
        }

        void* memory = MapAligned(bytes);
        _ = Advise(memory, bytes);
        return memory;
    }

    /// <summary>
    /// <paramref name="bytes"/> of native memory (free with <see cref="Free"/>), on Linux a fresh anonymous mapping 2 MiB
    /// aligned whatever its size and not advised: its pages are small until <see cref="Collapse"/> turns whole written
    /// ones huge (the KV cache, which fills a position at a time). Elsewhere from the C heap, 64-byte aligned.
    /// </summary>
    public static void* AllocateUnadvised(long bytes) => OperatingSystem.IsLinux() ? MapAligned(Math.Max(bytes, 1)) : FromHeap(bytes);

    /// <summary>From the C heap, 64-byte aligned (at least one byte, so every allocation has an address of its own).</summary>
    private static void* FromHeap(long bytes) => NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 1), 64);

    /// <summary>
    /// Asks Linux to put the whole 2 MiB pages inside [<paramref name="start"/>, + <paramref name="length"/>) of an
    /// anonymous mapping on huge pages now (madvise MADV_COLLAPSE, Linux 6.1 and later; a copy of each page), whatever
    /// the mapping's advice. Returns whether Linux did; failing (an older kernel, huge pages off, none free) does no
    /// harm: the memory stays on small pages.
    /// </summary>
    public static bool Collapse(void* start, long length)
    {
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }

        long first = ((long)start + Size - 1) & ~(Size - 1), end = ((long)start + length) & ~(Size - 1);
        return end > first && Madvise((void*)first, (nuint)(end - first), MadviseCollapse) == 0;
    }

    /// <summary>
    /// Lets the whole 4 KiB pages inside [<paramref name="start"/>, + <paramref name="length"/>) of a read-only file mapping go
    /// from this process's memory (madvise MADV_DONTNEED, Linux): the file's bytes stay in the page cache, and a page read
    /// again is mapped again from there, the same bytes. Only for file mappings: anonymous memory would read back as zeros.
    /// Returns whether Linux did; elsewhere nothing changes.
    /// </summary>
    public static bool DropFilePages(void* start, long length)
    {
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }

        const long page = 4096;
        long first = ((long)start + page - 1) & ~(page - 1), end = ((long)start + length) & ~(page - 1);
        return end > first && Madvise((void*)first, (nuint)(end - first), MadviseDontNeed) == 0;
    }

    /// <summary>A fresh anonymous mapping of <paramref name="bytes"/>, 2 MiB aligned (Linux).</summary>
    private static void* MapAligned(long bytes)
    {
        // Room to slide to a 2 MiB boundary, then the slack either side unmapped again.
        nuint length = (nuint)((bytes + 4095) & ~4095L), reserved = length + (nuint)Size;
        nint mapping = Mmap(null, reserved, ProtectReadWrite, MapPrivateAnonymous, -1, 0);
        if (mapping == -1)
        {
            throw new OutOfMemoryException($"not enough memory: could not map {bytes} bytes (mmap errno {Marshal.GetLastPInvokeError()})");
        }

        nint aligned = (nint)(((long)mapping + Size - 1) & ~(Size - 1));
        nuint head = (nuint)(aligned - mapping), tail = reserved - head - length;
        if (head > 0)
        {
            _ = Munmap((void*)mapping, head);
        }

        if (tail > 0)
        {
            _ = Munmap((void*)(aligned + (nint)length), tail);
        }

        Mapped[aligned] = length;
        return (void*)aligned;
    }

    /// <summary>Frees what <see cref="Allocate"/> returned.</summary>
    public static void Free(void* memory)
    {
        if (Mapped.TryRemove((nint)memory, out nuint length))
        {
            _ = Munmap(memory, length);
        }
        else
        {
            NativeMemory.AlignedFree(memory);
        }
    }

    /// <summary>
    /// Asks Linux to back the whole 2 MiB pages inside [<paramref name="start"/>, + <paramref name="length"/>) with huge
    /// pages (madvise MADV_HUGEPAGE). For a file mapping this takes effect as the file is read into the page cache; pages
    /// already cached stay as they were. Failure (huge pages off, an old kernel, a file system without large folios) does
    /// no harm: the memory works the same, only slower to stream. Returns whether Linux took the advice for at least one
    /// huge page.
    /// </summary>
    public static bool Advise(void* start, long length)
    {
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }

        long first = ((long)start + Size - 1) & ~(Size - 1), end = ((long)start + length) & ~(Size - 1);
        return end > first && Madvise((void*)first, (nuint)(end - first), MadviseHugePage) == 0;
    }

    /// <summary>
    /// How many bytes of the given address ranges are resident, and how many of those on huge pages, from Linux's
    /// /proc/self/smaps; null where there is none. smaps counts per mapping, not per byte: each mapping's Rss and its
    /// AnonHugePages + FilePmdMapped are shared out by the part of the mapping the ranges cover.
    /// </summary>
    public static (long Resident, long Huge)? Residency(IReadOnlyList<(nint Start, long Length)> ranges)
    {
        const string Smaps = "/proc/self/smaps";
        if (!OperatingSystem.IsLinux() || !File.Exists(Smaps))
        {
            return null;
        }

        try
        {
            return Residency(File.ReadLines(Smaps), ranges);
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary><see cref="Residency(IReadOnlyList{ValueTuple{nint, long}})"/> over the lines of an smaps file.</summary>
    internal static (long Resident, long Huge) Residency(IEnumerable<string> smaps, IReadOnlyList<(nint Start, long Length)> ranges)
    {
        double resident = 0, huge = 0;
        foreach (Mapping mapping in Mappings(smaps))
        {
            long overlap = 0;
            foreach ((nint first, long length) in ranges)
            {
                overlap += Math.Max(0, Math.Min(mapping.End, (long)first + length) - Math.Max(mapping.Start, (long)first));
            }

            double covered = mapping.End > mapping.Start ? (double)overlap / (mapping.End - mapping.Start) : 0;
            resident += mapping.Resident * covered;
            huge += mapping.Huge * covered;
        }

        return ((long)resident, (long)huge);
    }

    /// <summary>One mapping of an smaps file: its addresses [Start, End), its resident bytes and those on huge pages.</summary>
    internal readonly record struct Mapping(long Start, long End, long Resident, long Huge);

    /// <summary>The mappings of an smaps file, in its order: Rss as resident, AnonHugePages + FilePmdMapped as huge.</summary>
    internal static IEnumerable<Mapping> Mappings(IEnumerable<string> smaps)
    {
        Mapping? current = null;
        foreach (string line in smaps)
        {
            if (TryParseMappingHeader(line, out long start, out long end))
            {
                if (current is Mapping done)
                {
                    yield return done;
                }

                current = new Mapping(start, end, 0, 0);
            }
            else if (current is Mapping open)
            {
                current = open with
                {
                    Resident = open.Resident + (FieldKiB(line, "Rss:") * 1024),
                    Huge = open.Huge + ((FieldKiB(line, "AnonHugePages:") + FieldKiB(line, "FilePmdMapped:")) * 1024),
                };
            }
        }

        if (current is Mapping last)
        {
            yield return last;
        }
    }

    /// <summary>An smaps mapping line: "start-end perms offset dev inode [path]", addresses in hex.</summary>
    private static bool TryParseMappingHeader(string line, out long start, out long end)
    {
        start = end = 0;
        int dash = line.IndexOf('-', StringComparison.Ordinal), space = line.IndexOf(' ', StringComparison.Ordinal);
        return dash > 0 && space > dash
            && long.TryParse(line.AsSpan(0, dash), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out start)
            && long.TryParse(line.AsSpan(dash + 1, space - dash - 1), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out end);
    }

    /// <summary>The kB of an smaps field line such as "Rss:   1024 kB" when it is <paramref name="name"/>, else 0.</summary>
    private static long FieldKiB(string line, string name)
    {
        if (!line.StartsWith(name, StringComparison.Ordinal))
        {
            return 0;
        }

        ReadOnlySpan<char> rest = line.AsSpan(name.Length).Trim();
        int space = rest.IndexOf(' ');
        return long.TryParse(space < 0 ? rest : rest[..space], NumberStyles.None, CultureInfo.InvariantCulture, out long kib) ? kib : 0;
    }

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    private static partial nint Mmap(void* address, nuint length, int protection, int flags, int descriptor, nint offset);

    [LibraryImport("libc", EntryPoint = "munmap")]
    private static partial int Munmap(void* address, nuint length);

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(void* address, nuint length, int advice);
}
