using QwenSharp.Errors;

namespace QwenSharp.Formats.Gguf;

/// <summary>
/// A memory-mapped GGUF file (versions 2 and 3): its metadata and tensors, validated as strictly as safetensors —
/// magic, version, counts and lengths against the file's size, value types, alignment, every tensor's byte size
/// against its shape and type, offsets inside the file and not overlapping. A model split across files
/// (<see cref="GgufSplit"/>) is opened from its first part and reads as one file: the first part's metadata, every
/// part's tensors. Tensors are zero-copy views into the mappings, valid until Dispose.
/// </summary>
public sealed unsafe class GgufFile : IDisposable
{
    public const uint Magic = 0x46554747; // "GGUF" read as a little-endian uint32
    public const int DefaultAlignment = 32;

    private readonly Part[] _parts;
    private bool _disposed;

    private GgufFile(Part[] parts, List<GgufTensorInfo> tensors)
    {
        _parts = parts;
        Path = parts[0].Path;
        Version = parts[0].Version;
        Metadata = parts[0].Metadata;
        RawMetadata = parts[0].RawMetadata;
        TensorOrder = tensors;
        Tensors = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    /// <summary>The file given (the first part of a split model).</summary>
    public string Path { get; }

    public string FileName => System.IO.Path.GetFileName(Path);

    /// <summary>Every file the tensors are read from: <see cref="Path"/> alone, or a split model's parts in order.</summary>
    public IReadOnlyList<string> PartPaths => [.. _parts.Select(p => p.Path)];

    /// <summary>The bytes of all its files together.</summary>
    public long ByteLength => _parts.Sum(p => p.File.Length);

    public int Version { get; }

    /// <summary>Keys to values: long (integers), double (floats), bool, string, or an array of one of those.</summary>
    public IReadOnlyDictionary<string, object> Metadata { get; }

    public IReadOnlyDictionary<string, GgufTensorInfo> Tensors { get; }

    /// <summary>Every metadata key in the file's order, with its value's type and bytes (<see cref="RawBytes"/>).</summary>
    public IReadOnlyList<GgufRawValue> RawMetadata { get; }

    /// <summary>The tensors in the file's order (a split model's: the first part's, then the second's, ...).</summary>
    public IReadOnlyList<GgufTensorInfo> TensorOrder { get; }

    /// <summary>A metadata value's bytes as stored (valid until Dispose).</summary>
    public ReadOnlySpan<byte> RawBytes(GgufRawValue value)
    {
        ArgumentNullException.ThrowIfNull(value);
        ObjectDisposedException.ThrowIf(_disposed, this);
        return new ReadOnlySpan<byte>(_parts[0].File.Pointer + value.Offset, checked((int)value.Length));
    }

    /// <summary>True for a file that starts with GGUF's magic (what --model looks at to tell a GGUF file from a folder).</summary>
    public static bool HasMagic(string path)
    {
        try
        {
            using FileStream stream = File.OpenRead(path);
            Span<byte> head = stackalloc byte[4];
            return stream.ReadAtLeast(head, 4, throwOnEndOfStream: false) == 4 && System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(head) == Magic;
        }
        catch (IOException)
        {
            return false;
        }
    }

    /// <summary>
    /// Maps the file (and a split model's other parts) and validates the headers; throws <see cref="InvalidDataException"/>
    /// naming the file on any fault.
    /// </summary>
    public static GgufFile Open(string path)
    {
        var parts = new List<Part> { OpenPart(path, 0) };
        try
        {
            Part first = parts[0];
            int count = SplitCount(first);
            if (count > 1)
            {
                OpenOtherParts(parts, count);
            }

            var tensors = new List<GgufTensorInfo>(parts.Sum(p => p.Tensors.Count));
            var names = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (Part part in parts)
            {
                foreach (GgufTensorInfo tensor in part.Tensors)
                {
                    if (!names.TryAdd(tensor.Name, part.FileName))
                    {
                        QwenThrow.InvalidData($"{part.FileName}: tensor '{tensor.Name}' is also in {names[tensor.Name]} (a split model holds each tensor once)");
                    }

                    tensors.Add(tensor);
                }
            }

            if (count > 1 && GgufMetadata.Integer(first.Metadata, GgufSplit.TensorsKey, first.FileName) is long expected && expected != tensors.Count)
            {
                QwenThrow.InvalidData($"{first.FileName}: {GgufSplit.TensorsKey} says the {count} parts hold {expected} tensors; they hold {tensors.Count}");
            }

            return new GgufFile([.. parts], tensors);
        }
        catch
        {
            foreach (Part part in parts)
            {
                part.File.Dispose();
            }

            throw;
        }
    }

    /// <summary>The number of parts the first file says the model has (1 when it is not split), or why it cannot be read as the first.</summary>
    private static int SplitCount(Part first)
    {
        // llama.cpp reads a count of 0 (llama-gguf-split's placeholder) as no split.
        long count = SplitKey(first, GgufSplit.CountKey) is long given and not 0 ? given : 1;
        long number = SplitKey(first, GgufSplit.NumberKey) ?? 0;
        if (count < 1 || count > GgufSplit.MaxParts || number < 0 || number >= count)
        {
            QwenThrow.InvalidData($"{first.FileName}: {GgufSplit.NumberKey} {number} and {GgufSplit.CountKey} {count} do not name a part of a split model");
        }

        if (number != 0)
        {
            string? prefix = GgufSplit.PrefixOf(first.Path, (int)number, (int)count);
            string firstPart = prefix is null ? "its first part" : System.IO.Path.GetFileName(GgufSplit.PathOf(prefix, 0, (int)count));
            QwenThrow.InvalidData($"{first.FileName} is part {number + 1} of {count} of a split model; give the first part, {firstPart}");
        }

        return (int)count;
    }

    /// <summary>Parts 2..count beside the first, named as llama.cpp names them; each must say it is that part of that many.</summary>
    private static void OpenOtherParts(List<Part> parts, int count)
    {
        Part first = parts[0];
        string prefix = GgufSplit.PrefixOf(first.Path, 0, count)
            ?? throw new InvalidDataException(
                $"{first.FileName} is part 1 of {count} of a split model, but its name does not end in {System.IO.Path.GetFileName(GgufSplit.PathOf("", 0, count))}, so its other parts cannot be found (llama.cpp names them PREFIX-0000i-of-{count:D5}.gguf)");
        for (int index = 1; index < count; index++)
        {
            string path = GgufSplit.PathOf(prefix, index, count);
            if (!File.Exists(path))
            {
                QwenThrow.FileNotFound($"{System.IO.Path.GetFileName(path)}: file not found (part {index + 1} of {count} of the split model {first.FileName}; all parts go in one folder)", path);
            }

            Part part = OpenPart(path, index);
            parts.Add(part);
            long? number = SplitKey(part, GgufSplit.NumberKey);
            long? total = SplitKey(part, GgufSplit.CountKey);
            if (number is null || total is null)
            {
                QwenThrow.InvalidData($"{part.FileName}: no {GgufSplit.NumberKey} and {GgufSplit.CountKey}, so it is not part {index + 1} of {count} of the split model {first.FileName}");
            }

            if (number != index || total != count)
            {
                QwenThrow.InvalidData($"{part.FileName}: says it is part {number + 1} of {total}, expected part {index + 1} of {count} of the split model {first.FileName}");
            }
        }
    }

    private static long? SplitKey(Part part, string key) => GgufMetadata.Integer(part.Metadata, key, part.FileName);

    private static Part OpenPart(string path, int index)
    {
        string fileName = System.IO.Path.GetFileName(path);
        MappedFile file = MappedFile.Open(path, 24, "a GGUF file");
        try
        {
            byte* basePointer = file.Pointer;
            long fileLength = file.Length;
            var reader = new GgufReader(new ReadOnlySpan<byte>(basePointer, (int)Math.Min(fileLength, int.MaxValue)), fileName);
            uint magic = reader.UInt32("the magic");
            if (magic != Magic)
            {
                QwenThrow.InvalidData($"{fileName}: not a GGUF file (it starts with 0x{magic:x8}, a GGUF file with \"GGUF\")");
            }

            int version = (int)reader.UInt32("the version");
            if (version is not (2 or 3))
            {
                QwenThrow.InvalidData($"{fileName}: GGUF version {version}; QwenSharp reads versions 2 and 3");
            }

            // A tensor info is at least a name length, a dimension count, one dimension, a type and an offset.
            long tensorCount = reader.Count("the tensor count", 8 + 4 + 8 + 4 + 8);
            long keyCount = reader.Count("the metadata key count", 8 + 4 + 1);
            var rawMetadata = new List<GgufRawValue>();
            Dictionary<string, object> metadata = GgufMetadata.Read(ref reader, keyCount, fileName, rawMetadata);
            int alignment = Alignment(metadata, fileName);
            var infos = new List<GgufTensorInfo>((int)Math.Min(tensorCount, 100_000));
            var names = new HashSet<string>(StringComparer.Ordinal);
            for (long i = 0; i < tensorCount; i++)
            {
                GgufTensorInfo info = ReadTensorInfo(ref reader, i, fileName) with { Part = index };
                if (!names.Add(info.Name))
                {
                    QwenThrow.InvalidData($"{fileName}: tensor '{info.Name}' is listed twice");
                }

                infos.Add(info);
            }

            long dataStart = (reader.Position + alignment - 1) / alignment * alignment;
            long dataLength = fileLength - dataStart;
            CheckPlacement(infos, alignment, dataLength, fileName);
            return new Part(path, file, basePointer + dataStart, version, metadata, rawMetadata, infos);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>The address of a tensor's first byte in the mapping (of its part's file).</summary>
    public nint DataOf(GgufTensorInfo tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        ObjectDisposedException.ThrowIf(_disposed, this);
        return (nint)(_parts[tensor.Part].Data + tensor.Offset);
    }

    /// <summary>
    /// Lets the pages of the <paramref name="length"/> bytes at <paramref name="data"/> go from this process's memory where they
    /// lie in one of the files' mappings (<see cref="MappedFile.DropPages"/>); false for bytes that are not the files'.
    /// </summary>
    public bool DropPages(nint data, long length)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _parts.Any(part => part.File.DropPages((byte*)data, length));
    }

    private static int Alignment(Dictionary<string, object> metadata, string fileName)
    {
        if (!metadata.TryGetValue("general.alignment", out object? value))
        {
            return DefaultAlignment;
        }

        if (value is not long alignment || alignment <= 0 || alignment > 1 << 20 || (alignment & (alignment - 1)) != 0)
        {
            QwenThrow.InvalidData($"{fileName}: general.alignment is {GgufMetadata.Describe(value)}, expected a power of two");
            return 0;
        }

        return (int)alignment;
    }

    private static GgufTensorInfo ReadTensorInfo(ref GgufReader reader, long index, string fileName)
    {
        string name = reader.String($"the name of tensor {index}");
        uint dimensions = reader.UInt32($"the dimension count of tensor '{name}'");
        if (dimensions is 0 or > 4)
        {
            QwenThrow.InvalidData($"{fileName}: tensor '{name}' has {dimensions} dimensions; GGUF tensors have 1 to 4");
        }

        var shape = new long[dimensions];
        for (int d = 0; d < dimensions; d++)
        {
            ulong size = reader.UInt64($"dimension {d} of tensor '{name}'");
            if (size is 0 or > int.MaxValue)
            {
                QwenThrow.InvalidData($"{fileName}: tensor '{name}' has dimension {d} of {size}");
            }

            shape[d] = (long)size;
        }

        int type = (int)reader.UInt32($"the type of tensor '{name}'");
        ulong offset = reader.UInt64($"the offset of tensor '{name}'");
        if (!GgmlTypes.TryGetBlock(type, out int blockValues, out int blockBytes))
        {
            QwenThrow.NotSupported($"{fileName}: tensor '{name}' has GGUF {GgmlTypes.Name(type)}, which QwenSharp does not read");
        }

        if (shape[0] % blockValues != 0)
        {
            QwenThrow.InvalidData($"{fileName}: tensor '{name}' has rows of {shape[0]} values, not whole {GgmlTypes.Name(type)} blocks of {blockValues}");
        }

        long bytes;
        try
        {
            bytes = checked(shape[0] / blockValues * blockBytes * shape.Skip(1).Aggregate(1L, (a, b) => checked(a * b)));
        }
        catch (OverflowException)
        {
            QwenThrow.InvalidData($"{fileName}: tensor '{name}' of shape [{string.Join(", ", shape)}] is too large");
            return null!;
        }

        if (offset > long.MaxValue)
        {
            QwenThrow.InvalidData($"{fileName}: tensor '{name}' has offset {offset}");
        }

        return new GgufTensorInfo(name, shape, type, (long)offset, bytes);
    }

    /// <summary>Every tensor aligned, inside the data section, and apart from the others.</summary>
    private static void CheckPlacement(List<GgufTensorInfo> infos, int alignment, long dataLength, string fileName)
    {
        GgufTensorInfo? previous = null;
        foreach (GgufTensorInfo info in infos.OrderBy(t => t.Offset))
        {
            if (info.Offset % alignment != 0)
            {
                QwenThrow.InvalidData($"{fileName}: tensor '{info.Name}' starts at data offset {info.Offset}, not a multiple of the alignment {alignment}");
            }

            if (info.Offset + info.ByteLength > dataLength)
            {
                QwenThrow.InvalidData(
                    $"{fileName}: tensor '{info.Name}' ({info.ByteLength} bytes at data offset {info.Offset}) ends past the file's {dataLength} bytes of data (truncated?)");
            }

            if (previous is not null && info.Offset < previous.Offset + previous.ByteLength)
            {
                QwenThrow.InvalidData($"{fileName}: tensors '{previous.Name}' and '{info.Name}' overlap");
            }

            previous = info;
        }
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        foreach (Part part in _parts)
        {
            part.File.Dispose();
        }
    }

    /// <summary>One mapped file: a whole model, or one part of a split one.</summary>
    private sealed class Part(string path, MappedFile file, byte* data, int version,
        Dictionary<string, object> metadata, List<GgufRawValue> rawMetadata, List<GgufTensorInfo> tensors)
    {
        public string Path { get; } = path;

        public string FileName => System.IO.Path.GetFileName(Path);

        public MappedFile File { get; } = file;

        /// <summary>The first byte of the data section.</summary>
        public byte* Data { get; } = data;

        public int Version { get; } = version;

        public Dictionary<string, object> Metadata { get; } = metadata;

        public List<GgufRawValue> RawMetadata { get; } = rawMetadata;

        public List<GgufTensorInfo> Tensors { get; } = tensors;
    }
}
