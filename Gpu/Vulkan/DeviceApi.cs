namespace QwenSharp.Gpu.Vulkan;

/// <summary>The device-level Vulkan functions compute needs, looked up once through vkGetDeviceProcAddr.</summary>
internal sealed unsafe class DeviceApi
{
    public DeviceApi(InstanceApi instance, nint device)
    {
        nint Load(ReadOnlySpan<byte> name)
        {
            fixed (byte* p = name)
            {
                nint function = instance.GetDeviceProcAddr(device, p);
                return function != 0 ? function
                    : throw new GpuException($"the Vulkan driver has no {System.Text.Encoding.UTF8.GetString(name)}");
            }
        }

        DestroyDevice = (delegate* unmanaged<nint, nint, void>)Load("vkDestroyDevice"u8);
        GetDeviceQueue = (delegate* unmanaged<nint, uint, uint, nint*, void>)Load("vkGetDeviceQueue"u8);
        DeviceWaitIdle = (delegate* unmanaged<nint, int>)Load("vkDeviceWaitIdle"u8);
        CreateBuffer = (delegate* unmanaged<nint, VkBufferCreateInfo*, nint, ulong*, int>)Load("vkCreateBuffer"u8);
        DestroyBuffer = (delegate* unmanaged<nint, ulong, nint, void>)Load("vkDestroyBuffer"u8);
        GetBufferMemoryRequirements = (delegate* unmanaged<nint, ulong, VkMemoryRequirements*, void>)Load("vkGetBufferMemoryRequirements"u8);
        AllocateMemory = (delegate* unmanaged<nint, VkMemoryAllocateInfo*, nint, ulong*, int>)Load("vkAllocateMemory"u8);
        FreeMemory = (delegate* unmanaged<nint, ulong, nint, void>)Load("vkFreeMemory"u8);
        BindBufferMemory = (delegate* unmanaged<nint, ulong, ulong, ulong, int>)Load("vkBindBufferMemory"u8);
        MapMemory = (delegate* unmanaged<nint, ulong, ulong, ulong, uint, void**, int>)Load("vkMapMemory"u8);
        UnmapMemory = (delegate* unmanaged<nint, ulong, void>)Load("vkUnmapMemory"u8);
        GetBufferDeviceAddress = (delegate* unmanaged<nint, VkBufferDeviceAddressInfo*, ulong>)Load("vkGetBufferDeviceAddress"u8);
        CreateShaderModule = (delegate* unmanaged<nint, VkShaderModuleCreateInfo*, nint, ulong*, int>)Load("vkCreateShaderModule"u8);
        DestroyShaderModule = (delegate* unmanaged<nint, ulong, nint, void>)Load("vkDestroyShaderModule"u8);
        CreatePipelineLayout = (delegate* unmanaged<nint, VkPipelineLayoutCreateInfo*, nint, ulong*, int>)Load("vkCreatePipelineLayout"u8);
        DestroyPipelineLayout = (delegate* unmanaged<nint, ulong, nint, void>)Load("vkDestroyPipelineLayout"u8);
        CreateComputePipelines = (delegate* unmanaged<nint, ulong, uint, VkComputePipelineCreateInfo*, nint, ulong*, int>)Load("vkCreateComputePipelines"u8);
        DestroyPipeline = (delegate* unmanaged<nint, ulong, nint, void>)Load("vkDestroyPipeline"u8);
        CreateCommandPool = (delegate* unmanaged<nint, VkCommandPoolCreateInfo*, nint, ulong*, int>)Load("vkCreateCommandPool"u8);
        DestroyCommandPool = (delegate* unmanaged<nint, ulong, nint, void>)Load("vkDestroyCommandPool"u8);
        AllocateCommandBuffers = (delegate* unmanaged<nint, VkCommandBufferAllocateInfo*, nint*, int>)Load("vkAllocateCommandBuffers"u8);
        BeginCommandBuffer = (delegate* unmanaged<nint, VkCommandBufferBeginInfo*, int>)Load("vkBeginCommandBuffer"u8);
        EndCommandBuffer = (delegate* unmanaged<nint, int>)Load("vkEndCommandBuffer"u8);
        ResetCommandBuffer = (delegate* unmanaged<nint, uint, int>)Load("vkResetCommandBuffer"u8);
        CmdBindPipeline = (delegate* unmanaged<nint, int, ulong, void>)Load("vkCmdBindPipeline"u8);
        CmdPushConstants = (delegate* unmanaged<nint, ulong, uint, uint, uint, void*, void>)Load("vkCmdPushConstants"u8);
        CmdDispatch = (delegate* unmanaged<nint, uint, uint, uint, void>)Load("vkCmdDispatch"u8);
        CmdPipelineBarrier = (delegate* unmanaged<nint, uint, uint, uint, uint, VkMemoryBarrier*, uint, void*, uint, void*, void>)Load("vkCmdPipelineBarrier"u8);
        CmdCopyBuffer = (delegate* unmanaged<nint, ulong, ulong, uint, VkBufferCopy*, void>)Load("vkCmdCopyBuffer"u8);
        CreateFence = (delegate* unmanaged<nint, VkFenceCreateInfo*, nint, ulong*, int>)Load("vkCreateFence"u8);
        DestroyFence = (delegate* unmanaged<nint, ulong, nint, void>)Load("vkDestroyFence"u8);
        WaitForFences = (delegate* unmanaged<nint, uint, ulong*, uint, ulong, int>)Load("vkWaitForFences"u8);
        ResetFences = (delegate* unmanaged<nint, uint, ulong*, int>)Load("vkResetFences"u8);
        QueueSubmit = (delegate* unmanaged<nint, uint, VkSubmitInfo*, ulong, int>)Load("vkQueueSubmit"u8);
    }

