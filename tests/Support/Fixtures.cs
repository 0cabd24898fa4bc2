using System.Text.Json;

namespace QwenSharp.Tests.Support;

/// <summary>Paths to the repository's test fixtures and bundled model, found from the test assembly's folder.</summary>
internal static class Fixtures
{
    private static readonly Lazy<string> s_root = new(FindRepositoryRoot);

    public static string RepositoryRoot => s_root.Value;

    public static string Directory(string name) => Path.Combine(RepositoryRoot, "tests", "fixtures", name);

    public static string File(string fixture, string file) => Path.Combine(Directory(fixture), file);

    /// <summary>The demo model bundled with the CLI; its reference data lives in tests/fixtures/stories260K.</summary>
    public static string DemoModel => Path.Combine(RepositoryRoot, "models", "stories260K");

    /// <summary>The model folder of a reference fixture (stories260K's weights are the bundled demo model).</summary>
    public static string ModelDirectory(string fixture) => fixture == "stories260K" ? DemoModel : Directory(fixture);

    public static JsonDocument Json(string fixture, string file) => JsonDocument.Parse(System.IO.File.ReadAllBytes(File(fixture, file)));

    /// <summary>A new empty folder under this test run's own folder, which is deleted when the run ends.</summary>
    public static string TempDirectory()
    {
        string path = Path.Combine(s_runDirectory.Value, Guid.NewGuid().ToString("N"));
        System.IO.Directory.CreateDirectory(path);
        return path;
    }

    private static readonly Lazy<string> s_runDirectory = new(CreateRunDirectory);

    /// <summary>Deletes this run's folder and everything the tests wrote there (RunFolderTestFramework, after the last test).</summary>
    public static void RemoveRunDirectory()
    {
        if (s_runDirectory.IsValueCreated)
        {
            TryDelete(s_runDirectory.Value);
        }
    }

    // Every run's files live under qwensharp-tests/run-PID-ID, deleted after its last test. Before, each test's folder
    // stayed: runs added up until /tmp was full and a CI run failed writing its first file. A run killed before its end
    // leaves its folder, so each run first removes the folders of runs whose process is gone (and the per-test folders
    // older code left directly under qwensharp-tests), once nothing has been written in them for two hours: a test
    // process in another PID namespace sharing /tmp looks gone but may still be writing.
    private static string CreateRunDirectory()
    {
        string root = Path.Combine(Path.GetTempPath(), "qwensharp-tests");
        RemoveLeftRuns(root);
        string run = Path.Combine(root, $"run-{Environment.ProcessId}-{Guid.NewGuid():N}");
        System.IO.Directory.CreateDirectory(run);
        return run;
    }

    internal static void RemoveLeftRuns(string root)
    {
        if (!System.IO.Directory.Exists(root))
        {
            return;
        }

        DateTime staleBefore = DateTime.UtcNow - TimeSpan.FromHours(2);
        foreach (string folder in System.IO.Directory.EnumerateDirectories(root))
        {
            if (!IsRunOfLiveProcess(Path.GetFileName(folder)) && System.IO.Directory.GetLastWriteTimeUtc(folder) < staleBefore)
            {
                TryDelete(folder);
            }
        }
    }

    private static bool IsRunOfLiveProcess(string name)
    {
        string[] parts = name.Split('-');
        if (parts.Length != 3 || parts[0] != "run" || !int.TryParse(parts[1], out int pid))
        {
            return false;
        }

        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    private static void TryDelete(string folder)
    {
        try
        {
            System.IO.Directory.Delete(folder, recursive: true);
        }
        catch (IOException)
        {
            // Another process may still hold or be removing it; the next run's sweep takes what is left.
        }
        catch (UnauthorizedAccessException)
        {
            // As above.
        }
    }

    private static string FindRepositoryRoot()
    {
        for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (System.IO.File.Exists(Path.Combine(dir.FullName, "QwenSharp.slnx")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"QwenSharp.slnx not found above {AppContext.BaseDirectory}");
    }
}
