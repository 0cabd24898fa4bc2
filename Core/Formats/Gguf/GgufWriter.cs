using System.Text;

namespace QwenSharp.Formats.Gguf;

/// <summary>
/// Writes a GGUF version 3 file: metadata in the order added, then the tensor infos and the data, each tensor at a
/// multiple of the alignment (32, general.alignment's default). Shapes are given row-major (Hugging Face's order) and
/// written in ggml's (innermost first).
/// </summary>
public sealed class GgufWriter
{
    private readonly List<(string Key, GgufValueType Type, Action<BinaryWriter> Write)> _metadata = [];
    private readonly List<PendingTensor> _tensors = [];

    public GgufWriter Add(string key, string value) => Add(key, GgufValueType.String, w => WriteString(w, value));

    public GgufWriter Add(string key, ushort value) => Add(key, GgufValueType.UInt16, w => w.Write(value));

    public GgufWriter Add(string key, uint value) => Add(key, GgufValueType.UInt32, w => w.Write(value));

    public GgufWriter Add(string key, int value) => Add(key, GgufValueType.Int32, w => w.Write(value));

    public GgufWriter Add(string key, float value) => Add(key, GgufValueType.Float32, w => w.Write(value));

    public GgufWriter Add(string key, bool value) => Add(key, GgufValueType.Bool, w => w.Write((byte)(value ? 1 : 0)));

    public GgufWriter Add(string key, IReadOnlyList<string> values) => AddArray(key, GgufValueType.String, values.Count, (w, i) => WriteString(w, values[i]));

    public GgufWriter Add(string key, IReadOnlyList<int> values) => AddArray(key, GgufValueType.Int32, values.Count, (w, i) => w.Write(values[i]));

    public GgufWriter Add(string key, IReadOnlyList<float> values) => AddArray(key, GgufValueType.Float32, values.Count, (w, i) => w.Write(values[i]));

    /// <summary>A value of any type as another file stores it (<see cref="GgufFile.RawBytes"/>): its bytes are written as they are.</summary>
    public GgufWriter AddRaw(string key, GgufValueType type, ReadOnlySpan<byte> value)
    {
        byte[] bytes = value.ToArray();
        return Add(key, type, w => w.Write(bytes));
    }

    /// <summary>A tensor of <paramref name="shape"/> (row-major) whose bytes are <paramref name="data"/> in <paramref name="type"/>.</summary>
    public GgufWriter AddTensor(string name, GgmlType type, long[] shape, byte[] data) => AddTensor(name, shape, () => (type, data));

