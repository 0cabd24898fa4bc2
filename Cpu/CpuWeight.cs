using QwenSharp.Backend;
using QwenSharp.Formats;

namespace QwenSharp.Cpu;

/// <summary>
/// A weight as the CPU uses it: matrices stay where they are stored (the memory-mapped file, in their stored
/// type, zero-copy); vectors (norms, biases) are widened to f32 once, since every use reads them whole.
/// </summary>
internal sealed unsafe class CpuWeight : DeviceWeight
{
    public CpuWeight(TensorView view, int rows, int cols, float[]? vector)
        : base(view.Name, view.DType, rows, cols)
    {
        Data = (byte*)view.Data;
        RowBytes = DTypes.ByteLength(view.DType, cols);
        Vector = vector;
    }

    public byte* Data { get; }

    public long RowBytes { get; }

    /// <summary>The f32 values of a one-row weight; null for matrices.</summary>
    public float[]? Vector { get; }

    /// <summary>An F16 matrix with no infinity or NaN, read by the faster <see cref="Kernels.F16FiniteLoad"/>.</summary>
    public bool FiniteF16 { get; init; }

    /// <summary>The stored bytes of rows [first, first + count).</summary>
    public ReadOnlySpan<byte> RowBytesOf(int first, int count) => new(Data + (first * RowBytes), checked((int)(count * RowBytes)));

    public static CpuWeight Of(DeviceWeight weight) =>
        weight as CpuWeight ?? throw new ArgumentException($"weight '{weight.Name}' belongs to another backend");

    public override void Dispose()
    {
    }
}
