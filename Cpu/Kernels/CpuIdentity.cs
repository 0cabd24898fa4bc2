using System.Runtime.Intrinsics.X86;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// The CPU's vendor and family from CPUID, for the choices that depend on the microarchitecture rather than on the
/// instruction sets (<see cref="VectorUnits"/>, <see cref="SubnormalOperands"/>, <see cref="PanelDecode"/>, <see cref="RowsApart"/>).
/// </summary>
internal static class CpuIdentity
{
    /// <summary>CPUID's vendor string ("AuthenticAMD", "GenuineIntel", "HygonGenuine"); empty off x86.</summary>
    public static string Vendor { get; } = X86Base.IsSupported ? VendorOf(X86Base.CpuId(0, 0)) : "";

    /// <summary>Whether CPUID's vendor string is "AuthenticAMD".</summary>
    public static bool IsAmd { get; } = Vendor == "AuthenticAMD";

    /// <summary>The display family (base family, plus the extended family where the base is 0Fh); 0 off x86.</summary>
    public static int Family { get; } = X86Base.IsSupported ? DisplayFamily(X86Base.CpuId(1, 0).Eax) : 0;

    /// <summary>
    /// The display model (the base model, plus the extended model where the family is 6 or 0Fh and above: every AMD family
    /// since 0Fh); 0 off x86. AMD family 17h is Zen and Zen+ below model 30h, Zen 2 from it.
    /// </summary>
    public static int Model { get; } = X86Base.IsSupported ? DisplayModel(X86Base.CpuId(1, 0).Eax) : 0;

    /// <summary>
    /// Whether this is a first-generation Zen core (Zen, Zen+: AMD family 17h below model 30h; Hygon's Dhyana, family 18h,
    /// is that core licensed), whose 256-bit operations are split over two 128-bit units (<see cref="PanelDecode"/>).
    /// </summary>
    public static bool IsZen1Class { get; } = Zen1Class(Vendor, Family, Model);

    /// <summary>The rule of <see cref="IsZen1Class"/> for a vendor, family and model.</summary>
    internal static bool Zen1Class(string vendor, int family, int model) =>
        (vendor == "AuthenticAMD" && family == 0x17 && model < 0x30) || (vendor == "HygonGenuine" && family == 0x18);

    /// <summary>
    /// Whether this is a Zen 3 core (AMD family 19h, models 00h-0Fh and 20h-5Fh: Milan, Vermeer, Rembrandt, Cezanne; the rest
    /// of 19h is Zen 4), whose 256-bit units are whole but which has no AVX-512 (<see cref="RowsApart"/>,
    /// <see cref="SubnormalOperands"/>, <see cref="PanelDecode"/>).
    /// </summary>
    public static bool IsZen3 { get; } = Zen3(Vendor, Family, Model);

    /// <summary>The rule of <see cref="IsZen3"/> for a vendor, family and model.</summary>
    internal static bool Zen3(string vendor, int family, int model) =>
        vendor == "AuthenticAMD" && family == 0x19 && (model < 0x10 || model is >= 0x20 and < 0x60);

    /// <summary>
    /// Whether this is a Zen 4 core (the rest of AMD family 19h: Genoa, Bergamo, Raphael, Phoenix, Dragon Range), which has
    /// AVX-512 (each 512-bit operation two 256-bit halves) with AVX512_VNNI but not AVX-VNNI, so that .NET, which exposes
    /// vpdpbusd only as AVX-VNNI, multiplies bytes there with vpmaddubsw and vpmaddwd (<see cref="PanelDecode"/>,
    /// <see cref="RowsApart"/>, <see cref="VectorUnits"/>).
    /// </summary>
    public static bool IsZen4 { get; } = Zen4(Vendor, Family, Model);

    /// <summary>The rule of <see cref="IsZen4"/> for a vendor, family and model.</summary>
    internal static bool Zen4(string vendor, int family, int model) =>
        vendor == "AuthenticAMD" && family == 0x19 && !Zen3(vendor, family, model);

    /// <summary>The 12 characters of leaf 0: EBX, EDX, ECX, four little-endian bytes each.</summary>
    private static string VendorOf((int Eax, int Ebx, int Ecx, int Edx) leaf)
    {
        Span<byte> bytes = stackalloc byte[12];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(bytes, leaf.Ebx);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(bytes[4..], leaf.Edx);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(bytes[8..], leaf.Ecx);
        return System.Text.Encoding.ASCII.GetString(bytes);
    }

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
