using QwenSharp.Backend;
using QwenSharp.Formats;

namespace QwenSharp.Gpu;

/// <summary>
/// Keys and values in device memory, per layer a buffer of [slots, capacity] position rows: kvDim f32, or f16 / bf16 two
/// to a word (kv_store.comp and attention.comp compiled for the type), or q8_0 / q4_0 as kvDim 8- or 4-bit codes, then
/// the kvDim / 32 f16 scales, padded to a whole word (kv_store_quantized.comp; common.glsl describes it). That is
/// llama.cpp's 34 or 18 bytes per 32 values, but not its interleaved blocks: a head's codes are whole aligned words.
/// </summary>
internal sealed class GpuKvCache : KvCache
{
    private readonly VulkanDevice _device;
    private readonly CommandStream _stream;
    private readonly Action _synchronize;
    private readonly GpuBuffer[] _keys;
    private readonly GpuBuffer[] _values;

    /// <summary>Host-visible rows for <see cref="ReadPositions"/> and <see cref="WritePositions"/>, made at the first and grown as needed.</summary>
    private GpuBuffer? _staging;

    /// <param name="synchronize">Submits the backend's collected work and waits for it (rows are read back after it).</param>
    public GpuKvCache(VulkanDevice device, CommandStream stream, Action synchronize, int layers, int slots, int capacity, int kvDim, DType elementType)
        : base(layers, slots, capacity, kvDim, elementType)
    {
        _device = device;
        _stream = stream;
        _synchronize = synchronize;
        _keys = new GpuBuffer[layers];
        _values = new GpuBuffer[layers];
        long bytes = LayerBytes;
        try
        {
            for (int l = 0; l < layers; l++)
            {
                _keys[l] = GpuBuffer.DeviceLocal(device, bytes, $"the KV cache (layer {l} keys)");
                _values[l] = GpuBuffer.DeviceLocal(device, bytes, $"the KV cache (layer {l} values)");
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    private long LayerBytes => (long)Slots * Capacity * PositionBytes;

    /// <summary>Bytes between one position's keys (or values) and the next's: <see cref="KvCache.RowBytes"/>, q8_0's and q4_0's padded to a whole word.</summary>
    public int PositionBytes => PositionBytesOf(ElementType, KvDim);

    /// <inheritdoc cref="PositionBytes"/>
    public static int PositionBytesOf(DType type, int kvDim) => (int)(IsQuantized(type) ? (RowBytesOf(type, kvDim) + 3) & ~3L : RowBytesOf(type, kvDim));

    /// <summary>The suffix of the shaders that read and write this cache's type: "" for f32, "_f16", "_bf16", "_q8_0", "_q4_0".</summary>
    public string ShaderSuffix => ElementType == DType.F32 ? "" : "_" + NameOf(ElementType);

    public GpuBuffer Keys(int layer) => _keys[layer];

    public GpuBuffer Values(int layer) => _values[layer];

    public static GpuKvCache Of(KvCache cache) =>
        cache as GpuKvCache ?? throw new ArgumentException("the KV cache belongs to another backend");

    protected internal override void CopyPositions(int source, int destination, int length)
    {
        long slotBytes = (long)Capacity * PositionBytes, bytes = (long)length * PositionBytes;
        for (int l = 0; l < Layers; l++)
        {
            _stream.Copy(_keys[l], source * slotBytes, _keys[l], destination * slotBytes, bytes);
            _stream.Copy(_values[l], source * slotBytes, _values[l], destination * slotBytes, bytes);
        }
    }

    protected internal override unsafe void ReadPositions(int layer, int slot, int start, int count, Span<byte> keys, Span<byte> values)
    {
        long bytes = (long)count * PositionBytes, at = ((long)slot * Capacity + start) * PositionBytes;
        GpuBuffer staging = Staging(2 * bytes);
        _stream.Copy(_keys[layer], at, staging, 0, bytes);
        _stream.Copy(_values[layer], at, staging, bytes, bytes);
        _synchronize();
        ToShared(new ReadOnlySpan<byte>(staging.Mapped, checked((int)bytes)), count, keys);
        ToShared(new ReadOnlySpan<byte>(staging.Mapped + bytes, checked((int)bytes)), count, values);
    }

    protected internal override unsafe void WritePositions(int layer, int slot, int start, int count, ReadOnlySpan<byte> keys, ReadOnlySpan<byte> values)
    {
        long bytes = (long)count * PositionBytes, at = ((long)slot * Capacity + start) * PositionBytes;
        GpuBuffer staging = Staging(2 * bytes);

        // Whatever was collected before may still read the staging rows; the copies run before this returns, so the next
        // write finds them done.
        _synchronize();
        FromShared(keys, count, new Span<byte>(staging.Mapped, checked((int)bytes)));
        FromShared(values, count, new Span<byte>(staging.Mapped + bytes, checked((int)bytes)));
        _stream.Copy(staging, 0, _keys[layer], at, bytes);
        _stream.Copy(staging, bytes, _values[layer], at, bytes);
        _synchronize();
    }

    private GpuBuffer Staging(long bytes)
    {
        if (_staging is null || _staging.Size < bytes)
        {
            _staging?.Dispose();
            _staging = null;
            _staging = GpuBuffer.HostVisible(_device, Math.Max(bytes, 1 << 20), "the KV cache's rows read back or written");
        }

        return _staging;
    }

    /// <summary>
    /// This cache's rows (<see cref="PositionBytes"/> apart) in the layout <see cref="KvCache.ReadRows"/> gives: the same
    /// bytes for f32 and the halves; q8_0 and q4_0 rows of kvDim codes then kvDim / 32 scales become llama.cpp's blocks.
    /// </summary>
    internal void ToShared(ReadOnlySpan<byte> rows, int count, Span<byte> shared)
    {
        int rowBytes = RowBytes, stride = PositionBytes, blocks = KvDim / BlockValues, codeBytes = KvDim * CodeBits / 8, blockBytes = rowBytes / Math.Max(blocks, 1);
        for (int p = 0; p < count; p++)
        {
            ReadOnlySpan<byte> row = rows.Slice(p * stride, stride);
            Span<byte> to = shared.Slice(p * rowBytes, rowBytes);
            if (!IsQuantized(ElementType))
            {
                row[..rowBytes].CopyTo(to);
                continue;
            }

            for (int b = 0; b < blocks; b++)
            {
                Span<byte> block = to.Slice(b * blockBytes, blockBytes);
                row.Slice(codeBytes + (2 * b), 2).CopyTo(block);
                if (ElementType == DType.Q8_0)
                {
                    row.Slice(b * BlockValues, BlockValues).CopyTo(block[2..]);
                    continue;
                }

                // Here value i is nibble i % 2 of byte i / 2; there byte j holds values j (low) and j + 16 (high).
                ReadOnlySpan<byte> codes = row.Slice(b * BlockValues / 2, BlockValues / 2);
                for (int j = 0; j < BlockValues / 2; j++)
                {
                    block[2 + j] = (byte)(Nibble(codes, j) | (Nibble(codes, j + 16) << 4));
                }
            }
        }
    }

    /// <summary>Rows in the layout of <see cref="KvCache.ReadRows"/> as this cache holds them (<see cref="ToShared"/> undone; padding zero).</summary>
    internal void FromShared(ReadOnlySpan<byte> shared, int count, Span<byte> rows)
    {
        int rowBytes = RowBytes, stride = PositionBytes, blocks = KvDim / BlockValues, codeBytes = KvDim * CodeBits / 8, blockBytes = rowBytes / Math.Max(blocks, 1);
        for (int p = 0; p < count; p++)
        {
            ReadOnlySpan<byte> from = shared.Slice(p * rowBytes, rowBytes);
            Span<byte> row = rows.Slice(p * stride, stride);
            row.Clear();
            if (!IsQuantized(ElementType))
            {
                from.CopyTo(row);
                continue;
            }

            for (int b = 0; b < blocks; b++)
            {
                ReadOnlySpan<byte> block = from.Slice(b * blockBytes, blockBytes);
                block[..2].CopyTo(row.Slice(codeBytes + (2 * b), 2));
                if (ElementType == DType.Q8_0)
                {
                    block.Slice(2, BlockValues).CopyTo(row.Slice(b * BlockValues, BlockValues));
                    continue;
                }

                Span<byte> codes = row.Slice(b * BlockValues / 2, BlockValues / 2);
                for (int i = 0; i < BlockValues; i++)
                {
                    int code = (block[2 + (i % 16)] >> (i < 16 ? 0 : 4)) & 0xF;
                    codes[i / 2] |= (byte)(code << (4 * (i % 2)));
                }
            }
        }
    }

    /// <summary>Bits of one code in a quantized row: 8 for q8_0, 4 for q4_0.</summary>
    private int CodeBits => ElementType == DType.Q4_0 ? 4 : 8;

    /// <summary>The 4-bit code of value <paramref name="i"/> of a block's codes as this cache packs them.</summary>
    private static int Nibble(ReadOnlySpan<byte> codes, int i) => (codes[i / 2] >> (4 * (i % 2))) & 0xF;

    public override void Dispose()
    {
        foreach (GpuBuffer? buffer in _keys.Concat(_values))
        {
            buffer?.Dispose();
        }

        _staging?.Dispose();
        _staging = null;
    }
}
