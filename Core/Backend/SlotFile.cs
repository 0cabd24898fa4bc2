using System.Buffers.Binary;
using System.Text;
using QwenSharp.Formats;
using QwenSharp.Qwen2;

namespace QwenSharp.Backend;

/// <summary>
/// One KV-cache slot kept in a file (llama-server's <c>POST /slots/{id}?action=save|restore</c>): the tokens the slot
/// holds and each layer's keys and values of those positions, in the layout every backend reads and writes alike
/// (<see cref="KvCache.ReadRows"/>), so that a slot saved on the CPU restores on the GPU and back. Little-endian:
/// <code>
///   "QSKVSLOT"  u32 version (1)  u32 layers  u32 kvDim  u8 n + n bytes: the cache type's name (f32, f16, bf16, q8_0, q4_0)
///   u32 a + a × f32: the LoRA adapter scales the keys and values were computed with (a = 0: none)
///   u32 n + n × i32: the tokens
///   per layer: n rows of keys, then n rows of values, each KvCache.RowBytes bytes
/// </code>
/// A file is checked whole before any of it is written into a cache: every field against the cache it goes into (named
/// with the file when it differs), the tokens against the vocabulary, and its length against what the header says, so a
/// truncated or foreign file is refused, never half restored. What it cannot tell is whether the keys and values came
/// from this model: the scheduler that restores one recomputes its last position and compares (see
/// <see cref="Distance"/>).
/// </summary>
public static class SlotFile
{
    private static readonly byte[] s_magic = "QSKVSLOT"u8.ToArray();

    public const int Version = 1;

    /// <summary>The most LoRA adapters a file may name (far past any server's).</summary>
    private const int MaxAdapters = 4096;

    /// <summary>
    /// What a file must match to go into a cache: its layers, row width and element type, and the most positions it may
    /// hold (a cache's capacity, or a model's context where the cache is made to fit the file).
    /// </summary>
    public sealed record Shape(int Layers, int KvDim, DType ElementType, int Capacity)
    {
        public static Shape Of(KvCache cache)
        {
            ArgumentNullException.ThrowIfNull(cache);
            return new(cache.Layers, cache.KvDim, cache.ElementType, cache.Capacity);
        }

        /// <summary>Bytes of one position's keys (or values).</summary>
        public long RowBytes => KvCache.RowBytesOf(ElementType, KvDim);
    }

    /// <summary>A file at the path <see cref="WriteFile"/> was asked to write that is not a slot file, and so is left as it is.</summary>
    public sealed class OtherFileException(string message) : IOException(message);

    /// <summary>What a slot file holds besides its rows, and where they start.</summary>
    /// <param name="Tokens">The slot's tokens, position by position.</param>
    /// <param name="AdapterScales">The LoRA adapter scales its keys and values were computed with; null for none.</param>
    /// <param name="RowsAt">The byte offset of the first layer's keys.</param>
    public sealed record Header(int[] Tokens, float[]? AdapterScales, long RowsAt);

    /// <summary>Whether the file at <paramref name="path"/> starts as a slot file does (so that saving over it loses nothing the user made).</summary>
    public static bool IsSlotFile(string path)
    {
        using FileStream stream = File.OpenRead(path);
        Span<byte> magic = stackalloc byte[8];
        return stream.ReadAtLeast(magic, magic.Length, throwOnEndOfStream: false) == magic.Length && magic.SequenceEqual(s_magic);
    }

