using System.Globalization;
using QwenSharp.Generation;
using QwenSharp.Numerics;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Generation;

/// <summary>
/// llama-perplexity's task draws against what the C++ standard library's own <c>std::mt19937</c> and
/// <c>std::uniform_int_distribution</c> (libstdc++ 12) printed for the same draws (tests/fixtures/task-draws: the program and its output).
/// </summary>
public sealed class TaskDrawsTests
{
    private static readonly string[] Printed = File.ReadAllLines(Fixtures.File("task-draws", "draws.txt"));

    /// <summary>The draws the C++ library made for a method ("hellaswag" or "scaled"), a number available and a number drawn.</summary>
    public static int[] Drawn(string method, int available, int count) =>
        Draws().Single(d => d.Method == method && d.Available == available && d.Count == count).Drawn;

    private static IEnumerable<(string Method, int Available, int Count, int[] Drawn)> Draws()
    {
        foreach (string line in Printed.Where(l => !l.StartsWith("mt19937", StringComparison.Ordinal)))
        {
            string[] head = line[..line.IndexOf(':', StringComparison.Ordinal)].Split(' ');
            int[] drawn = [.. line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(v => int.Parse(v, CultureInfo.InvariantCulture))];
            yield return (head[0], int.Parse(head[1], CultureInfo.InvariantCulture), int.Parse(head[2], CultureInfo.InvariantCulture), drawn);
        }
    }

    [Fact]
    public void Mt19937_IsTheStandardsGenerator()
    {
        // C++ [rand.predef]: the 10000th output of a default-constructed std::mt19937 (seed 5489) is 4123659995.
        var standard = new Mt19937(5489);
        for (int i = 1; i < 10000; i++)
        {
            standard.Next();
        }

        Assert.Equal(4123659995u, standard.Next());
        uint[] expected = [.. Printed.Single(l => l.StartsWith("mt19937 1:", StringComparison.Ordinal))["mt19937 1:".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(v => uint.Parse(v, CultureInfo.InvariantCulture))];
        var seeded = new Mt19937(1);
        Assert.Equal(expected, expected.Select(_ => seeded.Next()));
    }

    [Fact]
    public void HellaSwagDraws_AreLibstdcppsUniformDraws()
    {
        var cases = Draws().Where(d => d.Method == "hellaswag").ToArray();
        Assert.True(cases.Length >= 6);
        foreach ((_, int available, int count, int[] drawn) in cases)
        {
            Assert.Equal(drawn, TaskDraws.HellaSwag(available, count));
        }
    }

    [Fact]
    public void ScaledDraws_AreLlamaPerplexitysF32Draws()
    {
        var cases = Draws().Where(d => d.Method == "scaled").ToArray();
        Assert.True(cases.Length >= 6);
        foreach ((_, int available, int count, int[] drawn) in cases.Where(c => c.Count < c.Available))
        {
            Assert.Equal(drawn, TaskDraws.Scaled(available, count));
        }

        // As many tasks as the file holds, or more: all of them in the file's order (llama-perplexity draws none).
        Assert.Equal([0, 1, 2, 3], TaskDraws.Scaled(4, 4));
        Assert.Equal([0, 1, 2], TaskDraws.Scaled(3, 10));
    }
}
