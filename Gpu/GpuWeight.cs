using QwenSharp.Backend;
using QwenSharp.Formats;

namespace QwenSharp.Gpu;

/// <summary>
/// A weight in device memory: a matrix in its stored type (bf16, f16, f32), read and widened inside the
/// shaders; a vector (norm, bias) widened to f32 at upload, since every use reads it whole.
/// </summary>
internal sealed class GpuWeight(string name, DType storedType, int rows, int cols, GpuBuffer buffer)
    : DeviceWeight(name, storedType, rows, cols)
{
    public GpuBuffer Buffer { get; } = buffer;

    public ulong Address => Buffer.Address;

    /// <summary>Whether each row starts on 16 bytes and is whole 16-byte chunks, so matvec.comp can use wide loads.</summary>
    public bool WideRows => !DTypes.IsQuantized(StoredType) && (long)Cols * DTypes.SizeOf(StoredType) % 16 == 0;

    public static GpuWeight Of(DeviceWeight weight) =>
        weight as GpuWeight ?? throw new ArgumentException($"weight '{weight.Name}' belongs to another backend");

    /// <summary>Device memory holds its own copy.</summary>
    public override bool ReadsSourceBytes => false;

    public override void Dispose() => Buffer.Dispose();
}
