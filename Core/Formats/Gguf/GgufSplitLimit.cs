namespace QwenSharp.Formats.Gguf;

/// <summary>
/// Where a written model begins a new part (llama-gguf-split's two modes): after every <see cref="MaxTensors"/> tensors,
/// or before a tensor whose bytes (padded to the alignment) would take the part's tensors past <see cref="MaxBytes"/> (a
/// soft limit: the metadata is not counted, and a tensor larger than the limit gets a part of its own where
/// llama-gguf-split stops); or, as llama-quantize's <c>--keep-split</c>, after the <see cref="PartSizes"/> another split
/// model's parts hold.
/// </summary>
public sealed record GgufSplitLimit
{
    private GgufSplitLimit(int? maxTensors, long? maxBytes, IReadOnlyList<int>? partSizes = null)
    {
        MaxTensors = maxTensors;
        MaxBytes = maxBytes;
        PartSizes = partSizes;
    }

    public int? MaxTensors { get; }

    public long? MaxBytes { get; }

    /// <summary>Tensors in each part, in order (<see cref="Like"/>).</summary>
    public IReadOnlyList<int>? PartSizes { get; }

    /// <summary>The parts <paramref name="model"/> is split into, tensor for tensor (one part for a whole file).</summary>
    public static GgufSplitLimit Like(GgufFile model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return new(null, null, [.. model.TensorOrder.GroupBy(t => t.Part).OrderBy(g => g.Key).Select(g => g.Count())]);
    }

    public static GgufSplitLimit Tensors(int maxTensors) =>
        new(maxTensors > 0 ? maxTensors : throw new ArgumentOutOfRangeException(nameof(maxTensors), maxTensors, "a part holds at least one tensor"), null);

    public static GgufSplitLimit Bytes(long maxBytes) =>
        new(null, maxBytes > 0 ? maxBytes : throw new ArgumentOutOfRangeException(nameof(maxBytes), maxBytes, "a part's size is positive"));

    /// <summary><paramref name="items"/> in order, in parts.</summary>
    public List<List<T>> Partition<T>(IReadOnlyList<T> items, Func<T, long> bytesOf)
    {
        ArgumentNullException.ThrowIfNull(items);
        ArgumentNullException.ThrowIfNull(bytesOf);
        var parts = new List<List<T>> { new() };
        long bytes = 0;
        if (PartSizes is not null)
        {
            if (PartSizes.Sum() != items.Count)
            {
                throw new ArgumentException($"the parts hold {PartSizes.Sum()} tensors, the model {items.Count}", nameof(items));
            }

            var kept = new List<List<T>>(PartSizes.Count);
            int start = 0;
            foreach (int size in PartSizes)
            {
                kept.Add([.. items.Skip(start).Take(size)]);
                start += size;
            }

            return kept;
        }

        foreach (T item in items)
        {
            long padded = (bytesOf(item) + GgufFile.DefaultAlignment - 1) / GgufFile.DefaultAlignment * GgufFile.DefaultAlignment;
            bool full = MaxTensors is int most ? parts[^1].Count == most : bytes + padded > MaxBytes;
            if (full && parts[^1].Count > 0)
            {
                parts.Add([]);
                bytes = 0;
            }

            parts[^1].Add(item);
            bytes += padded;
        }

        return parts;
    }
}
