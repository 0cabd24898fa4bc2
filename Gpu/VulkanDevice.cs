using QwenSharp.Gpu.Vulkan;

namespace QwenSharp.Gpu;

/// <summary>
/// One opened Vulkan device: the logical device with buffer device addresses and 64-bit integers on, one
/// compute queue, and what allocation needs to know of its memory.
/// </summary>
internal sealed unsafe class VulkanDevice : IDisposable
{
    private readonly VulkanInstance _instance;
    private readonly VkPhysicalDeviceMemoryProperties _memory;
    private readonly bool _hasBudget;
    private nint _handle;

    private VulkanDevice(VulkanInstance instance, nint physicalDevice, GpuDeviceInfo info)
    {
        _instance = instance;
        PhysicalDevice = physicalDevice;
        Info = info;

        var properties = new VkPhysicalDeviceProperties2 { SType = Vk.STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2 };
        instance.Api.GetPhysicalDeviceProperties2(physicalDevice, &properties);
        MaxGroupsX = properties.Properties.Limits.MaxComputeWorkGroupCount[0];
        MaxGroupsY = properties.Properties.Limits.MaxComputeWorkGroupCount[1];
        MaxPushConstantsSize = properties.Properties.Limits.MaxPushConstantsSize;
        var memory = new VkPhysicalDeviceMemoryProperties2 { SType = Vk.STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2 };
        instance.Api.GetPhysicalDeviceMemoryProperties2(physicalDevice, &memory);
        _memory = memory.MemoryProperties;

        QueueFamily = FindComputeQueueFamily();
        _hasBudget = instance.Extensions(physicalDevice).Contains("VK_EXT_memory_budget");

        float priority = 1;
        var queueInfo = new VkDeviceQueueCreateInfo
        {
            SType = Vk.STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
            QueueFamilyIndex = QueueFamily,
            QueueCount = 1,
            PQueuePriorities = (nint)(&priority),
        };
        F16MatrixTile = instance.F16MatrixTile(physicalDevice);
        var matrix = new VkPhysicalDeviceCooperativeMatrixFeaturesKHR
        {
            SType = Vk.STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR,
            CooperativeMatrix = 1,
        };
        var v12 = new VkPhysicalDeviceVulkan12Features
        {
            SType = Vk.STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
            PNext = F16MatrixTile > 0 ? (nint)(&matrix) : 0,
            BufferDeviceAddress = 1,
            ShaderFloat16 = F16MatrixTile > 0 ? 1u : 0u,
            VulkanMemoryModel = F16MatrixTile > 0 ? 1u : 0u,
        };
        var features = new VkPhysicalDeviceFeatures2 { SType = Vk.STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, PNext = (nint)(&v12) };
        features.Features.ShaderInt64 = 1;
        _handle = CreateDevice(instance, physicalDevice, &queueInfo, &features, _hasBudget, F16MatrixTile > 0);
        Api = new DeviceApi(instance.Api, _handle);
        nint queue;
        Api.GetDeviceQueue(_handle, QueueFamily, 0, &queue);
        Queue = queue;
    }

    public nint PhysicalDevice { get; }

    public nint Handle => _handle;

    public nint Queue { get; }

    public uint QueueFamily { get; }

    public DeviceApi Api { get; }

    public GpuDeviceInfo Info { get; }

    public uint MaxGroupsX { get; }

    public uint MaxGroupsY { get; }

    public uint MaxPushConstantsSize { get; }

    /// <summary>
    /// The side of the square f16-into-f32 products the device's matrix units take (VK_KHR_cooperative_matrix, enabled here):
    /// 16 or 8, or 0 where it has none (see <see cref="VulkanInstance.F16MatrixTile"/>).
    /// </summary>
    public int F16MatrixTile { get; }

    /// <summary>Called before any buffer is freed, so work that names it is submitted and recordings naming it dropped.</summary>
    public Action? BeforeBufferFreed { get; set; }

    /// <summary>Bytes this process has allocated in device-local memory.</summary>
    public long AllocatedBytes { get; internal set; }

    /// <summary>
    /// Opens the device <paramref name="selector"/> names: "gpu" takes the first discrete GPU, else the first
    /// integrated one, else any other usable device (a CPU implementation such as lavapipe last); "gpu:N" takes
    /// device N of <see cref="GpuDevices.List"/>.
    /// </summary>
    public static VulkanDevice Open(string selector)
    {
        if (!VulkanApi.TryLoad(out string? error))
        {
            throw new GpuException(error!);
        }

        VulkanInstance instance = VulkanInstance.Create();
        try
        {
            nint[] devices = instance.PhysicalDevices();
            GpuDeviceInfo[] infos = [.. devices.Select((d, i) => instance.Describe(i, d))];
            GpuDeviceInfo chosen = Choose(selector, infos);
            return new VulkanDevice(instance, devices[chosen.Index], chosen);
        }
        catch
        {
            instance.Dispose();
            throw;
        }
    }