    public delegate* unmanaged<nint, nint, void> DestroyDevice { get; }

    public delegate* unmanaged<nint, uint, uint, nint*, void> GetDeviceQueue { get; }

    public delegate* unmanaged<nint, int> DeviceWaitIdle { get; }

    public delegate* unmanaged<nint, VkBufferCreateInfo*, nint, ulong*, int> CreateBuffer { get; }

    public delegate* unmanaged<nint, ulong, nint, void> DestroyBuffer { get; }

    public delegate* unmanaged<nint, ulong, VkMemoryRequirements*, void> GetBufferMemoryRequirements { get; }

    public delegate* unmanaged<nint, VkMemoryAllocateInfo*, nint, ulong*, int> AllocateMemory { get; }

    public delegate* unmanaged<nint, ulong, nint, void> FreeMemory { get; }

    public delegate* unmanaged<nint, ulong, ulong, ulong, int> BindBufferMemory { get; }

    public delegate* unmanaged<nint, ulong, ulong, ulong, uint, void**, int> MapMemory { get; }

    public delegate* unmanaged<nint, ulong, void> UnmapMemory { get; }

    public delegate* unmanaged<nint, VkBufferDeviceAddressInfo*, ulong> GetBufferDeviceAddress { get; }

    public delegate* unmanaged<nint, VkShaderModuleCreateInfo*, nint, ulong*, int> CreateShaderModule { get; }

    public delegate* unmanaged<nint, ulong, nint, void> DestroyShaderModule { get; }

    public delegate* unmanaged<nint, VkPipelineLayoutCreateInfo*, nint, ulong*, int> CreatePipelineLayout { get; }

    public delegate* unmanaged<nint, ulong, nint, void> DestroyPipelineLayout { get; }

    public delegate* unmanaged<nint, ulong, uint, VkComputePipelineCreateInfo*, nint, ulong*, int> CreateComputePipelines { get; }

    public delegate* unmanaged<nint, ulong, nint, void> DestroyPipeline { get; }

    public delegate* unmanaged<nint, VkCommandPoolCreateInfo*, nint, ulong*, int> CreateCommandPool { get; }

    public delegate* unmanaged<nint, ulong, nint, void> DestroyCommandPool { get; }

    public delegate* unmanaged<nint, VkCommandBufferAllocateInfo*, nint*, int> AllocateCommandBuffers { get; }

    public delegate* unmanaged<nint, VkCommandBufferBeginInfo*, int> BeginCommandBuffer { get; }

    public delegate* unmanaged<nint, int> EndCommandBuffer { get; }

    public delegate* unmanaged<nint, uint, int> ResetCommandBuffer { get; }

    public delegate* unmanaged<nint, int, ulong, void> CmdBindPipeline { get; }

    public delegate* unmanaged<nint, ulong, uint, uint, uint, void*, void> CmdPushConstants { get; }

    public delegate* unmanaged<nint, uint, uint, uint, void> CmdDispatch { get; }

    public delegate* unmanaged<nint, uint, uint, uint, uint, VkMemoryBarrier*, uint, void*, uint, void*, void> CmdPipelineBarrier { get; }

    public delegate* unmanaged<nint, ulong, ulong, uint, VkBufferCopy*, void> CmdCopyBuffer { get; }

    public delegate* unmanaged<nint, VkFenceCreateInfo*, nint, ulong*, int> CreateFence { get; }

    public delegate* unmanaged<nint, ulong, nint, void> DestroyFence { get; }

    public delegate* unmanaged<nint, uint, ulong*, uint, ulong, int> WaitForFences { get; }

    public delegate* unmanaged<nint, uint, ulong*, int> ResetFences { get; }

    public delegate* unmanaged<nint, uint, VkSubmitInfo*, ulong, int> QueueSubmit { get; }
}
