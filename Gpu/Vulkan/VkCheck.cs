using System.Diagnostics.CodeAnalysis;

namespace QwenSharp.Gpu.Vulkan;

/// <summary>Turns a failed VkResult into a <see cref="GpuException"/> naming the call and the result.</summary>
internal static class VkCheck
{
    public static void Ok(int result, string call)
    {
        if (result < 0)
        {
            Fail(result, call);
        }
    }

    [DoesNotReturn]
    public static void Fail(int result, string call)
    {
        string what = result switch
        {
            Vk.ERROR_OUT_OF_HOST_MEMORY => "out of host memory",
            Vk.ERROR_OUT_OF_DEVICE_MEMORY => "out of device memory",
            Vk.ERROR_INITIALIZATION_FAILED => "initialization failed",
            Vk.ERROR_DEVICE_LOST => "the device was lost (a driver reset, a hang or a removed GPU)",
            Vk.ERROR_MEMORY_MAP_FAILED => "memory map failed",
            Vk.ERROR_EXTENSION_NOT_PRESENT => "an extension is not present",
            Vk.ERROR_FEATURE_NOT_PRESENT => "a feature is not present",
            Vk.ERROR_INCOMPATIBLE_DRIVER => "no compatible Vulkan driver (install your GPU's Vulkan driver, or Mesa's lavapipe: apt-get install mesa-vulkan-drivers)",
            Vk.ERROR_TOO_MANY_OBJECTS => "too many objects",
            _ => $"VkResult {result}",
        };
        throw new GpuException($"Vulkan {call} failed: {what}");
    }
}