    internal static GpuDeviceInfo Choose(string selector, IReadOnlyList<GpuDeviceInfo> devices)
    {
        if (devices.Count == 0)
        {
            throw new GpuException("--device gpu: the Vulkan loader found no device (install your GPU's Vulkan driver, or Mesa's lavapipe: apt-get install mesa-vulkan-drivers)");
        }

        if (selector.StartsWith("gpu:", StringComparison.Ordinal))
        {
            if (!int.TryParse(selector.AsSpan(4), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int index) || index >= devices.Count)
            {
                throw new GpuException($"--device {selector}: there are {devices.Count} Vulkan devices, gpu:0 to gpu:{devices.Count - 1} (see qwensharp devices)");
            }

            GpuDeviceInfo device = devices[index];
            return device.Unusable is null ? device
                : throw new GpuException($"--device {selector}: {device.Name} cannot run QwenSharp's shaders: {device.Unusable}");
        }

        string[] preference = ["discrete", "integrated", "virtual", "other", "cpu"];
        foreach (string type in preference)
        {
            GpuDeviceInfo? found = devices.FirstOrDefault(d => d.Type == type && d.Unusable is null);
            if (found is not null)
            {
                return found;
            }
        }

        throw new GpuException($"--device gpu: no Vulkan device can run QwenSharp's shaders ({string.Join("; ", devices.Select(d => $"{d.Name}: {d.Unusable}"))})");
    }

    /// <summary>A memory type allowed by <paramref name="typeBits"/> with the required flags, the preferred ones too where possible.</summary>
    public uint FindMemoryType(uint typeBits, int required, int preferred)
    {
        int fallback = -1;
        for (int i = 0; i < _memory.MemoryTypeCount; i++)
        {
            int flags = (int)_memory.MemoryTypes[i].PropertyFlags;
            if ((typeBits & (1u << i)) == 0 || (flags & required) != required)
            {
                continue;
            }

            if ((flags & preferred) == preferred)
            {
                return (uint)i;
            }

            fallback = fallback < 0 ? i : fallback;
        }

        return fallback >= 0 ? (uint)fallback
            : throw new GpuException($"{Info.Name}: no memory type with the properties 0x{required:x} for a buffer");
    }

    /// <summary>Device-local bytes still free: the driver's budget where VK_EXT_memory_budget tells it, else the heap less what we hold.</summary>
    public long AvailableBytes()
    {
        var budget = new VkPhysicalDeviceMemoryBudgetPropertiesEXT { SType = Vk.STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT };
        var memory = new VkPhysicalDeviceMemoryProperties2
        {
            SType = Vk.STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2,
            PNext = _hasBudget ? (nint)(&budget) : 0,
        };
        _instance.Api.GetPhysicalDeviceMemoryProperties2(PhysicalDevice, &memory);
        long best = 0;
        for (int h = 0; h < memory.MemoryProperties.MemoryHeapCount; h++)
        {
            VkMemoryHeap heap = memory.MemoryProperties.MemoryHeaps[h];
            if ((heap.Flags & Vk.MEMORY_HEAP_DEVICE_LOCAL_BIT) == 0)
            {
                continue;
            }

            long free = _hasBudget ? (long)budget.HeapBudget[h] - (long)budget.HeapUsage[h] : (long)heap.Size - AllocatedBytes;
            best = Math.Max(best, free);
        }

        return best;
    }

    private static nint CreateDevice(VulkanInstance instance, nint physicalDevice, VkDeviceQueueCreateInfo* queue,
        VkPhysicalDeviceFeatures2* features, bool memoryBudget, bool cooperativeMatrix)
    {
        fixed (byte* budgetName = "VK_EXT_memory_budget\0"u8)
        fixed (byte* matrixName = "VK_KHR_cooperative_matrix\0"u8)
        {
            nint* extensions = stackalloc nint[2];
            uint count = 0;
            if (memoryBudget)
            {
                extensions[count++] = (nint)budgetName;
            }

            if (cooperativeMatrix)
            {
                extensions[count++] = (nint)matrixName;
            }

            var info = new VkDeviceCreateInfo
            {
                SType = Vk.STRUCTURE_TYPE_DEVICE_CREATE_INFO,
                PNext = (nint)features,
                QueueCreateInfoCount = 1,
                PQueueCreateInfos = (nint)queue,
                EnabledExtensionCount = count,
                PpEnabledExtensionNames = count > 0 ? (nint)extensions : 0,
            };
            nint device;
            VkCheck.Ok(instance.Api.CreateDevice(physicalDevice, &info, 0, &device), "vkCreateDevice");
            return device;
        }
    }

    private uint FindComputeQueueFamily()
    {
        uint count = 0;
        _instance.Api.GetPhysicalDeviceQueueFamilyProperties(PhysicalDevice, &count, null);
        var families = new VkQueueFamilyProperties[count];
        fixed (VkQueueFamilyProperties* p = families)
        {
            _instance.Api.GetPhysicalDeviceQueueFamilyProperties(PhysicalDevice, &count, p);
        }

        for (uint i = 0; i < count; i++)
        {
            if ((families[i].QueueFlags & Vk.QUEUE_COMPUTE_BIT) != 0)
            {
                return i;
            }
        }

        throw new GpuException($"{Info.Name}: no queue family runs compute work");
    }

    public void Dispose()
    {
        if (_handle != 0)
        {
            Api.DeviceWaitIdle(_handle);
            Api.DestroyDevice(_handle, 0);
            _handle = 0;
        }

        _instance.Dispose();
    }
}