    /// <summary>
    /// Writes a slot file at <paramref name="path"/> through <paramref name="write"/>: into a new file beside it (never one
    /// that is there already), moved into place whole, so a failed save leaves the old file. A file at the path that is not
    /// a slot file is left as it is: an <see cref="IOException"/> naming it as <paramref name="name"/>. Returns what
    /// <paramref name="write"/> returns (the bytes written).
    /// </summary>
    public static long WriteFile(string path, string name, Func<Stream, long> write)
    {
        ArgumentNullException.ThrowIfNull(write);
        if (File.Exists(path) && !IsSlotFile(path))
        {
            throw new OtherFileException($"{name} exists and is not a slot file; it is left as it is (save under another name)");
        }

        string partial = $"{path}.{Guid.NewGuid():N}.partial";
        var stream = new FileStream(partial, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
        try
        {
            long bytes;
            using (stream)
            {
                bytes = write(stream);
            }

            File.Move(partial, path, overwrite: true);
            return bytes;
        }
        catch
        {
            File.Delete(partial);
            throw;
        }
    }

    /// <summary>
    /// Writes positions [0, <paramref name="tokens"/>.Count) of <paramref name="slot"/> to <paramref name="stream"/>
    /// and returns the bytes written.
    /// </summary>
    public static long Write(Stream stream, KvCache cache, int slot, IReadOnlyList<int> tokens, float[]? adapterScales)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(cache);
        ArgumentNullException.ThrowIfNull(tokens);
        int n = tokens.Count;
        byte[] name = Encoding.ASCII.GetBytes(KvCache.NameOf(cache.ElementType));
        using var header = new MemoryStream();
        header.Write(s_magic);
        WriteInt(header, Version);
        WriteInt(header, cache.Layers);
        WriteInt(header, cache.KvDim);
        header.WriteByte((byte)name.Length);
        header.Write(name);
        WriteInt(header, adapterScales?.Length ?? 0);
        foreach (float scale in adapterScales ?? [])
        {
            WriteInt(header, BitConverter.SingleToInt32Bits(scale));
        }

        WriteInt(header, n);
        foreach (int token in tokens)
        {
            WriteInt(header, token);
        }

        header.Position = 0;
        header.CopyTo(stream);
        long written = header.Length, rows = (long)n * cache.RowBytes;
        ForEachChunk(stream, cache, n, (layer, start, count, keys, values, keysAt, valuesAt) =>
        {
            cache.ReadRows(layer, slot, start, count, keys, values);
            stream.Position = keysAt;
            stream.Write(keys);
            stream.Position = valuesAt;
            stream.Write(values);
        });
        stream.Position = header.Length + (2 * rows * cache.Layers);
        return written + (2 * rows * cache.Layers);
    }

    /// <summary>Positions a chunk of rows: <see cref="Write"/> and <see cref="ReadRows"/> hold this many at once, not a whole layer's.</summary>
    private const int ChunkPositions = 512;

    private delegate void ChunkAction(int layer, int start, int count, Span<byte> keys, Span<byte> values, long keysAt, long valuesAt);

    /// <summary>
    /// Each layer's positions [0, <paramref name="n"/>) a chunk at a time, with where the chunk's keys and values lie in
    /// the file (a layer's keys, then its values, from the stream's position on): a long slot's rows never all in memory.
    /// </summary>
    private static void ForEachChunk(Stream stream, KvCache cache, int n, ChunkAction action)
    {
        if (!stream.CanSeek)
        {
            throw new ArgumentException("a slot file is read and written by seeking in it: give a file or a memory stream", nameof(stream));
        }

        long start = stream.Position, rowBytes = cache.RowBytes, layerBytes = 2 * (long)n * rowBytes;
        byte[] keys = new byte[Math.Min(n, ChunkPositions) * rowBytes], values = new byte[keys.Length];
        for (int layer = 0; layer < cache.Layers; layer++)
        {
            long layerAt = start + (layer * layerBytes);
            for (int first = 0; first < n; first += ChunkPositions)
            {
                int count = Math.Min(ChunkPositions, n - first);
                int bytes = checked((int)(count * rowBytes));
                action(layer, first, count, keys.AsSpan(0, bytes), values.AsSpan(0, bytes), layerAt + (first * rowBytes), layerAt + ((n + first) * rowBytes));
            }
        }
    }

