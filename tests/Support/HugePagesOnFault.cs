namespace QwenSharp.Tests.Support;

/// <summary>Skips a test unless advised memory gets huge pages when it is first written (Linux, transparent huge pages on).</summary>
internal static class HugePagesOnFault
{
    /// <summary>Skips unless they are on; returns the setting ("always [madvise] never") for the test's messages.</summary>
    public static string SkipUnlessOn()
    {
        const string Setting = "/sys/kernel/mm/transparent_hugepage/enabled";
        Skip.IfNot(OperatingSystem.IsLinux() && File.Exists(Setting), "transparent huge pages are a Linux feature");
        string enabled = File.ReadAllText(Setting).Trim();
        Skip.If(enabled.Contains("[never]", StringComparison.Ordinal), $"transparent huge pages are off here ({enabled})");

        // Without direct compaction for advised memory, a fault takes a small page whenever no free huge one is at hand.
        string defrag = File.ReadAllText("/sys/kernel/mm/transparent_hugepage/defrag");
        Skip.If(defrag.Contains("[never]", StringComparison.Ordinal) || defrag.Contains("[defer]", StringComparison.Ordinal),
            $"huge pages are not compacted for on a fault here (defrag: {defrag.Trim()})");
        return enabled;
    }
}
