using System.Runtime.InteropServices;
using QwenSharp.Backend;

namespace QwenSharp.Cpu;

/// <summary>Keys and values in native memory, per layer [slots, capacity, kvDim] f32, allocated once.</summary>
internal sealed unsafe class CpuKvCache : KvCache
{
    private readonly float*[] _keys;
    private readonly float*[] _values;
    private bool _disposed;

    public CpuKvCache(int layers, int slots, int capacity, int kvDim)
        : base(layers, slots, capacity, kvDim)
    {
        _keys = new float*[layers];
        _values = new float*[layers];
        nuint bytes = (nuint)slots * (nuint)capacity * (nuint)kvDim * sizeof(float);
        try
        {
            for (int l = 0; l < layers; l++)
            {
                _keys[l] = (float*)NativeMemory.AlignedAlloc(bytes, 64);
                _values[l] = (float*)NativeMemory.AlignedAlloc(bytes, 64);
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    private long SlotElements => (long)Capacity * KvDim;

    /// <summary>Keys of one layer and slot, [capacity, kvDim].</summary>
    public Span<float> Keys(int layer, int slot) => new(_keys[layer] + (slot * SlotElements), checked((int)SlotElements));

    /// <summary>Values of one layer and slot, [capacity, kvDim].</summary>
    public Span<float> Values(int layer, int slot) => new(_values[layer] + (slot * SlotElements), checked((int)SlotElements));

    public static CpuKvCache Of(KvCache cache) =>
        cache as CpuKvCache ?? throw new ArgumentException("the KV cache belongs to another backend");

    protected override void CopyPositions(int source, int destination, int length)
    {
        int count = length * KvDim;
        for (int l = 0; l < Layers; l++)
        {
            Keys(l, source)[..count].CopyTo(Keys(l, destination));
            Values(l, source)[..count].CopyTo(Values(l, destination));
        }
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
            NativeMemory.AlignedFree(_keys[l]);
            NativeMemory.AlignedFree(_values[l]);
            _keys[l] = null;
            _values[l] = null;
        }
    }
}
