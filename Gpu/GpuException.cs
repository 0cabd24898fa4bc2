namespace QwenSharp.Gpu;

/// <summary>
/// The GPU could not be used or failed: no Vulkan loader or device, not enough device memory, a lost device.
/// The message is one line that says what and, where it can, what to do.
/// </summary>
public sealed class GpuException : Exception
{
    public GpuException(string message)
        : base(message)
    {
    }

    public GpuException(string message, Exception inner)
        : base(message, inner)
    {
    }

    public GpuException()
    {
    }
}
