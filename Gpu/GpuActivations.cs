using QwenSharp.Backend;

namespace QwenSharp.Gpu;

/// <summary>f32 activations in device memory, <c>[CapacityRows, Cols]</c>.</summary>
internal sealed class GpuActivations : DeviceBuffer
{
    public GpuActivations(VulkanDevice device, int capacityRows, int cols)
        : base(capacityRows, cols)
    {
        Buffer = GpuBuffer.DeviceLocal(device, (long)capacityRows * cols * sizeof(float), "activations");
    }

    public GpuBuffer Buffer { get; }

    public ulong Address => Buffer.Address;

    public static GpuActivations Of(Activation activation) =>
        activation.Buffer as GpuActivations ?? throw new ArgumentException("the activation belongs to another backend");

    public override void Dispose() => Buffer.Dispose();
}
