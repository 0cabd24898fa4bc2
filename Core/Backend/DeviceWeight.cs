using QwenSharp.Formats;

namespace QwenSharp.Backend;

/// <summary>
/// A weight made ready by <see cref="IBackend.Upload"/>: the CPU keeps a view of the mapped file, a GPU
/// copies it to the device. A matrix is <c>[Rows, Cols]</c> = <c>[out, in]</c>; a vector has one row.
/// </summary>
public abstract class DeviceWeight : IDisposable
{
    protected DeviceWeight(string name, DType storedType, int rows, int cols)
    {
        Name = name;
        StoredType = storedType;
        Rows = rows;
        Cols = cols;
    }

    /// <summary>The checkpoint name, for error messages.</summary>
    public string Name { get; }

    /// <summary>The type the weight was stored in, which kernels convert from on the fly.</summary>
    public DType StoredType { get; }

    public int Rows { get; }

    public int Cols { get; }

    /// <summary>
    /// Bytes a one-token product with this weight reads: the weight as stored, unless the backend reads a copy of another
    /// layout there (the CPU's repacked Q4_0 panels on AMD Zen and Zen+: 20 bytes per 32 weights against 18).
    /// </summary>
    public virtual long DecodeStepBytes => DTypes.ByteLength(StoredType, (long)Rows * Cols);

    /// <summary>
    /// Whether the weight goes on reading the bytes of the view it was uploaded from (the CPU's matrices multiplied as
    /// stored, from the mapped file), so that the source must keep them; false where it made its own copy (a GPU's device
    /// memory, the CPU's f32 vectors and matrices it stored again), after which the source may free what it made at load
    /// (<see cref="ITensorSource.Release"/>).
    /// </summary>
    public virtual bool ReadsSourceBytes => true;

    /// <summary>
    /// Whether every product with the weight reads copies the backend made of it (the CPU's repacked panels and paired rows),
    /// so that the source's bytes, though kept, are read only now and then (a tied table's rows for the embedding): their
    /// pages need not stay in memory (<see cref="ITensorSource.DropPages"/>).
    /// </summary>
    public virtual bool ProductsReadCopies => false;

    public abstract void Dispose();
}
