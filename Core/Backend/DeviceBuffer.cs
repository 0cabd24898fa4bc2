namespace QwenSharp.Backend;

/// <summary>
/// f32 activations owned by a backend, <c>[CapacityRows, Cols]</c> row-major; a GPU backend keeps them on the
/// device. The model never reads them directly, only through <see cref="IBackend.Download"/>.
/// </summary>
public abstract class DeviceBuffer : IDisposable
{
    protected DeviceBuffer(int capacityRows, int cols)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(capacityRows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(cols);
        CapacityRows = capacityRows;
        Cols = cols;
    }

    public int CapacityRows { get; }

    public int Cols { get; }

    /// <summary>The first <paramref name="rows"/> rows, the part a forward step uses (no allocation).</summary>
    public Activation Rows(int rows)
    {
        if ((uint)rows > (uint)CapacityRows)
        {
            throw new ArgumentOutOfRangeException(nameof(rows), rows, $"the buffer holds {CapacityRows} rows");
        }

        return new Activation(this, rows);
    }

    /// <summary>
    /// The buffer's values when they already live in host memory as one row-major array (a CPU backend's buffers), so a
    /// caller can read them where they are instead of downloading a copy; null on a device.
    /// </summary>
    public virtual float[]? HostArray => null;

    public abstract void Dispose();
}

/// <summary>The first <see cref="Rows"/> rows of a <see cref="DeviceBuffer"/>: one row per token of the step.</summary>
public readonly record struct Activation(DeviceBuffer Buffer, int Rows)
{
    public int Cols => Buffer.Cols;
}
