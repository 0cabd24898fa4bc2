namespace QwenSharp.Memory;

/// <summary>
/// Memory for the weights a tensor source makes at load (random weights, matrices quantized or converted at load), carved
/// out of large <see cref="HugePages"/> mappings one after another, as a file's tensors lie in one mapping, and freed all
/// together. On its own, each tensor under <see cref="HugePages.Threshold"/> came from the C heap on 4 KiB pages: for
/// Qwen2.5-1.5B that is every q, k, v and o projection (11% of the weights), and one-token decode of its random BF16
/// weights read 42-48% of the read bound on one Zen 5 core against 75-93% with them here (3 alternating runs), the same
/// as the model's GGUF file mapped from the page cache on huge pages (71-75%).
/// </summary>
/// <remarks>
/// A chunk is mapped at <see cref="ChunkBytes"/> (or the request, if larger) but only the pages written are ever resident,
/// so the unused end of the last chunk costs address space, not memory. Not thread-safe: a source allocates as it loads.
/// </remarks>
internal sealed unsafe class WeightArena : IDisposable
{
    /// <summary>
    /// The size of a fresh chunk: twice Qwen2.5-1.5B's largest MLP matrix in BF16. Where the C heap serves it (not Linux),
    /// the unused end of the last chunk is committed memory, so not larger.
    /// </summary>
    public const long ChunkBytes = 64L << 20;

    /// <summary>Every allocation starts on a cache line, as <see cref="HugePages.Allocate"/>'s do.</summary>
    public const long Alignment = 64;

    private readonly List<nint> _chunks = [];
    private byte* _next;
    private long _left;

    /// <summary>
    /// <paramref name="bytes"/> of memory, <see cref="Alignment"/>-byte aligned, valid until <see cref="Dispose"/>: at the
    /// end of the current chunk where it fits, else at the start of a fresh one.
    /// </summary>
    public void* Allocate(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        long rounded = (Math.Max(bytes, 1) + Alignment - 1) & ~(Alignment - 1);
        if (rounded > _left)
        {
            long size = Math.Max(ChunkBytes, rounded);
            _next = (byte*)HugePages.Allocate(size);
            _chunks.Add((nint)_next);
            _left = size;
        }

        void* memory = _next;
        _next += rounded;
        _left -= rounded;
        return memory;
    }

    public void Dispose()
    {
        foreach (nint chunk in _chunks)
        {
            HugePages.Free((void*)chunk);
        }

        _chunks.Clear();
        _next = null;
        _left = 0;
    }
}
