using QwenSharp.Backend;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;
using QwenSharp.Memory;

namespace QwenSharp.Cpu;

/// <summary>
/// Keys and values in native memory, per layer [slots, capacity, kvDim] of <see cref="KvCache.ElementType"/> (f32, f16,
/// bf16, q8_0 or q4_0, whose keys and values interleave as below; a row is narrowed once as it is stored, <see cref="Store"/>),
/// allocated once. Each layer's keys and values
/// are a mapping of their own, on small pages as they are first written, and each whole 2 MiB page of a slot's positions
/// is moved onto a huge page once its last position is written (<see cref="Filled"/>). Advised for huge pages from the
/// start, the first position of every slot would hold 2 MiB per layer (16 slots of a 24-layer model: 1.5 GiB for one
/// token each). Attention after a long prompt streams the cache like weights: Q4_0 0.5B decoded 27-30 tokens/s after
/// 4096 prompt tokens on one Zen 5 core with the cache on small pages, 40-42 with its pages collapsed (3 alternating
/// runs; prefill alike).
/// A cache of halves (f16, bf16) or of q8_0 or q4_0 blocks keeps each position's keys and then its values side by side in one mapping per layer,
/// so a layer's slot spans as many bytes as f32 keys alone and its pages go huge as soon: in two mappings, a 4096-position
/// slot of Qwen2.5-0.5B's shape was 1 MiB each, never a whole page, and Q4_0 0.5B with an f16 cache decoded 32-35
/// tokens/s on one Zen 5 core after 4096 prompt tokens, against 39-41 with them side by side.
/// </summary>
internal sealed unsafe class CpuKvCache : KvCache
{
    /// <summary>Per layer, the mapping of the keys (and, in a cache of halves, of the values beside them).</summary>
    private readonly byte*[] _keys;

    /// <summary>Per layer, the mapping of the values in an f32 cache; null in a cache of halves.</summary>
    private readonly byte*[] _values;

    /// <summary>
    /// Per layer and slot, the byte offset (in the layer's mapping) up to which whole 2 MiB pages were collapsed: the
    /// slot's first page boundary at the start.
    /// </summary>
    private readonly long[] _collapsedTo;

    /// <summary>Cleared the first time Linux refuses a collapse (an older kernel, huge pages off), so no step asks again.</summary>
    private static bool s_collapses = OperatingSystem.IsLinux();
    private bool _disposed;

