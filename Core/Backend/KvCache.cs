using QwenSharp.Formats;

namespace QwenSharp.Backend;

/// <summary>
/// Keys and values of every layer for <see cref="Slots"/> independent sequences, each up to
/// <see cref="Capacity"/> positions, preallocated so nothing grows during decode. A token at position p of
/// slot s writes its keys and values at (s, p) and attends to positions 0..p of slot s only: sequences in one
/// batch never see each other, so a batch needs no padding and no padding mask.
/// Keys and values are stored as <see cref="ElementType"/>: f32 (exact), f16 / bf16 (half the memory and half the
/// bytes attention reads per position, each value rounded to nearest once as it is written), or q8_0 (llama.cpp's
/// <c>--cache-type-k/-v q8_0</c>: blocks of 32 values of a head as 32 int8 codes and an f16 scale, 34 bytes, a little over a
/// quarter of f32; each block quantized once as it is written), or q4_0 (<c>--cache-type-k/-v q4_0</c>, Ollama's
/// <c>OLLAMA_KV_CACHE_TYPE=q4_0</c>: blocks of 32 as 16 bytes of 4-bit codes and an f16 scale, 18 bytes, 14% of f32). The
/// quantized types rotate each head first (<see cref="KvCacheRotation"/>). See <see cref="Types"/>.
/// </summary>
public abstract class KvCache : IDisposable
{
    /// <summary>The element types a cache can hold, by the names the CLI and the library take.</summary>
    public static readonly IReadOnlyList<(string Name, DType Type)> Types = [("f32", DType.F32), ("f16", DType.F16), ("bf16", DType.BF16), ("q8_0", DType.Q8_0), ("q4_0", DType.Q4_0)];

    /// <summary>Values per q8_0 or q4_0 block: a head's size must be a multiple of it (<see cref="CheckHeadSize"/>).</summary>
    public const int BlockValues = 32;

    protected KvCache(int layers, int slots, int capacity, int kvDim, DType elementType = DType.F32)
    {
        CheckType(elementType);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(layers);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(slots);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(kvDim);
        if (IsQuantized(elementType) && kvDim % BlockValues != 0)
        {
            throw new ArgumentException($"a {NameOf(elementType)} KV cache stores rows of whole blocks of {BlockValues} values, not {kvDim}", nameof(kvDim));
        }

        Layers = layers;
        Slots = slots;
        Capacity = capacity;
        KvDim = kvDim;
        ElementType = elementType;
        Lengths = new int[slots];
    }

    /// <summary>Whether a cache can store keys and values as <paramref name="type"/> (f32, f16, bf16, q8_0 or q4_0).</summary>
    public static bool Holds(DType type) => Types.Any(t => t.Type == type);

    /// <summary>Whether <paramref name="type"/> is one of the block-quantized cache types, q8_0 and q4_0.</summary>
    public static bool IsQuantized(DType type) => type is DType.Q8_0 or DType.Q4_0;

    /// <summary>Throws unless keys and values can be stored as <paramref name="type"/>.</summary>
    public static void CheckType(DType type)
    {
        if (!Holds(type))
        {
            throw new ArgumentException($"a KV cache holds {string.Join(", ", Types.Select(t => t.Name))}, not {type}", nameof(type));
        }
    }

    /// <summary>
    /// Throws unless heads of <paramref name="headDim"/> values can be stored as <paramref name="type"/>: q8_0 and q4_0
    /// quantize each head in whole blocks of 32 (as llama.cpp refuses a quantized cache whose head size is not a multiple of
    /// the block's).
    /// </summary>
    public static void CheckHeadSize(DType type, int headDim)
    {
        if (!HoldsHeads(type, headDim))
        {
            // No parameter name: the message goes to the user as is (--kv-cache-type, QwenModelOptions.KvCacheType).
            throw new ArgumentException($"a {NameOf(type)} KV cache stores each head in blocks of {BlockValues} values, and this model's heads have {headDim}");
        }
    }

    /// <summary>Whether heads of <paramref name="headDim"/> values can be stored as <paramref name="type"/> (q8_0, q4_0: whole blocks of 32).</summary>
    public static bool HoldsHeads(DType type, int headDim) => !IsQuantized(type) || headDim % BlockValues == 0;

    /// <summary>The CLI's name of <paramref name="type"/>: f32, f16, bf16, q8_0 or q4_0.</summary>
    public static string NameOf(DType type) => Types.First(t => t.Type == type).Name;

    /// <summary>Bytes one row of <paramref name="values"/> keys (or values) takes stored as <paramref name="type"/>.</summary>
    public static long RowBytesOf(DType type, int values) => type switch
    {
        DType.F32 => (long)values * sizeof(float),
        DType.Q8_0 => (long)values / BlockValues * Numerics.Q8_0Blocks.BlockBytes,
        DType.Q4_0 => (long)values / BlockValues * Numerics.LegacyQuantBlocks.Q4_0BlockBytes,
        _ => (long)values * 2,
    };

    /// <summary>Bytes the keys and values of one position of one sequence take, over every layer.</summary>
    public static long BytesPerToken(int layers, int kvDim, DType type) => 2L * layers * RowBytesOf(type, kvDim);

    /// <summary>
    /// How many leading positions of each slot hold keys and values. A step may write a slot's next position
    /// or rewrite an earlier one (which drops everything after it), never skip ahead: attention would read
    /// positions nobody wrote.
    /// </summary>
    internal int[] Lengths { get; }

