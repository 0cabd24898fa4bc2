namespace QwenSharp.Gpu.Vulkan;

/// <summary>The instance-level Vulkan functions, looked up once through vkGetInstanceProcAddr.</summary>
internal sealed unsafe class InstanceApi
{
    public InstanceApi(nint instance)
    {
        DestroyInstance = (delegate* unmanaged<nint, nint, void>)Load(instance, "vkDestroyInstance"u8);
        EnumeratePhysicalDevices = (delegate* unmanaged<nint, uint*, nint*, int>)Load(instance, "vkEnumeratePhysicalDevices"u8);
        GetPhysicalDeviceProperties2 = (delegate* unmanaged<nint, VkPhysicalDeviceProperties2*, void>)Load(instance, "vkGetPhysicalDeviceProperties2"u8);
        GetPhysicalDeviceFeatures2 = (delegate* unmanaged<nint, VkPhysicalDeviceFeatures2*, void>)Load(instance, "vkGetPhysicalDeviceFeatures2"u8);
        GetPhysicalDeviceMemoryProperties2 = (delegate* unmanaged<nint, VkPhysicalDeviceMemoryProperties2*, void>)Load(instance, "vkGetPhysicalDeviceMemoryProperties2"u8);
        GetPhysicalDeviceQueueFamilyProperties = (delegate* unmanaged<nint, uint*, VkQueueFamilyProperties*, void>)Load(instance, "vkGetPhysicalDeviceQueueFamilyProperties"u8);
        EnumerateDeviceExtensionProperties = (delegate* unmanaged<nint, byte*, uint*, VkExtensionProperties*, int>)Load(instance, "vkEnumerateDeviceExtensionProperties"u8);
        CreateDevice = (delegate* unmanaged<nint, VkDeviceCreateInfo*, nint, nint*, int>)Load(instance, "vkCreateDevice"u8);
        GetDeviceProcAddr = (delegate* unmanaged<nint, byte*, nint>)Load(instance, "vkGetDeviceProcAddr"u8);
        GetPhysicalDeviceCooperativeMatrixProperties = (delegate* unmanaged<nint, uint*, VkCooperativeMatrixPropertiesKHR*, int>)
            VulkanApi.Function(instance, "vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR"u8);
    }

    public delegate* unmanaged<nint, nint, void> DestroyInstance { get; }

    public delegate* unmanaged<nint, uint*, nint*, int> EnumeratePhysicalDevices { get; }

    public delegate* unmanaged<nint, VkPhysicalDeviceProperties2*, void> GetPhysicalDeviceProperties2 { get; }

    public delegate* unmanaged<nint, VkPhysicalDeviceFeatures2*, void> GetPhysicalDeviceFeatures2 { get; }

    public delegate* unmanaged<nint, VkPhysicalDeviceMemoryProperties2*, void> GetPhysicalDeviceMemoryProperties2 { get; }

    public delegate* unmanaged<nint, uint*, VkQueueFamilyProperties*, void> GetPhysicalDeviceQueueFamilyProperties { get; }

    public delegate* unmanaged<nint, byte*, uint*, VkExtensionProperties*, int> EnumerateDeviceExtensionProperties { get; }

    public delegate* unmanaged<nint, VkDeviceCreateInfo*, nint, nint*, int> CreateDevice { get; }

    public delegate* unmanaged<nint, byte*, nint> GetDeviceProcAddr { get; }

    /// <summary>VK_KHR_cooperative_matrix's list of matrix shapes and types; null where the loader has no such function.</summary>
    public delegate* unmanaged<nint, uint*, VkCooperativeMatrixPropertiesKHR*, int> GetPhysicalDeviceCooperativeMatrixProperties { get; }

    private static nint Load(nint instance, ReadOnlySpan<byte> name)
    {
        nint function = VulkanApi.Function(instance, name);
        if (function == 0)
        {
            throw new GpuException($"the Vulkan loader has no {System.Text.Encoding.UTF8.GetString(name)} (a Vulkan 1.1 loader or newer is needed)");
        }

        return function;
    }
}
