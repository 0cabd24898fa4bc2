using System.Runtime.Intrinsics;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Which SIMD width the CPU kernels use. The best the CPU accelerates is the default; any path can be forced
/// (in code through <see cref="CpuBackendOptions.KernelPath"/>, or with the environment variable
/// <c>QWENSHARP_KERNEL_PATH=scalar|vector256|vector512</c>) so one machine can test and measure them all.
/// A forced path the hardware lacks still runs correctly, emulated and slowly.
/// </summary>
public enum KernelPath
{
    /// <summary>Plain loops: the reference every SIMD path is tested against.</summary>
    Scalar,

    /// <summary>256-bit vectors (AVX2).</summary>
    Vector256,

    /// <summary>512-bit vectors (AVX-512).</summary>
    Vector512,
}

public static class KernelPaths
{
    public const string EnvironmentVariable = "QWENSHARP_KERNEL_PATH";

    public static IReadOnlyList<KernelPath> All { get; } = [KernelPath.Scalar, KernelPath.Vector256, KernelPath.Vector512];

    /// <summary>The widest path this CPU accelerates.</summary>
    public static KernelPath Best =>
        Vector512.IsHardwareAccelerated ? KernelPath.Vector512
        : Vector256.IsHardwareAccelerated ? KernelPath.Vector256
        : KernelPath.Scalar;

    /// <summary><see cref="Best"/>, unless <c>QWENSHARP_KERNEL_PATH</c> names another.</summary>
    public static KernelPath Default
    {
        get
        {
            string? forced = Environment.GetEnvironmentVariable(EnvironmentVariable);
            if (string.IsNullOrWhiteSpace(forced))
            {
                return Best;
            }

            return TryParse(forced, out KernelPath path)
                ? path
                : throw new ArgumentException($"{EnvironmentVariable}='{forced}' is not one of scalar, vector256, vector512");
        }
    }

    public static bool TryParse(string text, out KernelPath path)
    {
        switch (text.Trim().ToLowerInvariant())
        {
            case "scalar": path = KernelPath.Scalar; return true;
            case "vector256" or "avx2" or "256": path = KernelPath.Vector256; return true;
            case "vector512" or "avx512" or "512": path = KernelPath.Vector512; return true;
            default: path = default; return false;
        }
    }

    /// <summary>f32 lanes per vector: 1, 8 or 16.</summary>
    public static int Lanes(KernelPath path) => path switch
    {
        KernelPath.Vector512 => Vector512<float>.Count,
        KernelPath.Vector256 => Vector256<float>.Count,
        _ => 1,
    };
}
