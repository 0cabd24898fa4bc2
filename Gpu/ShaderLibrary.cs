using System.Runtime.InteropServices;
using QwenSharp.Gpu.Vulkan;

namespace QwenSharp.Gpu;

/// <summary>
/// The compute pipelines, made once from the embedded SPIR-V (Shaders/*.spv) per shader and specialization
/// values. Every pipeline shares one layout: no descriptor sets, a 128-byte push-constant range that carries
/// buffer addresses and shapes.
/// </summary>
internal sealed unsafe class ShaderLibrary : IDisposable
{
    public const int PushConstantBytes = 128;

    private readonly VulkanDevice _device;
    private readonly Dictionary<(string Name, uint C0, uint C1, uint C2, uint C3), ulong> _pipelines = [];
    private ulong _layout;

    public ShaderLibrary(VulkanDevice device)
    {
        _device = device;
        var range = new VkPushConstantRange { StageFlags = (uint)Vk.SHADER_STAGE_COMPUTE_BIT, Size = PushConstantBytes };
        var info = new VkPipelineLayoutCreateInfo
        {
            SType = Vk.STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
            PushConstantRangeCount = 1,
            PPushConstantRanges = (nint)(&range),
        };
        ulong layout;
        VkCheck.Ok(device.Api.CreatePipelineLayout(device.Handle, &info, 0, &layout), "vkCreatePipelineLayout");
        _layout = layout;
    }

    public ulong Layout => _layout;

    /// <summary>The pipeline of shader <paramref name="name"/> with up to four specialization constants (ids 0..3).</summary>
    public ulong Get(string name, uint constant0 = 0, uint constant1 = 0, uint constant2 = 0, uint constant3 = 0, int constants = 0)
    {
        var key = (name, constant0, constant1, constant2, constant3);
        if (_pipelines.TryGetValue(key, out ulong pipeline))
        {
            return pipeline;
        }

        pipeline = Create(name, [constant0, constant1, constant2, constant3], constants);
        _pipelines.Add(key, pipeline);
        return pipeline;
    }

    private ulong Create(string name, ReadOnlySpan<uint> values, int constants)
    {
        uint[] code = LoadSpirV(name);
        DeviceApi api = _device.Api;
        ulong module;
        fixed (uint* p = code)
        {
            var moduleInfo = new VkShaderModuleCreateInfo
            {
                SType = Vk.STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
                CodeSize = (nuint)(code.Length * sizeof(uint)),
                PCode = (nint)p,
            };
            VkCheck.Ok(api.CreateShaderModule(_device.Handle, &moduleInfo, 0, &module), $"vkCreateShaderModule ({name})");
        }

        try
        {
            VkSpecializationMapEntry* entries = stackalloc VkSpecializationMapEntry[4];
            for (uint i = 0; i < 4; i++)
            {
                entries[i] = new VkSpecializationMapEntry { ConstantID = i, Offset = i * sizeof(uint), Size = sizeof(uint) };
            }

            fixed (uint* data = values)
            fixed (byte* entryPoint = "main\0"u8)
            {
                var specialization = new VkSpecializationInfo
                {
                    MapEntryCount = (uint)constants,
                    PMapEntries = (nint)entries,
                    DataSize = (nuint)(constants * sizeof(uint)),
                    PData = (nint)data,
                };
                var info = new VkComputePipelineCreateInfo
                {
                    SType = Vk.STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
                    Layout = _layout,
                };
                info.Stage.SType = Vk.STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
                info.Stage.Stage = Vk.SHADER_STAGE_COMPUTE_BIT;
                info.Stage.Module = module;
                info.Stage.PName = (nint)entryPoint;
                info.Stage.PSpecializationInfo = constants > 0 ? (nint)(&specialization) : 0;
                ulong pipeline;
                VkCheck.Ok(api.CreateComputePipelines(_device.Handle, 0, 1, &info, 0, &pipeline), $"vkCreateComputePipelines ({name})");
                return pipeline;
            }
        }
        finally
        {
            api.DestroyShaderModule(_device.Handle, module, 0);
        }
    }

    /// <summary>The embedded SPIR-V words of a shader (copied into a uint array: Vulkan wants pCode 4-byte aligned).</summary>
    internal static uint[] LoadSpirV(string name)
    {
        using Stream stream = typeof(ShaderLibrary).Assembly.GetManifestResourceStream(name + ".spv")
            ?? throw new GpuException($"shader {name}.spv is not embedded in QwenSharp.Gpu (run tools/compile-shaders.sh and rebuild)");
        var code = new uint[stream.Length / sizeof(uint)];
        stream.ReadExactly(MemoryMarshal.AsBytes(code.AsSpan()));
        return code;
    }

    public void Dispose()
    {
        foreach (ulong pipeline in _pipelines.Values)
        {
            _device.Api.DestroyPipeline(_device.Handle, pipeline, 0);
        }

        _pipelines.Clear();
        if (_layout != 0)
        {
            _device.Api.DestroyPipelineLayout(_device.Handle, _layout, 0);
            _layout = 0;
        }
    }
}
