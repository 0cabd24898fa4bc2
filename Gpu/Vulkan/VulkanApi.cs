using System.Runtime.InteropServices;

namespace QwenSharp.Gpu.Vulkan;

/// <summary>
/// The Vulkan loader (libvulkan.so.1, vulkan-1.dll) and the few global entry points; everything else is
/// looked up per instance (<see cref="InstanceApi"/>) and per device (<see cref="DeviceApi"/>), as the loader
/// asks. Function pointers, not delegates: nothing here needs reflection, so it survives Native AOT trimming.
/// </summary>
internal static unsafe class VulkanApi
{
    private static readonly Lazy<nint> s_library = new(LoadLibrary);

    /// <summary>The loader's file name on this platform, for messages.</summary>
    public static string LibraryName =>
        OperatingSystem.IsWindows() ? "vulkan-1.dll" : OperatingSystem.IsMacOS() ? "libvulkan.1.dylib" : "libvulkan.so.1";

    /// <summary>vkGetInstanceProcAddr, the loader's one exported entry point that every other is found through.</summary>
    public static delegate* unmanaged<nint, byte*, nint> GetInstanceProcAddr =>
        (delegate* unmanaged<nint, byte*, nint>)NativeLibrary.GetExport(s_library.Value, "vkGetInstanceProcAddr");

    /// <summary>True when the loader can be opened at all.</summary>
    public static bool TryLoad(out string? error)
    {
        try
        {
            _ = s_library.Value;
            error = null;
            return true;
        }
        catch (GpuException e)
        {
            error = e.Message;
            return false;
        }
    }

    /// <summary>A global or instance-level function, null when the loader does not have it.</summary>
    public static nint Function(nint instance, ReadOnlySpan<byte> nameUtf8Z)
    {
        fixed (byte* name = nameUtf8Z)
        {
            return GetInstanceProcAddr(instance, name);
        }
    }

    /// <summary>Names a loader to use instead of the system's (a path or file name).</summary>
    public const string LoaderVariable = "QWENSHARP_VULKAN_LOADER";

    private static nint LoadLibrary()
    {
        string? forced = Environment.GetEnvironmentVariable(LoaderVariable);
        string[] candidates = !string.IsNullOrEmpty(forced) ? [forced]
            : OperatingSystem.IsWindows() ? ["vulkan-1.dll"]
            : OperatingSystem.IsMacOS() ? ["libvulkan.1.dylib", "libMoltenVK.dylib"]
            : ["libvulkan.so.1", "libvulkan.so"];
        foreach (string name in candidates)
        {
            if (NativeLibrary.TryLoad(name, typeof(VulkanApi).Assembly, null, out nint handle))
            {
                return handle;
            }
        }

        string install = OperatingSystem.IsWindows()
            ? "install your GPU's driver, which brings vulkan-1.dll"
            : "install your GPU's Vulkan driver, or Mesa's CPU implementation lavapipe (Debian/Ubuntu: apt-get install libvulkan1 mesa-vulkan-drivers)";
        string which = string.IsNullOrEmpty(forced) ? LibraryName : $"{forced} (from {LoaderVariable})";
        throw new GpuException($"--device gpu: the Vulkan loader {which} was not found: {install}");
    }
}
