using System.Buffers.Binary;
using QwenSharp.Errors;

namespace QwenSharp.Formats;

/// <summary>
/// One memory-mapped safetensors file: an 8-byte little-endian header length, a JSON header, then the data
/// area. Tensors are handed out as zero-copy <see cref="TensorView"/>s into the mapping, valid until Dispose.
/// </summary>
public sealed unsafe class SafeTensorsFile : IDisposable
{
    private readonly MappedFile _file;
    private readonly byte* _data;
    private bool _disposed;

    private SafeTensorsFile(string path, MappedFile file, byte* data,
        Dictionary<string, SafeTensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Path = path;
        _file = file;
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
        MappedFile file = MappedFile.Open(path, 8, "a safetensors file");
        try
        {
            byte* basePointer = file.Pointer;
            long fileLength = file.Length;
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
            return new SafeTensorsFile(path, file, basePointer + dataStart, tensors, metadata);
        }
        catch
        {
            file.Dispose();
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
        _file.Dispose();
    }
}
