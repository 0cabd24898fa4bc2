using System.Globalization;
using System.Runtime.Intrinsics.X86;
using QwenSharp.Cpu.Kernels;

namespace QwenSharp.Tests.Kernels;

/// <summary>The CPU's family and model as the switches read them from CPUID, against what Linux reads (/proc/cpuinfo).</summary>
public sealed class CpuIdentityTests
{
    [SkippableFact]
    public void Family_and_model_are_the_ones_linux_reports()
    {
        Skip.IfNot(X86Base.IsSupported && File.Exists("/proc/cpuinfo"), "needs an x86 CPU and Linux's /proc/cpuinfo");
        string[] lines = File.ReadAllLines("/proc/cpuinfo");
        int Field(string name) => int.Parse(lines.First(l => l.Split(':')[0].Trim() == name).Split(':')[1].Trim(), CultureInfo.InvariantCulture);

        Assert.Equal(Field("cpu family"), CpuIdentity.Family);
        Assert.Equal(Field("model"), CpuIdentity.Model);
        Assert.Equal(lines.First(l => l.StartsWith("vendor_id", StringComparison.Ordinal)).Split(':')[1].Trim() == "AuthenticAMD", CpuIdentity.IsAmd);
    }
}
