using System.Diagnostics;
using System.Globalization;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;

namespace QwenSharp.Bench;

/// <summary>
/// The Q8_0 decode kernels for a few tokens, from cache, in nanoseconds per token and block of 32 weights: one token row
/// by row (<c>Q8IntegerKernel.DotRows</c>), 2 to 7 tokens through the stored rows (pairs of tokens through
/// <c>DotRowsTwoTokens</c>, one left over alone), and 1 to 8 through the rows repacked at load (<c>Q8_0Panels</c>, which a
/// step of 2 or more takes where the CPU has vpdpbusd). From cache, the figure is the kernels' arithmetic, which is what
/// a step of several rows pays for each row past the first.
/// <code>
///   dotnet run -c Release --project bench -- few-tokens [--rows 64] [--cols 896] [--rounds 5]
/// </code>
/// </summary>
internal static class FewTokenKernels
{
    public static int Run(string[] args)
    {
        int rows = PeerDecode.Count(args, "--rows", 64, minimum: 1);
        int cols = PeerDecode.Count(args, "--cols", 896, minimum: 32);
        int rounds = PeerDecode.Count(args, "--rounds", 5, minimum: 1);
        if (cols % 32 != 0)
        {
            throw new ArgumentException($"--cols {cols}: a Q8_0 row is whole blocks of 32 values");
        }

        int blocks = cols / 32;
        var random = new Random(1);
        byte[] matrix = new byte[rows * blocks * 34];
        random.NextBytes(matrix);
        for (int b = 0; b < rows * blocks; b++)
        {
            // Every block's f16 scale 1.0 (0x3C00): random bytes would make some of them NaN or infinite.
            matrix[b * 34] = 0x00;
            matrix[(b * 34) + 1] = 0x3C;
        }

        const int most = 8;
        float[] x = [.. Enumerable.Range(0, most * cols).Select(_ => (float)((random.NextDouble() * 2) - 1))];
        KernelPath path = KernelPaths.Default;
        var q8 = new Q8Activations();
        q8.Quantize(x, most, cols, path);
        float[] y = new float[most * rows];
        int iterations = Math.Max(1, (int)(200_000_000L / ((long)rows * cols)));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{path}, VNNI {(ByteDots.Vnni(path) ? "on" : "off")}, {rows} Q8_0 rows of {cols} ({rows * blocks * 34 / 1024} KB, from cache); ns per token and block, medians of {rounds}"));
        foreach (int tokens in (int[])[1, 2, 3, 4, 7])
        {
            double ns = MedianNanoseconds(() => Step(path, matrix, rows, q8, tokens, y), rounds, iterations, (long)rows * blocks * tokens);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {tokens} token(s): {ns:F3} ns"));
        }

        if (!Q8_0Panels.Fits(rows, cols) || !QuantPanel.MultipliesInIntegers(path, DType.Q8_0))
        {
            Console.WriteLine($"  (no repacked panels: {rows} rows are not whole panels of {QuantPanel.Rows}, or this CPU has no vpdpbusd)");
            return 0;
        }

        // The same rows repacked at load (Q8_0Panels), as a step of 2 or more tokens multiplies them, its activations padded to
        // a group where that pays (QuantPanel.PanelTokens).
        int panelBytes = Q8_0Panels.PanelBytes(cols);
        byte[] panels = new byte[rows / QuantPanel.Rows * panelBytes];
        for (int p = 0; p < rows / QuantPanel.Rows; p++)
        {
            Q8_0Panels.Repack(matrix.AsSpan(p * QuantPanel.Rows * blocks * 34, QuantPanel.Rows * blocks * 34), cols, panels.AsSpan(p * panelBytes, panelBytes));
        }

        foreach (int tokens in (int[])[1, 2, 3, 4, 5, 6, 7, 8])
        {
            var padded = new Q8Activations();
            padded.Prepare(tokens, cols, QuantPanel.PanelTokens(path, tokens));
            padded.QuantizeRows(x, 0, tokens, path);
            double ns = MedianNanoseconds(
                () =>
                {
                    for (int p = 0; p < rows / QuantPanel.Rows; p++)
                    {
                        QuantPanel.MultiplyRepackedQ8_0(path, panels.AsSpan(p * panelBytes, panelBytes), cols, padded, y.AsSpan(p * QuantPanel.Rows), rows);
                    }
                },
                rounds, iterations, (long)rows * blocks * tokens);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  repacked panels, {tokens} token(s) (held as {padded.PanelTokens}): {ns:F3} ns"));
        }

        return 0;
    }

    /// <summary>
    /// The median over <paramref name="rounds"/> rounds of <paramref name="iterations"/> runs of <paramref name="step"/>, in ns per
    /// unit of <paramref name="work"/> (token and block) a run does; a first round warms up (the JIT's tiers, the caches) and is not counted.
    /// </summary>
    internal static double MedianNanoseconds(Action step, int rounds, int iterations, long work)
    {
        var times = new List<double>();
        for (int round = -1; round < rounds; round++)
        {
            long start = Stopwatch.GetTimestamp();
            for (int i = 0; i < iterations; i++)
            {
                step();
            }

            if (round >= 0)
            {
                times.Add(Stopwatch.GetElapsedTime(start).TotalNanoseconds / ((double)iterations * work));
            }
        }

        times.Sort();
        return times[times.Count / 2];
    }

    /// <summary>The rows against the first <paramref name="tokens"/> tokens, as <c>MatMul.Q8Rows</c> takes them at decode.</summary>
    private static void Step(KernelPath path, byte[] matrix, int rows, Q8Activations q8, int tokens, float[] y)
    {
        int t = 0;
        for (; t + 2 <= tokens; t += 2)
        {
            Q8IntegerKernel.DotRowsTwoTokens(path, matrix, rows, q8.Row(t), q8.Row(t + 1), y.AsSpan(t * rows, rows), y.AsSpan((t + 1) * rows, rows));
        }

        for (; t < tokens; t++)
        {
            Q8IntegerKernel.DotRows(path, DType.Q8_0, matrix, rows, q8.Row(t), y.AsSpan(t * rows, rows));
        }
    }
}
