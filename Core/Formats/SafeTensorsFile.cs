using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using QwenSharp.Errors;

namespace QwenSharp.Formats;

/// <summary>
/// One memory-mapped safetensors file: an 8-byte little-endian header length, a JSON header, then the data
/// area. Tensors are handed out as zero-copy <see cref="TensorView"/>s into the mapping, valid until Dispose.
/// </summary>
public sealed unsafe class SafeTensorsFile : IDisposable
{
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _data;
    private bool _disposed;

    private SafeTensorsFile(string path, MemoryMappedFile map, MemoryMappedViewAccessor view, byte* data,
        Dictionary<string, SafeTensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Path = path;
        _map = map;
        _view = view;
        _data = data;
        Tensors = tensors;
        Metadata = metadata;
    }

    public string Path { get; }

    public string FileName => System.IO.Path.GetFileName(Path);

    public IReadOnlyDictionary<string, SafeTensorInfo> Tensors { get; }

    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Maps the file and validates its header; throws <see cref="InvalidDataException"/> naming the file on any fault.</summary>
    public static SafeTensorsFile Open(string path)
    {
        string fileName = System.IO.Path.GetFileName(path);
        if (!File.Exists(path))
        {
            QwenThrow.FileNotFound($"{path}: file not found", path);
        }

        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        long fileLength = stream.Length;
        if (fileLength < 8)
        {
            stream.Dispose();
            QwenThrow.InvalidData($"{fileName}: {fileLength} bytes is too short for a safetensors file (truncated?)");
        }

        MemoryMappedFile map = MemoryMappedFile.CreateFromFile(
            stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
        MemoryMappedViewAccessor view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        byte* basePointer = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref basePointer);
        try
        {
            basePointer += view.PointerOffset;
            ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(basePointer, 8));
            if (headerLength > (ulong)(fileLength - 8))
            {
                QwenThrow.InvalidData(
                    $"{fileName}: header length {headerLength} exceeds the {fileLength - 8} bytes after it (truncated, or not a safetensors file)");
            }

            if (headerLength > SafeTensorsHeader.MaxHeaderBytes)
            {
                QwenThrow.InvalidData($"{fileName}: header length {headerLength} is over the format's limit of 100 MB (not a safetensors file?)");
            }

            byte[] json = new ReadOnlySpan<byte>(basePointer + 8, (int)headerLength).ToArray();
            long dataStart = 8 + (long)headerLength;
            var (tensors, metadata) = SafeTensorsHeader.Parse(json, fileLength - dataStart, fileName);
            return new SafeTensorsFile(path, map, view, basePointer + dataStart, tensors, metadata);
        }
        catch
        {
            view.SafeMemoryMappedViewHandle.ReleasePointer();
            view.Dispose();
            map.Dispose();
            throw;
        }
    }

    /// <summary>A zero-copy view of a tensor; a dtype QwenSharp does not compute with is a <see cref="NotSupportedException"/>.</summary>
    public bool TryGetView(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out TensorView? view)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!Tensors.TryGetValue(name, out SafeTensorInfo info))
        {
            view = default;
            return false;
        }

        if (!DTypes.TryParseSafeTensorsName(info.DTypeName, out DType dtype))
        {
            QwenThrow.NotSupported(
                $"{FileName}: tensor '{name}' has dtype {info.DTypeName}; QwenSharp computes with F32, F16 and BF16 weights");
        }

        view = new TensorView(name, FileName, dtype, info.Shape, (nint)(_data + info.Begin));
        return true;
    }

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
