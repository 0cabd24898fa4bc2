namespace QwenSharp.Formats.Gguf;

/// <summary>
/// Where a written model begins a new part (llama-gguf-split's two modes): after every <see cref="MaxTensors"/> tensors,
/// or before a tensor whose bytes (padded to the alignment) would take the part's tensors past <see cref="MaxBytes"/> (a
/// soft limit: the metadata is not counted, and a tensor larger than the limit gets a part of its own where
/// llama-gguf-split stops).
/// </summary>
public sealed record GgufSplitLimit
{
    private GgufSplitLimit(int? maxTensors, long? maxBytes)
    {
        MaxTensors = maxTensors;
        MaxBytes = maxBytes;
    }

    public int? MaxTensors { get; }

    public long? MaxBytes { get; }

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
