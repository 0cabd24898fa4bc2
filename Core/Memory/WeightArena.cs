namespace QwenSharp.Memory;

/// <summary>
/// Memory for what is made from the weights at load (random weights, matrices quantized or converted at load, the CPU's
/// repacked panels), carved out of large <see cref="HugePages"/> mappings one after another, as a file's tensors lie in
/// one mapping. On its own, each piece under <see cref="HugePages.Threshold"/> came from the C heap on 4 KiB pages: for
/// Qwen2.5-1.5B that is every q, k, v and o projection (11% of the weights), and one-token decode of its random BF16
/// weights read 42-48% of the read bound on one Zen 5 core against 75-93% from here (3 alternating runs), as much as the
/// model's GGUF file mapped from the page cache on huge pages (71-75%). Q4_0 0.5B's panels read by an 8-sequence decode
/// step, one thread: 97-177 tokens/s with each on its own against 153-217 from here (3 alternating runs).
/// </summary>
/// <remarks>
/// A chunk is mapped at <see cref="ChunkBytes"/> (or the request, if larger) but only the pages written are ever resident,
/// so the unused end of the last chunk costs address space, not memory. A chunk is unmapped once everything in it is freed
/// (<see cref="Free"/>) or with the arena (<see cref="Dispose"/>). Thread-safe: weights may be disposed on any thread.
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

    private readonly List<Chunk> _chunks = [];
    private readonly Lock _lock = new();
    private Chunk? _current;
    private bool _disposed;

    /// <summary>The chunks mapped now (for tests).</summary>
    internal int ChunkCount
    {
        get
        {
            lock (_lock)
            {
                return _chunks.Count;
            }
        }
    }

    /// <summary>
    /// <paramref name="bytes"/> of memory, <see cref="Alignment"/>-byte aligned, valid until it is freed or the arena
    /// disposed: at the end of the current chunk where it fits, else at the start of a fresh one.
    /// </summary>
    public void* Allocate(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        long rounded = (Math.Max(bytes, 1) + Alignment - 1) & ~(Alignment - 1);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_current is null || rounded > _current.Size - _current.Used)
            {
                Retire(_current);
                long size = Math.Max(ChunkBytes, rounded);
                _current = new Chunk((byte*)HugePages.Allocate(size), size);
                _chunks.Add(_current);
            }

            void* memory = _current.Start + _current.Used;
            _current.Used += rounded;
            _current.Live++;
            return memory;
        }
    }

    /// <summary>
    /// Gives back what <see cref="Allocate"/> returned; its chunk is unmapped once nothing in it is left. After
    /// <see cref="Dispose"/> this does nothing (the memory is already gone).
    /// </summary>
    public void Free(void* memory)
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            Chunk chunk = _chunks.Find(c => c.Start <= (byte*)memory && (byte*)memory < c.Start + c.Used)
                ?? throw new ArgumentException($"0x{(nint)memory:x} was not allocated by this arena", nameof(memory));
            if (--chunk.Live > 0)
            {
                return;
            }

            if (chunk == _current)
            {
                chunk.Used = 0;    // empty again: the next allocations reuse it from the start
            }
            else
            {
                Release(chunk);
            }
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (Chunk chunk in _chunks)
            {
                HugePages.Free(chunk.Start);
            }

            _chunks.Clear();
            _current = null;
            _disposed = true;
        }
    }

    /// <summary>A chunk no longer allocated from: unmapped now if nothing in it is live.</summary>
    private void Retire(Chunk? chunk)
    {
        if (chunk is { Live: 0 })
        {
            Release(chunk);
        }
    }

    private void Release(Chunk chunk)
    {
        HugePages.Free(chunk.Start);
        _ = _chunks.Remove(chunk);
    }

    private sealed class Chunk(byte* start, long size)
    {
        public byte* Start { get; } = start;

        public long Size { get; } = size;

        public long Used { get; set; }

        public long Live { get; set; }
    }
}
