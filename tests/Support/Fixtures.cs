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

    public static string TempDirectory()
    {
        string path = Path.Combine(Path.GetTempPath(), "qwensharp-tests", Guid.NewGuid().ToString("N"));
        System.IO.Directory.CreateDirectory(path);
        return path;
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
