using System.Runtime.Intrinsics.X86;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// The CPU's vendor and family from CPUID, for the choices that depend on the microarchitecture rather than on the
/// instruction sets (<see cref="VectorUnits"/>, <see cref="SubnormalOperands"/>, <see cref="PanelDecode"/>).
/// </summary>
internal static class CpuIdentity
{
    /// <summary>Whether CPUID's vendor string is "AuthenticAMD".</summary>
    public static bool IsAmd { get; } = X86Base.IsSupported && Amd(X86Base.CpuId(0, 0));

    /// <summary>The display family (base family, plus the extended family where the base is 0Fh); 0 off x86.</summary>
    public static int Family { get; } = X86Base.IsSupported ? DisplayFamily(X86Base.CpuId(1, 0).Eax) : 0;

    /// <summary>
    /// The display model (the base model, plus the extended model where the family is 6 or 0Fh and above: every AMD family
    /// since 0Fh); 0 off x86. AMD family 17h is Zen and Zen+ below model 30h, Zen 2 from it.
    /// </summary>
    public static int Model { get; } = X86Base.IsSupported ? DisplayModel(X86Base.CpuId(1, 0).Eax) : 0;

    private static bool Amd((int Eax, int Ebx, int Ecx, int Edx) vendor) =>
        vendor.Ebx == 0x68747541 && vendor.Edx == 0x69746E65 && vendor.Ecx == 0x444D4163;    // "Auth" "enti" "cAMD"

    private static int DisplayFamily(int signature)
    {
        int family = (signature >> 8) & 0xF;
        return family == 0xF ? family + ((signature >> 20) & 0xFF) : family;
    }

    private static int DisplayModel(int signature)
    {
        int family = (signature >> 8) & 0xF, model = (signature >> 4) & 0xF;
        return family is 0x6 or 0xF ? model + (((signature >> 16) & 0xF) << 4) : model;
    }
}
