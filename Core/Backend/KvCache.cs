namespace QwenSharp.Backend;

/// <summary>
/// Keys and values of every layer for <see cref="Slots"/> independent sequences, each up to
/// <see cref="Capacity"/> positions, preallocated so nothing grows during decode. A token at position p of
/// slot s writes its keys and values at (s, p) and attends to positions 0..p of slot s only: sequences in one
/// batch never see each other, so a batch needs no padding and no padding mask.
/// </summary>
public abstract class KvCache : IDisposable
{
    protected KvCache(int layers, int slots, int capacity, int kvDim)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(layers);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(slots);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(kvDim);
        Layers = layers;
        Slots = slots;
        Capacity = capacity;
        KvDim = kvDim;
    }

    public int Layers { get; }

    public int Slots { get; }

    /// <summary>Positions per slot: the context a sequence can reach.</summary>
    public int Capacity { get; }

    public int KvDim { get; }

    /// <summary>Bytes held, keys and values of all layers and slots.</summary>
    public long ByteSize => 2L * Layers * Slots * Capacity * KvDim * sizeof(float);

    /// <summary>Copies positions [0, length) of every layer from one slot to another (a shared prompt, a beam).</summary>
    public abstract void CopySlot(int source, int destination, int length);

    public abstract void Dispose();
}
