namespace QwenSharp.Tests.Support;

public class FixturesTests
{
    [Fact]
    public void LeftRuns_GoOnlyWhenTheirProcessIsGoneAndTheyAreHoursOld()
    {
        string root = Fixtures.TempDirectory();
        DateTime threeHoursAgo = DateTime.UtcNow - TimeSpan.FromHours(3);
        string live = Folder(root, $"run-{Environment.ProcessId}-a", threeHoursAgo);
        string dead = Folder(root, $"run-{int.MaxValue - 1}-b", threeHoursAgo);
        string deadButRecent = Folder(root, $"run-{int.MaxValue - 1}-c", DateTime.UtcNow);
        string olderCodesTestFolder = Folder(root, Guid.NewGuid().ToString("N"), threeHoursAgo);

        Fixtures.RemoveLeftRuns(root);

        Assert.True(Directory.Exists(live));
        Assert.False(Directory.Exists(dead));
        Assert.True(Directory.Exists(deadButRecent));
        Assert.False(Directory.Exists(olderCodesTestFolder));
    }

    [Fact]
    public void TempDirectory_IsANewEmptyFolderInsideThisRunsFolder()
    {
        string first = Fixtures.TempDirectory();
        string second = Fixtures.TempDirectory();

        Assert.NotEqual(first, second);
        Assert.Empty(Directory.EnumerateFileSystemEntries(first));
        string run = Path.GetFileName(Path.GetDirectoryName(first))!;
        Assert.StartsWith($"run-{Environment.ProcessId}-", run, StringComparison.Ordinal);
        Assert.Equal(Path.GetDirectoryName(first), Path.GetDirectoryName(second));
    }

    private static string Folder(string root, string name, DateTime lastWrite)
    {
        string path = Path.Combine(root, name);
        Directory.CreateDirectory(path);
        File.WriteAllText(Path.Combine(path, "model.gguf"), "x");
        Directory.SetLastWriteTimeUtc(path, lastWrite);
        return path;
    }
}
