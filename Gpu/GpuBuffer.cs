using QwenSharp.Gpu.Vulkan;

namespace QwenSharp.Gpu;

/// <summary>
/// A Vulkan buffer with its own memory and its 64-bit device address (how shaders reach it). Device-local for
/// weights, activations and the KV cache; host-visible and mapped for the per-step inputs and the read-back.
/// </summary>
internal sealed unsafe class GpuBuffer : IDisposable
{
    private readonly VulkanDevice _device;
    private readonly bool _deviceLocal;
    private ulong _handle;
    private ulong _memory;

    private GpuBuffer(VulkanDevice device, long size, bool host, string what)
    {
        _device = device;
        Size = size;
        DeviceApi api = device.Api;
        var info = new VkBufferCreateInfo
        {
            SType = Vk.STRUCTURE_TYPE_BUFFER_CREATE_INFO,
            // Whole 16-byte units: shaders read bytes of odd-sized tensors (Q8_0) through the word that holds them.
            Size = (ulong)Math.Max((size + 15) & ~15L, 16),
            Usage = Vk.BUFFER_USAGE_STORAGE_BUFFER_BIT | Vk.BUFFER_USAGE_TRANSFER_SRC_BIT | Vk.BUFFER_USAGE_TRANSFER_DST_BIT
                | Vk.BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT,
        };
        ulong buffer;
        VkCheck.Ok(api.CreateBuffer(device.Handle, &info, 0, &buffer), $"vkCreateBuffer ({what}, {size} bytes)");
        _handle = buffer;
        try
        {
            VkMemoryRequirements requirements;
            api.GetBufferMemoryRequirements(device.Handle, buffer, &requirements);
            int required = host ? Vk.MEMORY_PROPERTY_HOST_VISIBLE_BIT | Vk.MEMORY_PROPERTY_HOST_COHERENT_BIT : Vk.MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
            int preferred = host ? required | Vk.MEMORY_PROPERTY_HOST_CACHED_BIT : required;
            var flags = new VkMemoryAllocateFlagsInfo { SType = Vk.STRUCTURE_TYPE_MEMORY_ALLOCATE_FLAGS_INFO, Flags = (uint)Vk.MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT };
            var allocate = new VkMemoryAllocateInfo
            {
                SType = Vk.STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                PNext = (nint)(&flags),
                AllocationSize = requirements.Size,
                MemoryTypeIndex = device.FindMemoryType(requirements.MemoryTypeBits, required, preferred),
            };
            ulong memory;
            int result = api.AllocateMemory(device.Handle, &allocate, 0, &memory);
            if (result == Vk.ERROR_OUT_OF_DEVICE_MEMORY || result == Vk.ERROR_OUT_OF_HOST_MEMORY)
            {
                throw new GpuException($"{device.Info.Name}: out of memory allocating {what} ({Megabytes(size)}; {Megabytes(device.AvailableBytes())} free)");
            }

            VkCheck.Ok(result, $"vkAllocateMemory ({what}, {size} bytes)");
            _memory = memory;
            VkCheck.Ok(api.BindBufferMemory(device.Handle, buffer, memory, 0), "vkBindBufferMemory");
            var addressInfo = new VkBufferDeviceAddressInfo { SType = Vk.STRUCTURE_TYPE_BUFFER_DEVICE_ADDRESS_INFO, Buffer = buffer };
            Address = api.GetBufferDeviceAddress(device.Handle, &addressInfo);
            if (host)
            {
                void* mapped;
                VkCheck.Ok(api.MapMemory(device.Handle, memory, 0, ulong.MaxValue, 0, &mapped), "vkMapMemory");
                Mapped = (byte*)mapped;
            }
            else
            {
                _deviceLocal = true;
                device.AllocatedBytes += (long)requirements.Size;
                AllocationSize = (long)requirements.Size;
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public ulong Handle => _handle;

    public long Size { get; }

    /// <summary>The address shaders read and write it at.</summary>
    public ulong Address { get; }

    /// <summary>Host pointer of a host-visible buffer; null for device-local ones.</summary>
    public byte* Mapped { get; }

    private long AllocationSize { get; }

    public static GpuBuffer DeviceLocal(VulkanDevice device, long size, string what) => new(device, size, host: false, what);

    public static GpuBuffer HostVisible(VulkanDevice device, long size, string what) => new(device, size, host: true, what);

    public static string Megabytes(long bytes) => $"{bytes / (1024.0 * 1024.0):F1} MiB";

    public void Dispose()
    {
        if (_handle == 0 && _memory == 0)
        {
            return;
        }

        _device.BeforeBufferFreed?.Invoke();
        DeviceApi api = _device.Api;
        if (_handle != 0)
        {
            api.DestroyBuffer(_device.Handle, _handle, 0);
            _handle = 0;
        }

        if (_memory != 0)
        {
            api.FreeMemory(_device.Handle, _memory, 0);
            _memory = 0;
            if (_deviceLocal)
            {
                _device.AllocatedBytes -= AllocationSize;
            }
        }
    }
}