    /// <summary>
    /// Reads and checks the header of the slot file <paramref name="name"/> (as errors name it) for <paramref name="cache"/>
    /// and a vocabulary of <paramref name="vocabSize"/>, and checks that the stream's length is exactly what it says.
    /// </summary>
    public static Header ReadHeader(Stream stream, string name, KvCache cache, int vocabSize, int adapters) => ReadHeader(stream, name, Shape.Of(cache), vocabSize, adapters);

    /// <summary>
    /// <see cref="ReadHeader(Stream, string, KvCache, int, int)"/> against a <paramref name="cache"/> shape rather than a
    /// cache. A file of positions must have been saved with as many LoRA adapters as the model has, <paramref name="adapters"/>.
    /// </summary>
    public static Header ReadHeader(Stream stream, string name, Shape cache, int vocabSize, int adapters)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(cache);
        var reader = new FieldReader(stream, name);
        byte[] magic = new byte[s_magic.Length];
        if (stream.ReadAtLeast(magic, magic.Length, throwOnEndOfStream: false) != magic.Length || !magic.AsSpan().SequenceEqual(s_magic))
        {
            throw new InvalidDataException($"{name}: not a slot file (it does not start with QSKVSLOT)");
        }

        reader.Skip(magic.Length);

        int version = reader.Int("version");
        if (version != Version)
        {
            throw new InvalidDataException($"{name}: slot file version {version}; this build reads version {Version}");
        }

        Expect(name, "layers", reader.Int("layers"), cache.Layers);
        Expect(name, "kvDim", reader.Int("kvDim"), cache.KvDim);
        int nameLength = reader.Bytes(1)[0];
        string type = Encoding.ASCII.GetString(reader.Bytes(nameLength));
        if (type != KvCache.NameOf(cache.ElementType))
        {
            throw new InvalidDataException($"{name}: its keys and values are stored as {type}; the cache here stores {KvCache.NameOf(cache.ElementType)} (--kv-cache-type, QwenModelOptions.KvCacheType)");
        }

        int saved = reader.Int("adapter count");
        if (saved is < 0 or > MaxAdapters)
        {
            throw new InvalidDataException($"{name}: adapter count {saved} is not a count of LoRA adapters");
        }

        float[]? scales = saved == 0 ? null : new float[saved];
        for (int a = 0; a < saved; a++)
        {
            scales![a] = BitConverter.Int32BitsToSingle(reader.Int("adapter scale"));
        }

        int n = reader.Int("token count");
        if (n < 0 || n > cache.Capacity)
        {
            throw new InvalidDataException($"{name}: it holds {n} positions; at most {cache.Capacity} fit here (serve's --context, or the model's context)");
        }

        if (n > 0 && saved != adapters)
        {
            throw new InvalidDataException($"{name}: saved with {saved} LoRA adapters; the model here has {adapters} (serve --lora, QwenModelOptions.LoraAdapters)");
        }

        long rowsAt = reader.Position + (4L * n), expected = rowsAt + (2L * cache.Layers * n * cache.RowBytes);
        if (stream.CanSeek && stream.Length != expected)
        {
            throw new InvalidDataException($"{name}: {stream.Length} bytes; a slot file of {n} positions of {cache.Layers} layers of {cache.KvDim} {type} values is {expected}");
        }

        int[] tokens = new int[n];
        for (int i = 0; i < n; i++)
        {
            tokens[i] = reader.Int("token");
            if ((uint)tokens[i] >= (uint)vocabSize)
            {
                throw new InvalidDataException($"{name}: token {i} is {tokens[i]}, not in this model's vocabulary of {vocabSize}");
            }
        }

