namespace QwenSharp.Gpu;

/// <summary>One Vulkan device as <c>qwensharp devices</c> lists it.</summary>
/// <param name="Index">Its place in the loader's list: <c>--device gpu:Index</c>.</param>
/// <param name="Name">The driver's name for it ("NVIDIA H200", "llvmpipe (LLVM 15.0.6, 256 bits)").</param>
/// <param name="Type">"discrete", "integrated", "virtual", "cpu" or "other".</param>
/// <param name="ApiVersion">The Vulkan version the driver offers ("1.3.230").</param>
/// <param name="MemoryBytes">The largest device-local memory heap.</param>
/// <param name="SubgroupSize">Threads that run in lock step (32 on NVIDIA, 64 on AMD, 8 on lavapipe).</param>
/// <param name="MatrixUnits">Whether it offers VK_KHR_cooperative_matrix (tensor cores and the like).</param>
/// <param name="Unusable">Why QwenSharp cannot run on it, or null when it can.</param>
public sealed record GpuDeviceInfo(
    int Index, string Name, string Type, string ApiVersion, long MemoryBytes, int SubgroupSize, bool MatrixUnits, string? Unusable);
