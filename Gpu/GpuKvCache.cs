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
    private readonly CommandStream _stream;
    private readonly GpuBuffer[] _keys;
    private readonly GpuBuffer[] _values;

    public GpuKvCache(VulkanDevice device, CommandStream stream, int layers, int slots, int capacity, int kvDim, DType elementType)
        : base(layers, slots, capacity, kvDim, elementType)
    {
        _stream = stream;
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

    public override void Dispose()
    {
        foreach (GpuBuffer? buffer in _keys.Concat(_values))
        {
            buffer?.Dispose();
        }
    }
}