        return new Header(tokens, scales, rowsAt);
    }

    /// <summary>
    /// Writes the rows of a file whose header <paramref name="header"/> was read (the stream at its end) into
    /// <paramref name="slot"/>, layer by layer, and returns the bytes read in all; the slot's length is left to the caller
    /// (<see cref="KvCache.Hold"/>), which may check the rows first.
    /// </summary>
    public static long ReadRows(Stream stream, string name, Header header, KvCache cache, int slot)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(header);
        ArgumentNullException.ThrowIfNull(cache);
        int n = header.Tokens.Length;
        stream.Position = header.RowsAt;
        ForEachChunk(stream, cache, n, (layer, start, count, keys, values, keysAt, valuesAt) =>
        {
            stream.Position = keysAt;
            bool whole = stream.ReadAtLeast(keys, keys.Length, throwOnEndOfStream: false) == keys.Length;
            stream.Position = valuesAt;
            if (!whole || stream.ReadAtLeast(values, values.Length, throwOnEndOfStream: false) != values.Length)
            {
                throw new InvalidDataException($"{name}: ends inside layer {layer}'s keys and values");
            }

            cache.WriteRows(layer, slot, start, count, keys, values);
        });
        return header.RowsAt + (2L * cache.Layers * n * cache.RowBytes);
    }

    /// <summary>
    /// How far apart two rows of <paramref name="cache"/>'s layout are: |a − b| / |a| over their values (0 for equal rows, about
    /// 1.4 for unrelated ones). A restored slot's last position recomputed by the model it is restored into lands within a
    /// rounding of the file's (the kernels of a step of one row and of a prompt chunk differ in their last bits, and a
    /// quantized cache may round a value to the next code); another model's lands far away.
    /// </summary>
    public static double Distance(KvCache cache, ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        ArgumentNullException.ThrowIfNull(cache);
        float[] x = new float[cache.KvDim], y = new float[cache.KvDim];
        TensorValues.ToSingle(cache.ElementType, a[..cache.RowBytes], x, "a slot's row");
        TensorValues.ToSingle(cache.ElementType, b[..cache.RowBytes], y, "a slot's row");
        double difference = 0, size = 0;
        for (int i = 0; i < x.Length; i++)
        {
            difference += (x[i] - (double)y[i]) * (x[i] - (double)y[i]);
            size += (double)x[i] * x[i];
        }

        return size == 0 ? (difference == 0 ? 0 : double.PositiveInfinity) : Math.Sqrt(difference / size);
    }

    /// <summary>
    /// Restores a file whose header <paramref name="header"/> was read into <paramref name="slot"/> for
    /// <paramref name="model"/>: its rows (<see cref="ReadRows"/>), then <see cref="Verify"/> at the LoRA scales it was
    /// saved with (none for a model without adapters). Returns the bytes read and those scales; the slot then holds the
    /// file's positions. An <see cref="InvalidDataException"/> names what is wrong, and the slot's rows are then the
    /// caller's to forget.
    /// </summary>
    public static (long Bytes, float[]? AdapterScales) Restore(Stream stream, string name, Header header, KvCache cache, int slot, Qwen2Model model,
        ForwardState state, TokenBatch batch)
    {
        ArgumentNullException.ThrowIfNull(header);
        ArgumentNullException.ThrowIfNull(model);
        long bytes = ReadRows(stream, name, header, cache, slot);
        float[]? scales = model.Adapters.Count == 0 ? null : header.AdapterScales;
        Verify(model, cache, slot, header.Tokens, scales, state, batch, name);
        return (bytes, scales);
    }

    /// <summary>
    /// Checks restored rows against the model they go into: feeds the last of <paramref name="tokens"/> again at its
    /// position of <paramref name="slot"/> (with <paramref name="adapterScales"/>) and compares what the model stores there
    /// with what the file held, layer by layer (<see cref="Distance"/>): within a rounding for the model that saved it, far
    /// off for another (other weights, or the same shape with other numbers). The slot then holds all the tokens'
    /// positions; an <see cref="InvalidDataException"/> naming the file and the layer otherwise.
    /// </summary>
    public static void Verify(Qwen2Model model, KvCache cache, int slot, IReadOnlyList<int> tokens, float[]? adapterScales, ForwardState state, TokenBatch batch, string name)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(cache);
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(batch);
        int last = tokens.Count - 1, rowBytes = cache.RowBytes;
        if (last < 0)
        {
            cache.Hold(slot, 0);
            return;
        }

        byte[] saved = new byte[2 * cache.Layers * rowBytes], recomputed = new byte[saved.Length];
        cache.Hold(slot, tokens.Count);
        for (int layer = 0; layer < cache.Layers; layer++)
        {
            Span<byte> rows = saved.AsSpan(2 * layer * rowBytes, 2 * rowBytes);
            cache.ReadRows(layer, slot, last, 1, rows[..rowBytes], rows[rowBytes..]);
        }

        cache.Hold(slot, last);
        batch.Clear();
        batch.Add(tokens[last], last, slot, wantLogits: true, adapterScales);
        model.Forward(batch, cache, state);
        double tolerance = Tolerance(cache.ElementType), worst = 0;
        int worstLayer = 0;
        for (int layer = 0; layer < cache.Layers; layer++)
        {
            Span<byte> rows = recomputed.AsSpan(2 * layer * rowBytes, 2 * rowBytes);
            cache.ReadRows(layer, slot, last, 1, rows[..rowBytes], rows[rowBytes..]);
            for (int half = 0; half < 2; half++)
            {
                int at = (2 * layer * rowBytes) + (half * rowBytes);
                double distance = Distance(cache, saved.AsSpan(at, rowBytes), recomputed.AsSpan(at, rowBytes));
                if (!(distance <= worst))
                {
                    (worst, worstLayer) = (distance, layer);
                }
            }
        }

        if (!(worst <= tolerance))
        {
            throw new InvalidDataException(
                $"{name}: its keys and values are not this model's: position {last} computed again differs from the file's by {worst:G3} in layer {worstLayer} (within {tolerance:G2} for the model that saved it; another model, other weights or other LoRA scales)");
        }
    }

    /// <summary>
    /// How far (<see cref="Distance"/>) a position computed again may land from the saved one: a step of one row and a
    /// prompt chunk run other kernels, and another backend others again, whose sums differ in their last bits; a narrow
    /// cache type may round a value to the neighbouring half or code. Another model's rows land about 1.4 away.
    /// </summary>
    private static double Tolerance(DType type) => type switch
    {
        DType.F32 => 0.01,
        DType.F16 or DType.BF16 => 0.03,
        DType.Q8_0 => 0.08,
        _ => 0.3,
    };

    private static void Expect(string name, string field, int actual, int expected)
    {
        if (actual != expected)
        {
            throw new InvalidDataException($"{name}: {field} is {actual}; this model's KV cache has {expected} (a slot file of another model)");
        }
    }

    private static void WriteInt(Stream stream, int value)
    {
        Span<byte> bytes = stackalloc byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(bytes, value);
        stream.Write(bytes);
    }

    /// <summary>Reads fields in order and names the first one the file ends inside.</summary>
    private sealed class FieldReader(Stream stream, string name)
    {
        public long Position { get; private set; }

        /// <summary>Counts bytes read past the reader.</summary>
        public void Skip(int count) => Position += count;

        public byte[] Bytes(int count)
        {
            byte[] bytes = new byte[count];
            if (stream.ReadAtLeast(bytes, count, throwOnEndOfStream: false) != count)
            {
                throw new InvalidDataException($"{name}: ends inside its header ({Position + count} bytes needed)");
            }

            Position += count;
            return bytes;
        }

        public int Int(string field)
        {
            byte[] bytes = new byte[4];
            if (stream.ReadAtLeast(bytes, 4, throwOnEndOfStream: false) != 4)
            {
                throw new InvalidDataException($"{name}: ends inside its header (in its {field})");
            }

            Position += 4;
            return BinaryPrimitives.ReadInt32LittleEndian(bytes);
        }
    }
}
