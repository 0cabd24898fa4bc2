using System.Runtime.InteropServices;
using System.Text;
using QwenSharp.Gpu.Vulkan;

namespace QwenSharp.Gpu;

/// <summary>A Vulkan instance and what it knows of the machine's devices: enumeration and choosing one.</summary>
internal sealed unsafe class VulkanInstance : IDisposable
{
    /// <summary>Vulkan 1.2: buffer device addresses and the 1.1/1.2 feature structs are core there.</summary>
    public const uint ApiVersion12 = (1u << 22) | (2u << 12);

    private nint _handle;

    private VulkanInstance(nint handle)
    {
        _handle = handle;
        Api = new InstanceApi(handle);
    }

    public nint Handle => _handle;

    public InstanceApi Api { get; }

    public static VulkanInstance Create()
    {
        var create = (delegate* unmanaged<VkInstanceCreateInfo*, nint, nint*, int>)VulkanApi.Function(0, "vkCreateInstance"u8);
        var enumerateVersion = (delegate* unmanaged<uint*, int>)VulkanApi.Function(0, "vkEnumerateInstanceVersion"u8);
        uint loaderVersion = 1u << 22;
        if (enumerateVersion != null)
        {
            VkCheck.Ok(enumerateVersion(&loaderVersion), "vkEnumerateInstanceVersion");
        }

        if (loaderVersion < ApiVersion12)
        {
            throw new GpuException($"the Vulkan loader offers version {VersionText(loaderVersion)}; QwenSharp needs Vulkan 1.2 or newer (update the loader and driver)");
        }

        fixed (byte* name = "QwenSharp"u8)
        {
            var app = new VkApplicationInfo
            {
                SType = Vk.STRUCTURE_TYPE_APPLICATION_INFO,
                PApplicationName = (nint)name,
                PEngineName = (nint)name,
                ApiVersion = ApiVersion12,
            };
            var info = new VkInstanceCreateInfo { SType = Vk.STRUCTURE_TYPE_INSTANCE_CREATE_INFO, PApplicationInfo = (nint)(&app) };
            nint instance;
            VkCheck.Ok(create(&info, 0, &instance), "vkCreateInstance");
            return new VulkanInstance(instance);
        }
    }

    /// <summary>Every device the loader reports, in its order.</summary>
    public nint[] PhysicalDevices()
    {
        uint count = 0;
        VkCheck.Ok(Api.EnumeratePhysicalDevices(_handle, &count, null), "vkEnumeratePhysicalDevices");
        var devices = new nint[count];
        fixed (nint* p = devices)
        {
            VkCheck.Ok(Api.EnumeratePhysicalDevices(_handle, &count, p), "vkEnumeratePhysicalDevices");
        }

        return devices[..(int)count];
    }

    public GpuDeviceInfo Describe(int index, nint physicalDevice)
    {
        var subgroup = new VkPhysicalDeviceSubgroupProperties { SType = Vk.STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES };
        var properties = new VkPhysicalDeviceProperties2 { SType = Vk.STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, PNext = (nint)(&subgroup) };
        Api.GetPhysicalDeviceProperties2(physicalDevice, &properties);
        string name = Utf8Z(properties.Properties.DeviceName, 256);
        string type = properties.Properties.DeviceType switch
        {
            Vk.PHYSICAL_DEVICE_TYPE_DISCRETE_GPU => "discrete",
            Vk.PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU => "integrated",
            Vk.PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU => "virtual",
            Vk.PHYSICAL_DEVICE_TYPE_CPU => "cpu",
            _ => "other",
        };

        var memory = new VkPhysicalDeviceMemoryProperties2 { SType = Vk.STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2 };
        Api.GetPhysicalDeviceMemoryProperties2(physicalDevice, &memory);
        long largest = 0;
        for (int h = 0; h < memory.MemoryProperties.MemoryHeapCount; h++)
        {
            VkMemoryHeap heap = memory.MemoryProperties.MemoryHeaps[h];
            if ((heap.Flags & Vk.MEMORY_HEAP_DEVICE_LOCAL_BIT) != 0)
            {
                largest = Math.Max(largest, (long)heap.Size);
            }
        }

        HashSet<string> extensions = Extensions(physicalDevice);
        string? unusable = WhyUnusable(physicalDevice, properties.Properties.ApiVersion, subgroup);
        return new GpuDeviceInfo(index, name, type, VersionText(properties.Properties.ApiVersion), largest, (int)subgroup.SubgroupSize,
            extensions.Contains("VK_KHR_cooperative_matrix"), unusable);
    }

