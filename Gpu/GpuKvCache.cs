using QwenSharp.Backend;

namespace QwenSharp.Gpu;

/// <summary>Keys and values in device memory, per layer a buffer of [slots, capacity, kvDim] f32.</summary>
internal sealed class GpuKvCache : KvCache
{
    private readonly CommandStream _stream;
    private readonly GpuBuffer[] _keys;
    private readonly GpuBuffer[] _values;

    public GpuKvCache(VulkanDevice device, CommandStream stream, int layers, int slots, int capacity, int kvDim)
        : base(layers, slots, capacity, kvDim)
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

    private long LayerBytes => (long)Slots * Capacity * KvDim * sizeof(float);

    public GpuBuffer Keys(int layer) => _keys[layer];

    public GpuBuffer Values(int layer) => _values[layer];

    public static GpuKvCache Of(KvCache cache) =>
        cache as GpuKvCache ?? throw new ArgumentException("the KV cache belongs to another backend");

    protected override void CopyPositions(int source, int destination, int length)
    {
        long slotBytes = (long)Capacity * KvDim * sizeof(float), bytes = (long)length * KvDim * sizeof(float);
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
