using System.Globalization;

namespace QwenSharp.Cli;

/// <summary>How much memory this machine can still give the process.</summary>
internal static class HostMemory
{
    /// <summary>Linux's MemAvailable (free memory plus what the page cache would give back); elsewhere the GC's view of the machine.</summary>
    public static long Available()
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/meminfo"))
            {
                if (line.StartsWith("MemAvailable:", StringComparison.Ordinal))
                {
                    string[] parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    return long.Parse(parts[1], CultureInfo.InvariantCulture) * 1024;
                }
            }
        }
        catch (IOException)
        {
            // Not Linux: fall through.
        }
        catch (UnauthorizedAccessException)
        {
            // Not readable: fall through.
        }

        return GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
    }
}
