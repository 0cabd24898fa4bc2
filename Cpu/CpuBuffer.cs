using QwenSharp.Backend;

namespace QwenSharp.Cpu;

/// <summary>Activations in a pinned managed array (pinned so kernels may take its address without fixing it).</summary>
internal sealed class CpuBuffer(int capacityRows, int cols) : DeviceBuffer(capacityRows, cols)
{
    public float[] Data { get; } = GC.AllocateUninitializedArray<float>(checked(capacityRows * cols), pinned: true);

    public override float[] HostArray => Data;

    public static CpuBuffer Of(Activation activation) =>
        activation.Buffer as CpuBuffer ?? throw new ArgumentException("the activation belongs to another backend");

    public override void Dispose()
    {
    }
}

internal static class ActivationExtensions
{
    /// <summary>The rows of an activation, row-major.</summary>
    public static Span<float> Span(this Activation activation) =>
        CpuBuffer.Of(activation).Data.AsSpan(0, activation.Rows * activation.Cols);

    public static Span<float> Row(this Activation activation, int row) =>
        CpuBuffer.Of(activation).Data.AsSpan(row * activation.Cols, activation.Cols);
}
