using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace QwenSharp.Cli;

/// <summary>
/// Native AOT fixes the instruction set at publish time. The main binary is built for x86-64-v3 (AVX2) and
/// runs anywhere since about 2015; a second build for x86-64-v4 sits in <c>avx512/</c>. On a CPU with
/// AVX-512 the main binary replaces itself with that one (execv: same process, arguments and environment),
/// so the 512-bit kernels run where they can. The JIT build needs none of this: it compiles for the CPU it is on.
/// </summary>
internal static partial class AvxDispatch
{
    public static void HandOverIfBetter(string[] args)
    {
        if (RuntimeFeature.IsDynamicCodeSupported || !OperatingSystem.IsLinux() || Vector512.IsHardwareAccelerated
            || Environment.GetEnvironmentVariable("QWENSHARP_NO_AVX512") is "1" or "true" || !CpuHasAvx512())
        {
            return;
        }

        string variant = Path.Combine(AppContext.BaseDirectory, "avx512", "qwensharp");
        if (!File.Exists(variant))
        {
            return;
        }

        var argv = new nint[args.Length + 2];
        try
        {
            argv[0] = Marshal.StringToCoTaskMemUTF8(variant);
            for (int i = 0; i < args.Length; i++)
            {
                argv[i + 1] = Marshal.StringToCoTaskMemUTF8(args[i]);
            }

            // Returns only when the hand-over failed; then this binary simply carries on with AVX2.
            _ = Execv(variant, argv);
        }
        finally
        {
            foreach (nint arg in argv)
            {
                Marshal.FreeCoTaskMem(arg);
            }
        }
    }

    /// <summary>AVX-512 F, DQ, CD, BW and VL (x86-64-v4), from CPUID leaf 7.</summary>
    private static bool CpuHasAvx512()
    {
        if (!X86Base.IsSupported)
        {
            return false;
        }

        (_, int ebx, _, _) = X86Base.CpuId(7, 0);
        const int f = 1 << 16, dq = 1 << 17, cd = 1 << 28, bw = 1 << 30, vl = 1 << 31;
        return (ebx & (f | dq | cd | bw | vl)) == (f | dq | cd | bw | vl);
    }

    [LibraryImport("libc", EntryPoint = "execv", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Execv(string path, nint[] argv);
}