    /// <summary>The number of positions of <paramref name="slot"/> filled so far.</summary>
    public int LengthOf(int slot) => Lengths[slot];

    /// <summary>Forgets a slot's contents, so it can start a new sequence.</summary>
    public void Reset(int slot) => Lengths[slot] = 0;

    /// <summary>Forgets every position of the slot from <paramref name="length"/> on (a conversation that diverges there).</summary>
    public void Truncate(int slot, int length)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan((uint)length, (uint)Lengths[slot], nameof(length));
        Lengths[slot] = length;
    }

    public int Layers { get; }

    public int Slots { get; }

    /// <summary>Positions per slot: the context a sequence can reach.</summary>
    public int Capacity { get; }

    public int KvDim { get; }

    /// <summary>How keys and values are stored: F32, F16, BF16, Q8_0 or Q4_0.</summary>
    public DType ElementType { get; }

    /// <summary>Bytes of one position's keys (or values) of one layer: kvDim elements of <see cref="ElementType"/>.</summary>
    public int RowBytes => (int)RowBytesOf(ElementType, KvDim);

    /// <summary>Bytes held, keys and values of all layers and slots.</summary>
    public long ByteSize => BytesPerToken(Layers, KvDim, ElementType) * Slots * Capacity;

    /// <summary>Copies positions [0, length) of every layer from one slot to another (a shared prompt, a beam).</summary>
    public void CopySlot(int source, int destination, int length)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)source, (uint)Slots, nameof(source));
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)destination, (uint)Slots, nameof(destination));
        ArgumentOutOfRangeException.ThrowIfGreaterThan((uint)length, (uint)Lengths[source], nameof(length));
        CopyPositions(source, destination, length);
        Lengths[destination] = length;
    }

    /// <summary>The backend's copy of positions [0, length) of every layer (a split cache's parts are copied through it, <see cref="SplitKvCache"/>).</summary>
    protected internal abstract void CopyPositions(int source, int destination, int length);

    /// <summary>
    /// Copies out positions [<paramref name="start"/>, <paramref name="start"/> + <paramref name="count"/>) of one layer of
    /// a slot, each position's keys (and values) as <see cref="RowBytes"/> bytes in the one layout every backend reads
    /// and writes alike: <see cref="ElementType"/>'s elements in order, q8_0 and q4_0 as llama.cpp's blocks (an f16 scale,
    /// then 32 int8 codes, or 16 bytes whose low nibbles are values 0-15 and high nibbles 16-31), rotated as stored. What a
    /// slot file holds (<c>SlotFile</c>), so that a cache saved from one backend restores into another.
    /// </summary>
    public void ReadRows(int layer, int slot, int start, int count, Span<byte> keys, Span<byte> values)
    {
        CheckRows(layer, slot, start, count, keys.Length, values.Length);
        if ((long)start + count > Lengths[slot])
        {
            throw new ArgumentOutOfRangeException(nameof(count), $"positions {start}..{start + count - 1} of slot {slot}, which holds {Lengths[slot]}");
        }

        ReadPositions(layer, slot, start, count, keys[..(count * RowBytes)], values[..(count * RowBytes)]);
    }

    /// <summary>
    /// Writes positions [<paramref name="start"/>, <paramref name="start"/> + <paramref name="count"/>) of one layer of a
    /// slot from rows laid out as <see cref="ReadRows"/> gives them. The slot's length is not changed: once every layer's
    /// rows are written, <see cref="Hold"/> says how many positions it holds.
    /// </summary>
    public void WriteRows(int layer, int slot, int start, int count, ReadOnlySpan<byte> keys, ReadOnlySpan<byte> values)
    {
        CheckRows(layer, slot, start, count, keys.Length, values.Length);
        WritePositions(layer, slot, start, count, keys[..(count * RowBytes)], values[..(count * RowBytes)]);
    }

    /// <summary>Says that every layer of <paramref name="slot"/> now holds positions [0, <paramref name="length"/>) (written by <see cref="WriteRows"/>).</summary>
    public void Hold(int slot, int length)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)slot, (uint)Slots, nameof(slot));
        ArgumentOutOfRangeException.ThrowIfGreaterThan((uint)length, (uint)Capacity, nameof(length));
        Lengths[slot] = length;
    }

    private void CheckRows(int layer, int slot, int start, int count, int keyBytes, int valueBytes)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)layer, (uint)Layers, nameof(layer));
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)slot, (uint)Slots, nameof(slot));
        ArgumentOutOfRangeException.ThrowIfNegative(start);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if ((long)start + count > Capacity)
        {
            throw new ArgumentOutOfRangeException(nameof(count), $"positions {start}..{start + count - 1} of a cache of {Capacity}");
        }

        if (keyBytes < (long)count * RowBytes || valueBytes < (long)count * RowBytes)
        {
            throw new ArgumentException($"{count} positions of {RowBytes} bytes need that many bytes of keys and of values; got {keyBytes} and {valueBytes}");
        }
    }

    /// <summary>The backend's side of <see cref="ReadRows"/>: arguments checked, spans exactly the rows.</summary>
    protected internal abstract void ReadPositions(int layer, int slot, int start, int count, Span<byte> keys, Span<byte> values);

    /// <summary>The backend's side of <see cref="WriteRows"/>: arguments checked, spans exactly the rows.</summary>
    protected internal abstract void WritePositions(int layer, int slot, int start, int count, ReadOnlySpan<byte> keys, ReadOnlySpan<byte> values);

    public abstract void Dispose();
}
