using System.Globalization;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Gpu;

namespace QwenSharp.Cli.Commands;

/// <summary><c>qwensharp devices</c>: the CPU (what its kernels choose by) and the Vulkan devices <c>--device gpu</c> can choose from.</summary>
internal sealed class DevicesCommand : ICommand
{
    public string Name => "devices";

    public string Summary => "the CPU and the GPUs (Vulkan devices) a model can run on with device gpu:N: name, type, memory, subgroup size, matrix units";

    public string Usage => "qwensharp devices [--json]";

    public IReadOnlyList<OptionSpec> Options { get; } = [new("json", null, "print JSON: {\"devices\":[{\"index\",\"name\",\"type\",...}]}")];

    public IReadOnlyList<string> Examples { get; } = ["qwensharp devices", "qwensharp devices --json"];

    public int Run(Arguments args, TextWriter stdout, TextWriter stderr)
    {
        IReadOnlyList<GpuDeviceInfo> devices = GpuDevices.List();
        int chosen = -1;
        try
        {
            chosen = GpuDevices.Choose("gpu", devices).Index;
        }
        catch (GpuException)
        {
            // No device can run the shaders: each says why below.
        }

        if (args.Flag("json"))
        {
            JsonOutput.Write(stdout, w =>
            {
                w.WriteStartObject();
                w.WriteString("cpu", CpuIdentity.Describe());
                w.WriteStartArray("devices");
                foreach (GpuDeviceInfo d in devices)
                {
                    w.WriteStartObject();
                    w.WriteNumber("index", d.Index);
                    w.WriteString("name", d.Name);
                    w.WriteString("type", d.Type);
                    w.WriteString("vulkan", d.ApiVersion);
                    w.WriteNumber("memory_bytes", d.MemoryBytes);
                    w.WriteNumber("subgroup_size", d.SubgroupSize);
                    w.WriteBoolean("matrix_units", d.MatrixUnits);
                    w.WriteBoolean("usable", d.Unusable is null);
                    if (d.Unusable is not null)
                    {
                        w.WriteString("unusable_because", d.Unusable);
                    }

                    w.WriteBoolean("default", d.Index == chosen);
                    w.WriteEndObject();
                }

                w.WriteEndArray();
                w.WriteEndObject();
            });
            return 0;
        }

        stdout.WriteLine($"cpu    {CpuIdentity.Describe()}  [--device cpu]");
        if (devices.Count == 0)
        {
            stdout.WriteLine("no Vulkan devices (install your GPU's Vulkan driver, or Mesa's lavapipe: apt-get install mesa-vulkan-drivers)");
            return 0;
        }

        var c = CultureInfo.InvariantCulture;
        foreach (GpuDeviceInfo d in devices)
        {
            string memory = string.Create(c, $"{d.MemoryBytes / (1024.0 * 1024 * 1024):F1} GiB");
            string matrix = d.MatrixUnits ? ", matrix units (VK_KHR_cooperative_matrix)" : "";
            string state = d.Unusable is not null ? $"  [cannot run: {d.Unusable}]" : d.Index == chosen ? "  [--device gpu]" : "";
            stdout.WriteLine($"gpu:{d.Index}  {d.Name}: {d.Type}, Vulkan {d.ApiVersion}, {memory}, subgroup {d.SubgroupSize}{matrix}{state}");
        }

        return 0;
    }
}
