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
        string vendor = lines.First(l => l.StartsWith("vendor_id", StringComparison.Ordinal)).Split(':')[1].Trim();
        Assert.Equal(vendor, CpuIdentity.Vendor);
        Assert.Equal(vendor == "AuthenticAMD", CpuIdentity.IsAmd);
    }

    [Theory]
    [InlineData("AuthenticAMD", 0x17, 0x01, true)]    // Zen (EPYC 7001, Naples)
    [InlineData("AuthenticAMD", 0x17, 0x08, true)]    // Zen+
    [InlineData("AuthenticAMD", 0x17, 0x31, false)]   // Zen 2 (Rome)
    [InlineData("AuthenticAMD", 0x19, 0x01, false)]   // Zen 3
    [InlineData("HygonGenuine", 0x18, 0x00, true)]    // Dhyana, the licensed Zen core
    [InlineData("GenuineIntel", 0x06, 0x8F, false)]
    public void Zen1Class_IsTheFirstZenCoreByEitherVendor(string vendor, int family, int model, bool expected) =>
        Assert.Equal(expected, CpuIdentity.Zen1Class(vendor, family, model));

    [Theory]
    [InlineData("AuthenticAMD", 0x19, 0x01, true)]    // Zen 3 (EPYC 7003, Milan)
    [InlineData("AuthenticAMD", 0x19, 0x21, true)]    // Zen 3 (Ryzen 5000, Vermeer)
    [InlineData("AuthenticAMD", 0x19, 0x50, true)]    // Zen 3 (Cezanne)
    [InlineData("AuthenticAMD", 0x19, 0x11, false)]   // Zen 4 (EPYC 9004, Genoa)
    [InlineData("AuthenticAMD", 0x19, 0x61, false)]   // Zen 4 (Ryzen 7000, Raphael)
    [InlineData("AuthenticAMD", 0x17, 0x31, false)]   // Zen 2 (Rome)
    [InlineData("AuthenticAMD", 0x1A, 0x02, false)]   // Zen 5
    [InlineData("GenuineIntel", 0x06, 0x8F, false)]
    public void Zen3_IsFamily19hBelowZen4sModels(string vendor, int family, int model, bool expected) =>
        Assert.Equal(expected, CpuIdentity.Zen3(vendor, family, model));

    [Theory]
    [InlineData("AuthenticAMD", 0x19, 0x11, true)]    // Zen 4 (EPYC 9004, Genoa: this project's Zen 4 host, model 17)
    [InlineData("AuthenticAMD", 0x19, 0x61, true)]    // Zen 4 (Ryzen 7000, Raphael)
    [InlineData("AuthenticAMD", 0x19, 0x74, true)]    // Zen 4 (Phoenix)
    [InlineData("AuthenticAMD", 0x19, 0xA0, true)]    // Zen 4c (EPYC 97x4, Bergamo)
    [InlineData("AuthenticAMD", 0x19, 0x01, false)]   // Zen 3 (Milan)
    [InlineData("AuthenticAMD", 0x19, 0x50, false)]   // Zen 3 (Cezanne)
    [InlineData("AuthenticAMD", 0x1A, 0x02, false)]   // Zen 5
    [InlineData("AuthenticAMD", 0x17, 0x31, false)]   // Zen 2 (Rome)
    [InlineData("HygonGenuine", 0x19, 0x11, false)]
    [InlineData("GenuineIntel", 0x06, 0xCF, false)]   // Emerald Rapids
    public void Zen4_IsTheRestOfFamily19h(string vendor, int family, int model, bool expected) =>
        Assert.Equal(expected, CpuIdentity.Zen4(vendor, family, model));

    [Fact]
    public void Brand_is_the_model_name_linux_reports()
    {
        Skip.IfNot(X86Base.IsSupported && File.Exists("/proc/cpuinfo"), "needs an x86 CPU and Linux's /proc/cpuinfo");
        string? line = File.ReadAllLines("/proc/cpuinfo").FirstOrDefault(l => l.Split(':')[0].Trim() == "model name");
        Skip.If(line is null, "this kernel lists no model name");
        string linux = string.Join(' ', line.Split(':', 2)[1].Split(' ', StringSplitOptions.RemoveEmptyEntries));

        Assert.Equal(linux, CpuIdentity.Brand);
    }

    [Theory]
    [InlineData("AuthenticAMD", 0x17, 0x01, "Zen/Zen+")]
    [InlineData("HygonGenuine", 0x18, 0x00, "Zen/Zen+")]
    [InlineData("AuthenticAMD", 0x17, 0x31, "Zen 2")]    // Rome
    [InlineData("AuthenticAMD", 0x17, 0x71, "Zen 2")]    // Matisse
    [InlineData("AuthenticAMD", 0x19, 0x01, "Zen 3")]
    [InlineData("AuthenticAMD", 0x19, 0x11, "Zen 4")]
    [InlineData("AuthenticAMD", 0x1A, 0x02, "Zen 5")]    // Turin
    [InlineData("AuthenticAMD", 0x15, 0x02, null)]       // Piledriver
    [InlineData("GenuineIntel", 0x06, 0xCF, null)]
    public void CoreName_follows_amds_families_and_models(string vendor, int family, int model, string? expected) =>
        Assert.Equal(expected, CpuIdentity.CoreName(vendor, family, model));

    [Fact]
    public void Describe_names_brand_family_model_core_and_instruction_sets_in_hex()
    {
        Assert.Equal("AMD EPYC (AuthenticAMD family 19h model 11h, Zen 4): AVX-512, GFNI; no AVX-VNNI",
            CpuIdentity.Describe("AMD EPYC", "AuthenticAMD", 0x19, 0x11, "AVX-512, GFNI; no AVX-VNNI"));
        Assert.Equal("Intel(R) Xeon(R) Processor (GenuineIntel family 06h model CFh): AVX-512, GFNI; AVX-VNNI",
            CpuIdentity.Describe("Intel(R) Xeon(R) Processor", "GenuineIntel", 6, 0xCF, "AVX-512, GFNI; AVX-VNNI"));
        Assert.Equal("(not x86): no AVX2", CpuIdentity.Describe("", "", 0, 0, "no AVX2"));
    }
}
