using QwenSharp.Formats;

namespace QwenSharp.Backend;

/// <summary>
/// The KV cache of a model split between two backends (<see cref="LayerOffload"/>): the first layers' keys and values in
/// the first backend's cache, the rest in the second's, each where its layers' attention reads them. One set of lengths
/// (this cache's) says what every layer holds; slot copies copy both parts.
/// </summary>
internal sealed class SplitKvCache : KvCache
{
    private readonly KvCache _first;
    private readonly KvCache _second;

    /// <summary>Takes ownership of both parts, which must hold the same slots, positions, width and type.</summary>
    public SplitKvCache(KvCache first, KvCache second)
        : base(first.Layers + second.Layers, first.Slots, first.Capacity, first.KvDim, first.ElementType)
    {
        if (second.Slots != first.Slots || second.Capacity != first.Capacity || second.KvDim != first.KvDim || second.ElementType != first.ElementType)
        {
            throw new ArgumentException("the two parts of a split KV cache must hold the same slots, positions, width and type", nameof(second));
        }

        _first = first;
        _second = second;
    }

    /// <summary>The part that holds <paramref name="layer"/> and that layer's index in it.</summary>
    public (KvCache Part, int Layer) PartOf(int layer) => layer < _first.Layers ? (_first, layer) : (_second, layer - _first.Layers);

    protected internal override void CopyPositions(int source, int destination, int length)
    {
        _first.CopyPositions(source, destination, length);
        _second.CopyPositions(source, destination, length);
    }

    protected internal override void ReadPositions(int layer, int slot, int start, int count, Span<byte> keys, Span<byte> values)
    {
        (KvCache part, int at) = PartOf(layer);
        part.ReadPositions(at, slot, start, count, keys, values);
    }

    protected internal override void WritePositions(int layer, int slot, int start, int count, ReadOnlySpan<byte> keys, ReadOnlySpan<byte> values)
    {
        (KvCache part, int at) = PartOf(layer);
        part.WritePositions(at, slot, start, count, keys, values);
    }

    public override void Dispose()
    {
        _first.Dispose();
        _second.Dispose();
    }
}
