using QwenSharp.Gpu.Vulkan;

namespace QwenSharp.Gpu;

/// <summary>The Vulkan devices of this machine, for <c>qwensharp devices</c> and for choosing one.</summary>
public static class GpuDevices
{
    /// <summary>Every device the Vulkan loader reports, in its order; throws <see cref="GpuException"/> without a loader.</summary>
    public static IReadOnlyList<GpuDeviceInfo> List()
    {
        if (!VulkanApi.TryLoad(out string? error))
        {
            throw new GpuException(error!);
        }

        using VulkanInstance instance = VulkanInstance.Create();
        return [.. instance.PhysicalDevices().Select((d, i) => instance.Describe(i, d))];
    }

    /// <summary>The device <c>--device gpu</c> takes among <paramref name="devices"/>; throws <see cref="GpuException"/> when none can run.</summary>
    public static GpuDeviceInfo Choose(string selector, IReadOnlyList<GpuDeviceInfo> devices) => VulkanDevice.Choose(selector, devices);

    /// <summary>True when a usable Vulkan device is present (the GPU tests run only then, unless CI requires them).</summary>
    public static bool TryFindUsable(out string reason)
    {
        try
        {
            IReadOnlyList<GpuDeviceInfo> devices = List();
            GpuDeviceInfo chosen = VulkanDevice.Choose("gpu", devices);
            reason = chosen.Name;
            return true;
        }
        catch (GpuException e)
        {
            reason = e.Message;
            return false;
        }
    }

    /// <summary>Checks a --device value: "gpu" or "gpu:N".</summary>
    public static bool IsGpuSelector(string device) =>
        device == "gpu" || (device.StartsWith("gpu:", StringComparison.Ordinal) && device.Length > 4 && device[4..].All(char.IsAsciiDigit));
}