    /// <summary>
    /// The square shape gemm_coop.comp can use on the device: 16 (16 x 16 x 16 products of f16 matrices into f32 at subgroup
    /// scope, as NVIDIA and AMD offer), else 8 (8 x 8 x 8, as Mesa's lavapipe offers), else 0. Both need VK_KHR_cooperative_matrix
    /// with its feature on, f16 arithmetic, and the Vulkan memory model the GLSL extension's SPIR-V declares.
    /// </summary>
    public int F16MatrixTile(nint physicalDevice)
    {
        if (!Extensions(physicalDevice).Contains("VK_KHR_cooperative_matrix") || Api.GetPhysicalDeviceCooperativeMatrixProperties == null)
        {
            return 0;
        }

        var matrix = new VkPhysicalDeviceCooperativeMatrixFeaturesKHR { SType = Vk.STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_KHR };
        var v12 = new VkPhysicalDeviceVulkan12Features { SType = Vk.STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES, PNext = (nint)(&matrix) };
        var features = new VkPhysicalDeviceFeatures2 { SType = Vk.STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, PNext = (nint)(&v12) };
        Api.GetPhysicalDeviceFeatures2(physicalDevice, &features);
        if (matrix.CooperativeMatrix == 0 || v12.ShaderFloat16 == 0 || v12.VulkanMemoryModel == 0)
        {
            return 0;
        }

        uint count = 0;
        if (Api.GetPhysicalDeviceCooperativeMatrixProperties(physicalDevice, &count, null) != Vk.SUCCESS)
        {
            return 0;
        }

        var shapes = new VkCooperativeMatrixPropertiesKHR[count];
        for (int i = 0; i < shapes.Length; i++)
        {
            shapes[i].SType = Vk.STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_KHR;
        }

        fixed (VkCooperativeMatrixPropertiesKHR* p = shapes)
        {
            if (Api.GetPhysicalDeviceCooperativeMatrixProperties(physicalDevice, &count, p) != Vk.SUCCESS)
            {
                return 0;
            }
        }

        VkCooperativeMatrixPropertiesKHR[] listed = shapes[..(int)count];
        bool Offers(uint size) => listed.Any(s => s.MSize == size && s.NSize == size && s.KSize == size
            && s is
            {
                AType: Vk.COMPONENT_TYPE_FLOAT16_KHR, BType: Vk.COMPONENT_TYPE_FLOAT16_KHR, CType: Vk.COMPONENT_TYPE_FLOAT32_KHR,
                ResultType: Vk.COMPONENT_TYPE_FLOAT32_KHR, SaturatingAccumulation: 0, Scope: Vk.SCOPE_SUBGROUP_KHR,
            });
        return Offers(16) ? 16 : Offers(8) ? 8 : 0;
    }

    /// <summary>The device extensions a device offers.</summary>
    public HashSet<string> Extensions(nint physicalDevice)
    {
        uint count = 0;
        VkCheck.Ok(Api.EnumerateDeviceExtensionProperties(physicalDevice, null, &count, null), "vkEnumerateDeviceExtensionProperties");
        var list = new VkExtensionProperties[count];
        fixed (VkExtensionProperties* p = list)
        {
            VkCheck.Ok(Api.EnumerateDeviceExtensionProperties(physicalDevice, null, &count, p), "vkEnumerateDeviceExtensionProperties");
            var names = new HashSet<string>(StringComparer.Ordinal);
            for (int i = 0; i < count; i++)
            {
                names.Add(Utf8Z(p[i].ExtensionName, 256));
            }

            return names;
        }
    }

    /// <summary>
    /// What the shaders need: Vulkan 1.2, buffer device addresses (every buffer is passed to a shader as a
    /// 64-bit address in its push constants), 64-bit integers for those addresses, and subgroup arithmetic in
    /// compute shaders for the reductions.
    /// </summary>
    private string? WhyUnusable(nint physicalDevice, uint apiVersion, VkPhysicalDeviceSubgroupProperties subgroup)
    {
        if (apiVersion < ApiVersion12)
        {
            return $"Vulkan {VersionText(apiVersion)}, 1.2 needed";
        }

        var v12 = new VkPhysicalDeviceVulkan12Features { SType = Vk.STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES };
        var features = new VkPhysicalDeviceFeatures2 { SType = Vk.STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, PNext = (nint)(&v12) };
        Api.GetPhysicalDeviceFeatures2(physicalDevice, &features);
        if (v12.BufferDeviceAddress == 0)
        {
            return "no bufferDeviceAddress";
        }

        if (features.Features.ShaderInt64 == 0)
        {
            return "no shaderInt64";
        }

        const int Needed = Vk.SUBGROUP_FEATURE_BASIC_BIT | Vk.SUBGROUP_FEATURE_ARITHMETIC_BIT;
        if ((subgroup.SupportedStages & Vk.SHADER_STAGE_COMPUTE_BIT) == 0 || (subgroup.SupportedOperations & Needed) != Needed)
        {
            return "no subgroup arithmetic in compute shaders";
        }

        return null;
    }

    public static string VersionText(uint version) => $"{version >> 22 & 0x7F}.{version >> 12 & 0x3FF}.{version & 0xFFF}";

    private static string Utf8Z(byte* text, int capacity) =>
        Encoding.UTF8.GetString(text, new ReadOnlySpan<byte>(text, capacity).IndexOf((byte)0) is int n and >= 0 ? n : capacity);

    public void Dispose()
    {
        if (_handle != 0)
        {
            Api.DestroyInstance(_handle, 0);
            _handle = 0;
        }
    }
}