    public CpuKvCache(int layers, int slots, int capacity, int kvDim, DType elementType = DType.F32)
        : base(layers, slots, capacity, kvDim, elementType)
    {
        _keys = new byte*[layers];
        _values = new byte*[layers];
        nuint bytes = (nuint)slots * (nuint)SlotBytes;
        _collapsedTo = new long[layers * slots];
        for (int i = 0; i < _collapsedTo.Length; i++)
        {
            _collapsedTo[i] = RoundUp((i % slots) * SlotBytes);
        }

        try
        {
            for (int l = 0; l < layers; l++)
            {
                _keys[l] = (byte*)HugePages.AllocateUnadvised((long)bytes);
                _values[l] = Interleaved ? null : (byte*)HugePages.AllocateUnadvised((long)bytes);
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Whether each position holds its keys then its values in one mapping (a cache of halves or of blocks).</summary>
    private bool Interleaved => ElementType != DType.F32;

    /// <summary>
    /// Elements from one position to the next in <see cref="Keys"/> and <see cref="Values"/>: kvDim, or 2 kvDim interleaved
    /// (for q8_0 and q4_0, whole blocks: the kernels' loads turn it into bytes).
    /// </summary>
    public int PositionStride => Interleaved ? 2 * KvDim : KvDim;

    /// <summary>Bytes from one position to the next: <see cref="KvCache.RowBytes"/>, or twice that interleaved.</summary>
    private int PositionBytes => Interleaved ? 2 * RowBytes : RowBytes;

    /// <summary>Bytes of a slot in a layer's mapping.</summary>
    private long SlotBytes => (long)Capacity * PositionBytes;

    /// <summary>
    /// Says that positions [0, <paramref name="length"/>) of <paramref name="slot"/> in <paramref name="layer"/> are
    /// written: the whole 2 MiB pages of keys and values they now fill, not collapsed before, go onto huge pages.
    /// </summary>
    public void Filled(int layer, int slot, int length)
    {
        if (!s_collapses)
        {
            return;
        }

        ref long collapsedTo = ref _collapsedTo[(layer * Slots) + slot];
        long filledTo = ((slot * SlotBytes) + ((long)length * PositionBytes)) & ~(HugePages.Size - 1);
        if (filledTo <= collapsedTo)
        {
            return;
        }

        long from = collapsedTo;
        collapsedTo = filledTo;
        if (!HugePages.Collapse(_keys[layer] + from, filledTo - from) | (!Interleaved && !HugePages.Collapse(_values[layer] + from, filledTo - from)))
        {
            s_collapses = false;
        }
    }

    private static long RoundUp(long offset) => (offset + HugePages.Size - 1) & ~(HugePages.Size - 1);

    /// <summary>Keys of one layer and slot: position p's kvDim elements of <see cref="KvCache.ElementType"/> at p × <see cref="PositionStride"/>.</summary>
    public Span<byte> Keys(int layer, int slot) => new(_keys[layer] + (slot * SlotBytes), checked((int)SlotBytes));

    /// <summary>Values of one layer and slot, laid out as <see cref="Keys"/> (in a cache of halves, beside each position's keys).</summary>
    public Span<byte> Values(int layer, int slot)
    {
        int beside = Interleaved ? RowBytes : 0;
        return new((Interleaved ? _keys[layer] + beside : _values[layer]) + (slot * SlotBytes), checked((int)SlotBytes - beside));
    }

    /// <summary>
    /// Writes one position's keys and values, each element narrowed to <see cref="KvCache.ElementType"/> by rounding to
    /// nearest even (f16 beyond its range becomes an infinity, as a conversion instruction gives), or each block of 32
    /// quantized to q8_0 or q4_0 as llama.cpp does.
    /// </summary>
    public void Store(int layer, int slot, int position, ReadOnlySpan<float> keys, ReadOnlySpan<float> values)
    {
        if (keys.Length != KvDim || values.Length != KvDim || (uint)position >= (uint)Capacity)
        {
            throw new ArgumentException($"position {position} of {KvDim} keys and values does not fit a cache of {Capacity} positions of {KvDim}");
        }

        int at = position * PositionBytes, bytes = RowBytes;
        KvNarrow.Run(ElementType, keys, Keys(layer, slot).Slice(at, bytes));
        KvNarrow.Run(ElementType, values, Values(layer, slot).Slice(at, bytes));
    }

    public static CpuKvCache Of(KvCache cache) =>
        cache as CpuKvCache ?? throw new ArgumentException("the KV cache belongs to another backend");

    protected internal override void CopyPositions(int source, int destination, int length)
    {
        // Interleaved, the keys' positions hold the values too.
        int count = length * PositionBytes;
        for (int l = 0; l < Layers; l++)
        {
            Keys(l, source)[..count].CopyTo(Keys(l, destination));
            if (!Interleaved)
            {
                Values(l, source)[..count].CopyTo(Values(l, destination));
            }

            Filled(l, destination, length);
        }
    }

    protected internal override void ReadPositions(int layer, int slot, int start, int count, Span<byte> keys, Span<byte> values)
    {
        // Each position's row is already the shared layout (llama.cpp's blocks); only the stride differs, interleaved.
        ReadOnlySpan<byte> storedKeys = Keys(layer, slot), storedValues = Values(layer, slot);
        int bytes = RowBytes;
        for (int p = 0; p < count; p++)
        {
            int at = (start + p) * PositionBytes;
            storedKeys.Slice(at, bytes).CopyTo(keys.Slice(p * bytes, bytes));
            storedValues.Slice(at, bytes).CopyTo(values.Slice(p * bytes, bytes));
        }
    }

    protected internal override void WritePositions(int layer, int slot, int start, int count, ReadOnlySpan<byte> keys, ReadOnlySpan<byte> values)
    {
        Span<byte> storedKeys = Keys(layer, slot), storedValues = Values(layer, slot);
        int bytes = RowBytes;
        for (int p = 0; p < count; p++)
        {
            int at = (start + p) * PositionBytes;
            keys.Slice(p * bytes, bytes).CopyTo(storedKeys.Slice(at, bytes));
            values.Slice(p * bytes, bytes).CopyTo(storedValues.Slice(at, bytes));
        }

        Filled(layer, slot, start + count);
    }

    public override void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        for (int l = 0; l < Layers; l++)
        {
            HugePages.Free(_keys[l]);
            if (_values[l] != null)
            {
                HugePages.Free(_values[l]);
            }

            _keys[l] = null;
            _values[l] = null;
        }
    }
}