    /// <summary>
    /// A tensor of <paramref name="shape"/> (row-major) whose type and bytes <paramref name="encode"/> makes when the file is
    /// written, one tensor at a time: a model of any size is written holding one tensor's bytes, not the whole file's.
    /// </summary>
    public GgufWriter AddTensor(string name, long[] shape, Func<(GgmlType Type, byte[] Data)> encode)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(encode);
        _tensors.Add(new PendingTensor(name, shape, encode));
        return this;
    }

    /// <summary>
    /// Writes a new file at <paramref name="path"/>: beside it first, then moved into place (never over an existing file), so
    /// a failed write leaves no half-written file.
    /// </summary>
    public void WriteNew(string path)
    {
        if (File.Exists(path) || Directory.Exists(path))
        {
            throw new IOException($"{path} already exists; nothing is written over it");
        }

        string temporary = path + ".partial";
        try
        {
            Write(temporary);
            File.Move(temporary, path, overwrite: false);
        }
        finally
        {
            File.Delete(temporary);
        }
    }

    /// <summary>
    /// <see cref="WriteNew(string)"/> without <paramref name="split"/>; with it, <see cref="WriteNewSplit"/> into parts named
    /// after <paramref name="path"/> (less its <c>.gguf</c>, as llama-quantize names kept splits). Returns the paths written.
    /// </summary>
    public IReadOnlyList<string> WriteNew(string path, GgufSplitLimit? split)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (split is null)
        {
            WriteNew(path);
            return [path];
        }

        return WriteNewSplit(GgufSplit.PrefixFor(path), split);
    }

    public void Write(string path) => WriteFile(path, _metadata, _tensors);

    /// <summary>
    /// Writes the model split across new files as llama.cpp's <c>llama-gguf-split --split</c> does
    /// (<see cref="GgufSplit"/>): <c>PREFIX-00001-of-0000N.gguf</c>, ... with <paramref name="prefix"/>, the tensors in
    /// order, a new part begun where <paramref name="limit"/> says, the metadata in the first part and the split keys in
    /// each. Written beside their names and moved into place only when all are written; none is written over an existing
    /// file. Returns the parts' paths. A limit of bytes needs every tensor's size before the first part's header: the
    /// tensors are encoded into a spool file beside the parts first (one tensor in memory at a time), then copied.
    /// </summary>
    public IReadOnlyList<string> WriteNewSplit(string prefix, GgufSplitLimit limit)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        ArgumentNullException.ThrowIfNull(limit);
        string spoolPath = prefix + ".spool.partial";
        FileStream? spool = null;
        string[] paths = [];
        try
        {
            IReadOnlyList<PendingTensor> tensors = _tensors;
            if (limit.MaxBytes is not null)
            {
                spool = new FileStream(spoolPath, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 16, FileOptions.DeleteOnClose);
                tensors = Spool(spool);
            }

            List<List<PendingTensor>> parts = limit.Partition(tensors, t => t.Length ?? 0);
            if (parts.Count > GgufSplit.MaxParts)
            {
                throw new InvalidOperationException($"{parts.Count} parts are more than a split GGUF model can have ({GgufSplit.MaxParts}); allow more bytes or tensors a part");
            }

            paths = [.. Enumerable.Range(0, parts.Count).Select(i => GgufSplit.PathOf(prefix, i, parts.Count))];
            if (paths.FirstOrDefault(p => File.Exists(p) || Directory.Exists(p)) is string existing)
            {
                throw new IOException($"{existing} already exists; nothing is written over it");
            }

            for (int i = 0; i < parts.Count; i++)
            {
                var metadata = new List<(string Key, GgufValueType Type, Action<BinaryWriter> Write)>();
                if (i == 0)
                {
                    metadata.AddRange(_metadata.Where(m => !GgufSplit.IsSplitKey(m.Key)));
                }

                int index = i;
                metadata.Add((GgufSplit.NumberKey, GgufValueType.UInt16, w => w.Write((ushort)index)));
                metadata.Add((GgufSplit.CountKey, GgufValueType.UInt16, w => w.Write((ushort)parts.Count)));
                metadata.Add((GgufSplit.TensorsKey, GgufValueType.Int32, w => w.Write(_tensors.Count)));
                WriteFile(paths[i] + ".partial", metadata, parts[i]);
            }

            for (int i = 0; i < parts.Count; i++)
            {
                File.Move(paths[i] + ".partial", paths[i], overwrite: false);
            }
        }
        catch
        {
            foreach (string path in paths)
            {
                File.Delete(path + ".partial");
            }

            throw;
        }
        finally
        {
            spool?.Dispose();
        }

        return paths;
    }

    /// <summary>Every tensor encoded into <paramref name="spool"/>, in order; what is returned reads each back, its type and length known.</summary>
    private List<PendingTensor> Spool(FileStream spool)
    {
        var spooled = new List<PendingTensor>(_tensors.Count);
        foreach (PendingTensor tensor in _tensors)
        {
            (GgmlType type, byte[] data) = tensor.EncodeChecked();
            long at = spool.Position;
            spool.Write(data);
            int length = data.Length;
            spooled.Add(new PendingTensor(tensor.Name, tensor.Shape, () =>
            {
                var bytes = new byte[length];
                spool.Position = at;
                spool.ReadExactly(bytes);
                return (type, bytes);
            }) { Length = length });
        }

        return spooled;
    }

    /// <summary>
    /// One file: the header's place is kept (its length does not depend on the tensors' types or offsets, all fixed-size
    /// fields), the tensors are encoded and written one at a time after it, then the header is written with what they turned out to be.
    /// </summary>
    private static void WriteFile(string path, IReadOnlyList<(string Key, GgufValueType Type, Action<BinaryWriter> Write)> metadata, IReadOnlyList<PendingTensor> tensors)
    {
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16);
        using var w = new BinaryWriter(stream, Encoding.UTF8);
        long headerLength = 4 + 4 + 8 + 8 + MetadataBytes(metadata).Length
            + tensors.Sum(t => 8L + Encoding.UTF8.GetByteCount(t.Name) + 4 + (8L * t.Shape.Length) + 4 + 8);
        long dataStart = Align(headerLength);
        stream.Position = dataStart;
        var types = new GgmlType[tensors.Count];
        var offsets = new long[tensors.Count];
        for (int i = 0; i < tensors.Count; i++)
        {
            (types[i], byte[] data) = tensors[i].EncodeChecked();
            offsets[i] = stream.Position - dataStart;
            w.Write(data);
            Pad(w, stream.Position - dataStart);
        }

        stream.Position = 0;
        w.Write(GgufFile.Magic);
        w.Write(3u);
        w.Write((ulong)tensors.Count);
        w.Write((ulong)metadata.Count);
        w.Write(MetadataBytes(metadata));
        for (int i = 0; i < tensors.Count; i++)
        {
            WriteString(w, tensors[i].Name);
            w.Write((uint)tensors[i].Shape.Length);
            foreach (long dimension in tensors[i].Shape.Reverse())
            {
                w.Write((ulong)dimension);
            }

            w.Write((uint)types[i]);
            w.Write((ulong)offsets[i]);
        }

        System.Diagnostics.Debug.Assert(stream.Position == headerLength, "the header is as long as its place");
        Pad(w, stream.Position);
    }

    private static byte[] MetadataBytes(IReadOnlyList<(string Key, GgufValueType Type, Action<BinaryWriter> Write)> metadata)
    {
        using var buffer = new MemoryStream();
        using (var w = new BinaryWriter(buffer, Encoding.UTF8, leaveOpen: true))
        {
            foreach ((string key, GgufValueType type, Action<BinaryWriter> write) in metadata)
            {
                WriteString(w, key);
                w.Write((uint)type);
                write(w);
            }
        }

        return buffer.ToArray();
    }

    /// <summary>A tensor to be written: its name, row-major shape, how to make its bytes, and their length where already known.</summary>
    private sealed record PendingTensor(string Name, long[] Shape, Func<(GgmlType Type, byte[] Data)> Encode)
    {
        public long? Length { get; init; }

        /// <summary><see cref="Encode"/>, its bytes checked to be the shape's in the type (a wrong encoder fails here, not in a reader).</summary>
        public (GgmlType Type, byte[] Data) EncodeChecked()
        {
            (GgmlType type, byte[] data) = Encode();
            long elements = Shape.Aggregate(1L, (a, b) => a * b);
            if (GgmlTypes.TryGetBlock((int)type, out int values, out int bytes) && elements % values == 0 && data.LongLength != elements / values * bytes)
            {
                throw new InvalidOperationException($"tensor '{Name}': {data.LongLength} bytes, but [{string.Join(", ", Shape)}] in {GgmlTypes.Name((int)type)} is {elements / values * bytes}");
            }

            return (type, data);
        }
    }

    private GgufWriter Add(string key, GgufValueType type, Action<BinaryWriter> write)
    {
        _metadata.Add((key, type, write));
        return this;
    }

    private GgufWriter AddArray(string key, GgufValueType elementType, int count, Action<BinaryWriter, int> writeItem) =>
        Add(key, GgufValueType.Array, w =>
        {
            w.Write((uint)elementType);
            w.Write((ulong)count);
            for (int i = 0; i < count; i++)
            {
                writeItem(w, i);
            }
        });

    private static long Align(long offset) => (offset + GgufFile.DefaultAlignment - 1) / GgufFile.DefaultAlignment * GgufFile.DefaultAlignment;

    private static void Pad(BinaryWriter w, long position)
    {
        for (long i = position; i < Align(position); i++)
        {
            w.Write((byte)0);
        }
    }

    private static void WriteString(BinaryWriter w, string value)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(value);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }
}
