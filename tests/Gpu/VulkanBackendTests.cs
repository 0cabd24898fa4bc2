using System.Runtime.CompilerServices;
using QwenSharp.Backend;
using QwenSharp.Formats;
using QwenSharp.Gpu;
using QwenSharp.Gpu.Vulkan;
using QwenSharp.Qwen2;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Gpu;

/// <summary>What is particular to the Vulkan backend: struct layouts, device choice, one submit per step, memory checks.</summary>
public sealed class VulkanBackendTests
{
    [Fact]
    public void VulkanStructs_SizesAndOffsets_MatchTheCCompilersLayoutOfVulkanCoreH()
    {
        // tests/fixtures/vulkan/struct-layout.txt was printed by tools/vulkan/layout.g.c, compiled against vulkan_core.h.
        Dictionary<string, int> expected = File.ReadAllLines(Fixtures.File("vulkan", "struct-layout.txt"))
            .Select(line => line.Split(' '))
            .ToDictionary(parts => parts[0], parts => int.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture));
        Dictionary<string, int> actual = StructLayouts.Measure();

        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach ((string name, int value) in expected)
        {
            Assert.True(actual[name] == value, $"{name}: C# has {actual[name]}, vulkan_core.h {value}");
        }
    }

    [Fact]
    public void Choose_Gpu_PrefersDiscreteThenIntegratedAndSkipsUnusableDevices()
    {
        GpuDeviceInfo cpu = Device(0, "cpu"), integrated = Device(1, "integrated"), discrete = Device(2, "discrete", unusable: "no bufferDeviceAddress"),
            discrete2 = Device(3, "discrete");

        Assert.Equal(3, VulkanDevice.Choose("gpu", [cpu, integrated, discrete, discrete2]).Index);
        Assert.Equal(1, VulkanDevice.Choose("gpu", [cpu, integrated, discrete]).Index);
        Assert.Equal(0, VulkanDevice.Choose("gpu", [cpu]).Index);
        Assert.Equal(0, VulkanDevice.Choose("gpu:0", [cpu, integrated]).Index);
    }

    [Fact]
    public void Choose_BadIndexOrUnusableOrNone_ThrowsSayingWhat()
    {
        GpuDeviceInfo cpu = Device(0, "cpu"), broken = Device(1, "discrete", unusable: "Vulkan 1.0.0, 1.2 needed");

        Assert.Contains("there are 2 Vulkan devices, gpu:0 to gpu:1", Assert.Throws<GpuException>(() => VulkanDevice.Choose("gpu:7", [cpu, broken])).Message);
        Assert.Contains("Vulkan 1.0.0, 1.2 needed", Assert.Throws<GpuException>(() => VulkanDevice.Choose("gpu:1", [cpu, broken])).Message);
        Assert.Contains("no device", Assert.Throws<GpuException>(() => VulkanDevice.Choose("gpu", [])).Message);
        Assert.Contains("no Vulkan device can run", Assert.Throws<GpuException>(() => VulkanDevice.Choose("gpu", [broken])).Message);
    }

    [Theory]
    [InlineData("gpu", true)]
    [InlineData("gpu:0", true)]
    [InlineData("gpu:12", true)]
    [InlineData("gpu:", false)]
    [InlineData("gpu:x", false)]
    [InlineData("cuda", false)]
    public void IsGpuSelector_AcceptsGpuAndGpuN(string text, bool expected) => Assert.Equal(expected, GpuDevices.IsGpuSelector(text));

    [Fact]
    public void Options_NoHostThreads_IsRefusedBeforeADeviceOpens()
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => new VulkanBackend(new VulkanBackendOptions { HostThreads = 0 }));
        Assert.Contains("host threads must be at least 1", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Shaders_EveryOneTheBackendNames_IsEmbedded()
    {
        foreach (string name in new[] { "embed_bf16", "matvec_f16", "gemm_f32", "rms_norm", "rope", "kv_store", "attention", "attention_combine", "swiglu", "add", "gather_rows" })
        {
            uint[] code = ShaderLibrary.LoadSpirV(name);
            Assert.Equal(0x07230203u, code[0]);   // the SPIR-V magic number
        }
    }

    [SkippableTheory]
    [InlineData(true)]
    [InlineData(false)]
    public void Forward_DecodeSteps_OneSubmitEachReplayedAndNoAllocation(bool fuse)
    {
        TestBackends.RequireGpu();
        using var backend = new VulkanBackend(new VulkanBackendOptions { FuseDecode = fuse });
        using Qwen2Model model = Qwen2Model.Load(Fixtures.Directory("tiny-qwen2"), backend);
        using var decode = new TwoSequenceDecode(model);
        decode.Step(TwoSequenceDecode.FirstPosition);       // recorded
        decode.Step(TwoSequenceDecode.FirstPosition + 1);   // the first replay
        (long submits, long replays) = backend.Submissions;
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int p = 10; p < 30; p++)
        {
            decode.Step(p);
        }

        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        (long submitsAfter, long replaysAfter) = backend.Submissions;
        Assert.Equal(20, submitsAfter - submits);
        Assert.Equal(20, replaysAfter - replays);
        Assert.Equal(0, allocated);

        // The launch budget of a decode step: embedding; per layer, fused: the norm with q/k/v, RoPE with the cache store,
        // attention, o_proj with the residual, the norm with gate/up/SiLU, down_proj with the residual; unfused: norm, q, k,
        // v, RoPE, cache store, attention, o_proj, add, norm, gate, up, SiLU, down_proj, add; then gather, norm, LM head.
        int perLayer = fuse ? 6 : 15;
        Assert.Equal(1 + (perLayer * model.Config.NumHiddenLayers) + 3, backend.LastStep.Dispatches);
    }

    [SkippableFact]
    public void CheckWeightMemory_MoreThanTheDevice_ThrowsNeededAndAvailable()
    {
        TestBackends.RequireGpu();
        using var backend = new VulkanBackend();
        IBackend b = backend;

        var e = Assert.Throws<GpuException>(() => b.CheckWeightMemory(1L << 50, "the weights of model.safetensors"));
        Assert.Matches(@"not enough device memory for the weights of model\.safetensors: [0-9.]+ MiB needed, [0-9.]+ MiB available", e.Message);
        var kv = Assert.Throws<GpuException>(() => backend.CreateKvCache(100_000, 1, 1 << 16, 4096));
        Assert.Contains("not enough device memory for a KV cache", kv.Message);

        // A layer past what the shaders' 32-bit offsets reach: 2^32 f32 values, 2^32 bytes of q8_0 (4352 a position here).
        kv = Assert.Throws<GpuException>(() => backend.CreateKvCache(1, 1, 1 << 20, 4096));
        Assert.EndsWith("a KV cache of 1 x 1048576 positions of 4096 f32 values is more than the GPU's shaders address in a layer (2^32 values); fewer slots or a smaller --context", kv.Message);
        kv = Assert.Throws<GpuException>(() => backend.CreateKvCache(1, 1, 986_896, 4096, DType.Q8_0));
        Assert.Contains("(2^32 bytes)", kv.Message);
        kv = Assert.Throws<GpuException>(() => backend.CreateKvCache(1_000_000, 1, 986_895, 4096, DType.Q8_0));
        Assert.Contains("not enough device memory for a KV cache", kv.Message);
        Assert.Equal(0, backend.AllocatedBytes);
    }

    [SkippableFact]
    public void Dispose_ModelAndBackend_FreeAllDeviceMemory()
    {
        TestBackends.RequireGpu();
        using var backend = new VulkanBackend();
        using (Qwen2Model model = Qwen2Model.Load(Fixtures.DemoModel, backend))
        {
            using KvCache cache = model.CreateKvCache(2, 32);
            using ForwardState state = model.CreateState(4, 4);
            Assert.True(backend.AllocatedBytes > 0);
        }

        Assert.Equal(0, backend.AllocatedBytes);
    }

    private static GpuDeviceInfo Device(int index, string type, string? unusable = null) =>
        new(index, $"device {index}", type, "1.3.0", 1 << 30, 32, false, unusable);
}
