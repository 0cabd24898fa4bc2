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
    private readonly List<(string Name, GgmlType Type, long[] Shape, byte[] Data)> _tensors = [];

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
    public GgufWriter AddTensor(string name, GgmlType type, long[] shape, byte[] data)
    {
        _tensors.Add((name, type, shape, data));
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

        return WriteNewSplit(path.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) ? path[..^5] : path, split);
    }

    public void Write(string path) => WriteFile(path, _metadata, _tensors);

    /// <summary>
    /// Writes the model split across new files as llama.cpp's <c>llama-gguf-split --split</c> does
    /// (<see cref="GgufSplit"/>): <c>PREFIX-00001-of-0000N.gguf</c>, ... with <paramref name="prefix"/>, the tensors in
    /// order, a new part begun where <paramref name="limit"/> says, the metadata in the first part and the split keys in
    /// each. Written beside their names and moved into place only when all are written; none is written over an existing
    /// file. Returns the parts' paths.
    /// </summary>
    public IReadOnlyList<string> WriteNewSplit(string prefix, GgufSplitLimit limit)
    {
        ArgumentNullException.ThrowIfNull(limit);
        List<List<(string Name, GgmlType Type, long[] Shape, byte[] Data)>> parts = limit.Partition(_tensors, t => t.Data.Length);
        if (parts.Count > GgufSplit.MaxParts)
        {
            throw new InvalidOperationException($"{parts.Count} parts are more than a split GGUF model can have ({GgufSplit.MaxParts}); allow more bytes or tensors a part");
        }

        string[] paths = [.. Enumerable.Range(0, parts.Count).Select(i => GgufSplit.PathOf(prefix, i, parts.Count))];
        if (paths.FirstOrDefault(p => File.Exists(p) || Directory.Exists(p)) is string existing)
        {
            throw new IOException($"{existing} already exists; nothing is written over it");
        }

        try
        {
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

        return paths;
    }

    private static void WriteFile(string path, IReadOnlyList<(string Key, GgufValueType Type, Action<BinaryWriter> Write)> metadata,
        IReadOnlyList<(string Name, GgmlType Type, long[] Shape, byte[] Data)> tensors)
    {
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write);
        using var w = new BinaryWriter(stream, Encoding.UTF8);
        w.Write(GgufFile.Magic);
        w.Write(3u);
        w.Write((ulong)tensors.Count);
        w.Write((ulong)metadata.Count);
        foreach ((string key, GgufValueType type, Action<BinaryWriter> write) in metadata)
        {
            WriteString(w, key);
            w.Write((uint)type);
            write(w);
        }

        long offset = 0;
        foreach ((string name, GgmlType type, long[] shape, byte[] data) in tensors)
        {
            WriteString(w, name);
            w.Write((uint)shape.Length);
            foreach (long dimension in shape.Reverse())
            {
                w.Write((ulong)dimension);
            }

            w.Write((uint)type);
            w.Write((ulong)offset);
            offset = Align(offset + data.Length);
        }

        Pad(w, stream.Position);
        long dataStart = stream.Position;
        foreach ((_, _, _, byte[] data) in tensors)
        {
            Pad(w, stream.Position - dataStart);
            w.Write(data);
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
