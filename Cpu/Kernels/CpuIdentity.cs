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

    /// <summary>
    /// Whether this is an Intel CPU with AVX-512 and AVX-VNNI: the server cores since Sapphire Rapids, whose 512-bit integer
    /// multiplies issue on two ports (<see cref="VectorUnits"/>) and whose Q8_0 decode gains from rows apart (<see cref="RowsApart"/>).
    /// </summary>
    public static bool IsIntelAvx512Vnni { get; } = Vendor == "GenuineIntel" && Avx512BW.IsSupported && AvxVnni.IsSupported;

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

    /// <summary>
    /// CPUID's brand string (leaves 8000_0002h-8000_0004h, trimmed: "AMD EPYC 9654 96-Core Processor"; a virtual machine may
    /// shorten it, "AMD EPYC"); empty where the CPU has none.
    /// </summary>
    public static string Brand { get; } = X86Base.IsSupported ? BrandOf() : "";

    /// <summary>
    /// The AMD core of a family and model (Zen/Zen+ and Zen 2 in 17h, Zen 3 and Zen 4 in 19h, Zen 5 in 1Ah; Hygon's 18h is
    /// Zen), which the kernels' choices follow; null for the rest (Intel's are told apart by their instruction sets).
    /// </summary>
    internal static string? CoreName(string vendor, int family, int model) =>
        Zen1Class(vendor, family, model) ? "Zen/Zen+"
        : vendor != "AuthenticAMD" ? null
        : family == 0x17 ? "Zen 2"
        : Zen3(vendor, family, model) ? "Zen 3"
        : Zen4(vendor, family, model) ? "Zen 4"
        : family == 0x1A ? "Zen 5"
        : null;

    /// <summary>
    /// One line that names this CPU for a benchmark's output, so that its figures say which machine gave them: the brand
    /// string, vendor, family and model (hex, as AMD's and Intel's manuals give them), the core where known, and the instruction sets
    /// the kernels choose by (e.g. "AMD EPYC (AuthenticAMD family 19h model 11h, Zen 4): AVX-512, GFNI; no AVX-VNNI").
    /// </summary>
    public static string Describe() => Describe(Brand, Vendor, Family, Model, InstructionSets());

    /// <summary>The rule of <see cref="Describe()"/> for given parts.</summary>
    internal static string Describe(string brand, string vendor, int family, int model, string instructionSets)
    {
        string core = CoreName(vendor, family, model) is string name ? $", {name}" : "";
        string identity = vendor.Length == 0 ? "not x86" : $"{vendor} family {family:X2}h model {model:X2}h{core}";
        return $"{(brand.Length == 0 ? "" : $"{brand} ")}({identity}): {instructionSets}";
    }

    /// <summary>What the kernels choose by: the widest vectors, and whether vpdpbusd (AVX-VNNI, the only form .NET exposes) and GFNI are there.</summary>
    private static string InstructionSets()
    {
        string vectors = Avx512F.IsSupported && Avx512BW.IsSupported ? "AVX-512" : Avx2.IsSupported && Fma.IsSupported ? "AVX2, FMA" : "no AVX2";
        string gfni = Gfni.IsSupported ? ", GFNI" : "";
        return $"{vectors}{gfni}; {(AvxVnni.IsSupported ? "AVX-VNNI" : "no AVX-VNNI")}";
    }

    /// <summary>The 48 bytes of leaves 8000_0002h-8000_0004h as text, without NULs and runs of padding spaces (Intel's pad inside).</summary>
    private static string BrandOf()
    {
        if ((uint)X86Base.CpuId(unchecked((int)0x80000000), 0).Eax < 0x80000004)
        {
            return "";
        }

        Span<byte> bytes = stackalloc byte[48];
        for (int leaf = 0; leaf < 3; leaf++)
        {
            (int eax, int ebx, int ecx, int edx) = X86Base.CpuId(unchecked((int)0x80000002) + leaf, 0);
            Span<byte> at = bytes.Slice(16 * leaf, 16);
            System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(at, eax);
            System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(at[4..], ebx);
            System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(at[8..], ecx);
            System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(at[12..], edx);
        }

        return string.Join(' ', System.Text.Encoding.ASCII.GetString(bytes).Replace('\0', ' ').Split(' ', StringSplitOptions.RemoveEmptyEntries));
    }

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
