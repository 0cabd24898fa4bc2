using QwenSharp.Formats;

namespace QwenSharp.Backend;

/// <summary>
/// Keys and values of every layer for <see cref="Slots"/> independent sequences, each up to
/// <see cref="Capacity"/> positions, preallocated so nothing grows during decode. A token at position p of
/// slot s writes its keys and values at (s, p) and attends to positions 0..p of slot s only: sequences in one
/// batch never see each other, so a batch needs no padding and no padding mask.
/// Keys and values are stored as <see cref="ElementType"/>: f32 (exact), or f16 / bf16 (half the memory and half the
/// bytes attention reads per position, each value rounded to nearest once as it is written; see <see cref="Types"/>).
/// </summary>
public abstract class KvCache : IDisposable
{
    /// <summary>The element types a cache can hold, by the names the CLI and the library take.</summary>
    public static readonly IReadOnlyList<(string Name, DType Type)> Types = [("f32", DType.F32), ("f16", DType.F16), ("bf16", DType.BF16)];

    protected KvCache(int layers, int slots, int capacity, int kvDim, DType elementType = DType.F32)
    {
        CheckType(elementType);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(layers);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(slots);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(kvDim);
        Layers = layers;
        Slots = slots;
        Capacity = capacity;
        KvDim = kvDim;
        ElementType = elementType;
        Lengths = new int[slots];
    }

    /// <summary>Whether a cache can store keys and values as <paramref name="type"/> (f32, f16 or bf16).</summary>
    public static bool Holds(DType type) => Types.Any(t => t.Type == type);

    /// <summary>Throws unless keys and values can be stored as <paramref name="type"/>.</summary>
    public static void CheckType(DType type)
    {
        if (!Holds(type))
        {
            throw new ArgumentException($"a KV cache holds {string.Join(", ", Types.Select(t => t.Name))}, not {type}", nameof(type));
        }
    }

    /// <summary>The CLI's name of <paramref name="type"/>: f32, f16 or bf16.</summary>
    public static string NameOf(DType type) => Types.First(t => t.Type == type).Name;

    /// <summary>Bytes per stored key or value element.</summary>
    public static int ElementSizeOf(DType type) => type == DType.F32 ? sizeof(float) : 2;

    /// <summary>Bytes the keys and values of one position of one sequence take, over every layer.</summary>
    public static long BytesPerToken(int layers, int kvDim, DType type) => 2L * layers * kvDim * ElementSizeOf(type);

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

    /// <summary>How keys and values are stored: F32, F16 or BF16.</summary>
    public DType ElementType { get; }

    /// <summary>Bytes per stored element (4 or 2).</summary>
    public int ElementSize => ElementSizeOf(ElementType);

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

    /// <summary>The backend's copy of positions [0, length) of every layer.</summary>
    protected abstract void CopyPositions(int source, int destination, int length);

    public abstract void Dispose();
}
