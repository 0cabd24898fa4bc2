using QwenSharp.Backend;
using QwenSharp.Cpu;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Gpu;

namespace QwenSharp.Tests.Support;

/// <summary>
/// The backends a model test runs on, by name: "cpu:scalar", "cpu:vector256", "cpu:vector512" (each CPU kernel
/// path) and "gpu" (the Vulkan backend on the first usable device: Mesa's lavapipe here and in CI, with the decode
/// fusions and the matrix units a GPU uses, which lavapipe leaves off by default; the CLI tests run its default). Without a
/// Vulkan device the GPU cases skip and say why, except under CI=true, where they fail.
/// </summary>
internal static class TestBackends
{
    public const string Gpu = "gpu";

    private static readonly Lazy<(bool Found, string Reason)> s_gpu = new(() =>
    {
        bool found = GpuDevices.TryFindUsable(out string reason);
        return (found, reason);
    });

    /// <summary>Every CPU kernel path, then the GPU.</summary>
    public static IReadOnlyList<string> All { get; } = [.. KernelPaths.All.Select(p => $"cpu:{p.ToString().ToLowerInvariant()}"), Gpu];

    /// <summary>The CPU at its default path, and the GPU.</summary>
    public static IReadOnlyList<string> CpuAndGpu { get; } = ["cpu", Gpu];

    public static TheoryData<string> AllData() => [.. All];

    public static TheoryData<string> CpuAndGpuData() => [.. CpuAndGpu];

    /// <summary>The --device values of the CLI and the Engine: "cpu" and "gpu".</summary>
    public static TheoryData<string> DevicesData() => ["cpu", Gpu];

    /// <summary>For a test given a --device value (or a placement, <see cref="CreatePlacement"/>): <see cref="RequireGpu"/> when it names the GPU.</summary>
    public static void RequireDevice(string device)
    {
        if (device.Contains(Gpu, StringComparison.Ordinal))
        {
            RequireGpu();
        }
    }

    /// <summary>Skips the test (or fails it under CI=true) when no Vulkan device can run the shaders.</summary>
    public static void RequireGpu()
    {
        (bool found, string reason) = s_gpu.Value;
        if (found)
        {
            return;
        }

        if (string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase))
        {
            Assert.Fail($"CI=true needs a Vulkan device for the GPU tests (apt-get install mesa-vulkan-drivers libvulkan1): {reason}");
        }

        Skip.If(true, $"no Vulkan device, GPU test skipped: {reason}");
    }

    /// <summary>The backend <paramref name="name"/>s; a CPU one with <paramref name="batchInvariant"/> as <see cref="CpuBackendOptions.BatchInvariant"/>.</summary>
    public static IBackend Create(string name, int threads = 2, bool batchInvariant = false)
    {
        if (name == Gpu)
        {
            RequireGpu();
            // lavapipe's defaults are unfused, without its (emulated) matrix units and with its host work on one thread; the
            // tests take all three.
            return new VulkanBackend(new VulkanBackendOptions { FuseDecode = true, MatrixUnits = true, HostThreads = threads });
        }

        if (name == "cpu")
        {
            return new CpuBackend(new CpuBackendOptions { Threads = threads, BatchInvariant = batchInvariant });
        }

        if (!name.StartsWith("cpu:", StringComparison.Ordinal) || !KernelPaths.TryParse(name[4..], out KernelPath path))
        {
            throw new ArgumentException($"unknown test backend '{name}'");
        }

        return new CpuBackend(new CpuBackendOptions { KernelPath = path, Threads = threads, BatchInvariant = batchInvariant });
    }

    /// <summary>
    /// A model split between two backends by name: "cpu+gpu:N" runs the last N layers (N past the layers: the LM head too)
    /// on the GPU and the rest on the CPU, "cpu+cpu:N" on a second CPU backend (the split alone, without the GPU's
    /// arithmetic); any other name is <see cref="Create"/>'s, unsplit. The model owns the offload backend.
    /// </summary>
    public static (IBackend Host, LayerOffload? Offload) CreatePlacement(string name, int threads = 2)
    {
        int plus = name.IndexOf('+', StringComparison.Ordinal);
        if (plus < 0)
        {
            return (Create(name, threads), null);
        }

        string[] device = name[(plus + 1)..].Split(':');
        if (device.Length != 2 || !int.TryParse(device[1], out int layers))
        {
            throw new ArgumentException($"unknown test placement '{name}': expected HOST+DEVICE:LAYERS");
        }

        IBackend offload = Create(device[0], threads);
        try
        {
            return (Create(name[..plus], threads), new LayerOffload(offload, layers));
        }
        catch
        {
            offload.Dispose();
            throw;
        }
    }
}
