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

    public void Write(string path)
    {
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write);
        using var w = new BinaryWriter(stream, Encoding.UTF8);
        w.Write(GgufFile.Magic);
        w.Write(3u);
        w.Write((ulong)_tensors.Count);
        w.Write((ulong)_metadata.Count);
        foreach ((string key, GgufValueType type, Action<BinaryWriter> write) in _metadata)
        {
            WriteString(w, key);
            w.Write((uint)type);
            write(w);
        }

        long offset = 0;
        var offsets = new List<long>();
        foreach ((string name, GgmlType type, long[] shape, byte[] data) in _tensors)
        {
            WriteString(w, name);
            w.Write((uint)shape.Length);
            foreach (long dimension in shape.Reverse())
            {
                w.Write((ulong)dimension);
            }

            w.Write((uint)type);
            w.Write((ulong)offset);
            offsets.Add(offset);
            offset = Align(offset + data.Length);
        }

        Pad(w, stream.Position);
        long dataStart = stream.Position;
        for (int i = 0; i < _tensors.Count; i++)
        {
            Pad(w, stream.Position - dataStart);
            w.Write(_tensors[i].Data);
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
