using System.IO.MemoryMappedFiles;
using QwenSharp.Errors;
using QwenSharp.Memory;

namespace QwenSharp.Formats;

/// <summary>
/// A whole file mapped read-only, and the address of its first byte, held until Dispose: what the safetensors and
/// GGUF readers hand their zero-copy tensor views out of.
/// </summary>
internal sealed unsafe class MappedFile : IDisposable
{
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private bool _disposed;

    private MappedFile(MemoryMappedFile map, MemoryMappedViewAccessor view, byte* pointer, long length)
    {
        _map = map;
        _view = view;
        Pointer = pointer;
        Length = length;
    }

    public byte* Pointer { get; }

    public long Length { get; }

    /// <summary>Maps <paramref name="path"/>; a missing file, or one shorter than <paramref name="minimumLength"/> for <paramref name="format"/>, is an error naming it.</summary>
    public static MappedFile Open(string path, long minimumLength, string format)
    {
        if (!File.Exists(path))
        {
            QwenThrow.FileNotFound($"{path}: file not found", path);
        }

        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        long length = stream.Length;
        if (length < minimumLength)
        {
            stream.Dispose();
            QwenThrow.InvalidData($"{Path.GetFileName(path)}: {length} bytes is too short for {format} (truncated?)");
        }

        MemoryMappedFile map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
        MemoryMappedViewAccessor view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        byte* pointer = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
        pointer += view.PointerOffset;

        // Weights are streamed from here at every decode step: huge pages where the page cache can give them.
        _ = HugePages.Advise(pointer, length);
        return new MappedFile(map, view, pointer, length);
    }

    /// <summary>
    /// Lets the pages of [<paramref name="start"/>, + <paramref name="length"/>) go from this process's memory, where the range
    /// lies in this mapping (<see cref="HugePages.DropFilePages"/>: read again from the page cache where something reads them).
    /// Returns whether they went.
    /// </summary>
    public bool DropPages(byte* start, long length) =>
        !_disposed && start >= Pointer && length >= 0 && start + length <= Pointer + Length && HugePages.DropFilePages(start, length);

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
    }
}
