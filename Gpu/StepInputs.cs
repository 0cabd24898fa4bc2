namespace QwenSharp.Gpu;

/// <summary>
/// Host-written inputs of the work being collected (token ids, slots and positions, RoPE angles, uploads),
/// bump-allocated in a mapped buffer that shaders read at its device address. Each flush starts it over, so
/// a step that repeats the last one's calls writes its inputs at the same addresses, and its recording can be
/// replayed. A step that outgrows it moves to a bigger buffer; the old one lives until the step is submitted.
/// </summary>
internal sealed unsafe class StepInputs : IDisposable
{
    private const int Alignment = 16;

    private readonly VulkanDevice _device;
    private readonly List<GpuBuffer> _retired = [];
    private GpuBuffer _buffer;
    private long _used;

    public StepInputs(VulkanDevice device, long initialBytes)
    {
        _device = device;
        _buffer = GpuBuffer.HostVisible(device, initialBytes, "step inputs");
    }

    /// <summary>The buffer the inputs written so far live in, for copies out of it.</summary>
    public GpuBuffer Buffer => _buffer;

    /// <summary>Reserves <paramref name="bytes"/> and returns the offset and host pointer to fill.</summary>
    public long Reserve(long bytes, out byte* host)
    {
        long offset = (_used + Alignment - 1) / Alignment * Alignment;
        if (offset + bytes > _buffer.Size)
        {
            _retired.Add(_buffer);
            _buffer = GpuBuffer.HostVisible(_device, Math.Max(_buffer.Size * 2, bytes * 2), "step inputs");
            offset = 0;
        }

        _used = offset + bytes;
        host = _buffer.Mapped + offset;
        return offset;
    }

    /// <summary>Copies <paramref name="values"/> in and returns their device address.</summary>
    public ulong Write<T>(ReadOnlySpan<T> values)
        where T : unmanaged
    {
        long bytes = (long)values.Length * sizeof(T);
        long offset = Reserve(bytes, out byte* host);
        values.CopyTo(new Span<T>(host, values.Length));
        return _buffer.Address + (ulong)offset;
    }

    /// <summary>After a submit has finished: start over, and free buffers outgrown during the step.</summary>
    public void Reset()
    {
        _used = 0;
        foreach (GpuBuffer old in _retired)
        {
            old.Dispose();
        }

        _retired.Clear();
    }

    public void Dispose()
    {
        Reset();
        _buffer.Dispose();
    }
}
