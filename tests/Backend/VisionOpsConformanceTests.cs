using QwenSharp.Backend;
using QwenSharp.Formats;
using QwenSharp.Numerics;
using QwenSharp.Tests.Kernels;
using QwenSharp.Tests.Support;
using static QwenSharp.Tests.Backend.BackendConformanceTests;

namespace QwenSharp.Tests.Backend;

/// <summary>
/// The operations the Qwen2-VL vision tower added to <see cref="IBackend"/>, on every backend, against float64
/// references written here from their definitions (torch.nn.LayerNorm, GELU, quick_gelu, rotate_half RoPE,
/// bidirectional attention within segments).
/// </summary>
public sealed class VisionOpsConformanceTests
{
    public static TheoryData<string> Backends() => TestBackends.AllData();

    [SkippableTheory]
    [MemberData(nameof(Backends))]
    public void LayerNorm_matches_the_definition_even_far_from_zero(string backendName)
    {
        using IBackend backend = TestBackends.Create(backendName);
        foreach (int cols in new[] { 1, 7, 32, 1280 })
        {
            const int Rows = 5;
            float[] x = KernelData.Floats(Rows * cols, cols);
            for (int i = 0; i < cols; i++)
            {
                x[(4 * cols) + i] += 1000f;   // a row with a large mean: E[x²] - mean² would cancel away the variance
            }

            using var w = new StoredTensor("w", KernelData.Floats(cols, cols + 1), DType.F16, [cols]);
            using var b = new StoredTensor("b", KernelData.Floats(cols, cols + 2), DType.BF16, [cols]);
            using DeviceWeight weight = backend.Upload(w.View), bias = backend.Upload(b.View);
            float[] y = Run(backend, Rows, cols, [(x, cols)], (a, o) => backend.LayerNorm(a[0], weight, bias, 1e-6f, o));
            for (int r = 0; r < Rows; r++)
            {
                double mean = 0, variance = 0;
                for (int i = 0; i < cols; i++)
                {
                    mean += x[(r * cols) + i];
                }

                mean /= cols;
                for (int i = 0; i < cols; i++)
                {
                    variance += Math.Pow(x[(r * cols) + i] - mean, 2);
                }

                double scale = 1 / Math.Sqrt((variance / cols) + 1e-6);
                for (int i = 0; i < cols; i++)
                {
                    double expected = ((x[(r * cols) + i] - mean) * scale * w.Exact[i]) + b.Exact[i];
                    Assert.True(Math.Abs(expected - y[(r * cols) + i]) <= 2e-5 * (1 + Math.Abs(expected)),
                        $"{cols} columns, y[{r},{i}] = {y[(r * cols) + i]}, expected {expected}");
                }
            }
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends))]
    public void Gelu_and_quick_gelu_match_their_definitions(string backendName)
    {
        using IBackend backend = TestBackends.Create(backendName);
        float[] x = [.. KernelData.Floats(300, 3, scale: 8f), 0f, -0f, 30f, -30f, 1e-30f, -12f];
        foreach (ActivationFunction function in new[] { ActivationFunction.Gelu, ActivationFunction.QuickGelu })
        {
            float[] y = Run(backend, x.Length, 1, [(x, 1)], (a, o) =>
            {
                backend.Activate(a[0], function);
                backend.GatherRows(a[0], Enumerable.Range(0, x.Length).ToArray(), o);
            });
            for (int i = 0; i < x.Length; i++)
            {
                double v = x[i];
                double expected = function == ActivationFunction.Gelu
                    ? 0.5 * v * (1 + Erf.Of(v / Math.Sqrt(2)))
                    : v / (1 + Math.Exp(-1.702 * v));
                Assert.True(Math.Abs(expected - y[i]) <= 1e-6 * (1 + Math.Abs(expected)), $"{function}({v}) = {y[i]}, expected {expected}");
            }
        }
    }

    [Theory]
    [InlineData(0.0, 0.0)]
    [InlineData(0.5, 0.5204998778130465)]
    [InlineData(1.0, 0.8427007929497149)]
    [InlineData(2.0, 0.9953222650189527)]
    [InlineData(-1.5, -0.9661051464753108)]
    [InlineData(3.5, 0.9999992569016276)]
    public void Erf_matches_tabulated_values(double x, double expected) =>
        Assert.Equal(expected, Erf.Of(x), 1e-9);

    [Fact]
    public void Erfc_keeps_its_relative_accuracy_in_the_tail() =>
        Assert.Equal(1.5374597944280349e-12, Erf.Complement(5.0), 1.5374597944280349e-12 * 1e-6);

    [SkippableTheory]
    [MemberData(nameof(Backends))]
    public void Rope_table_rotates_each_row_by_its_own_angles(string backendName)
    {
        using IBackend backend = TestBackends.Create(backendName);
        const int Rows = 6, Heads = 3, KvHeads = 1, D = 8, Half = D / 2;
        var shape = new AttentionShape(Heads, KvHeads, D, 0);
        float[] q = KernelData.Floats(Rows * Heads * D, 1), k = KernelData.Floats(Rows * KvHeads * D, 2);
        float[] angles = KernelData.Floats(Rows * Half, 3, scale: 3f);
        float[] cos = [.. angles.Select(a => MathF.Cos(a))], sin = [.. angles.Select(a => MathF.Sin(a))];
        using DeviceBuffer qb = backend.Allocate(Rows, Heads * D), kb = backend.Allocate(Rows, KvHeads * D);
        backend.Write(q, qb.Rows(Rows));
        backend.Write(k, kb.Rows(Rows));
        backend.RopeTable(qb.Rows(Rows), kb.Rows(Rows), cos, sin, shape);
        var qOut = new float[q.Length];
        var kOut = new float[k.Length];
        backend.Download(qb.Rows(Rows), qOut);
        backend.Download(kb.Rows(Rows), kOut);
        foreach ((float[] input, float[] output, int heads) in new[] { (q, qOut, Heads), (k, kOut, KvHeads) })
        {
            for (int r = 0; r < Rows; r++)
            {
                for (int h = 0; h < heads; h++)
                {
                    for (int i = 0; i < Half; i++)
                    {
                        int a = (r * heads * D) + (h * D) + i, b = a + Half;
                        double c = cos[(r * Half) + i], s = sin[(r * Half) + i];
                        Assert.Equal((input[a] * c) - (input[b] * s), output[a], 1e-5);
                        Assert.Equal((input[b] * c) + (input[a] * s), output[b], 1e-5);
                    }
                }
            }
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends))]
    public void Segment_attention_attends_within_each_segment_only(string backendName)
    {
        using IBackend backend = TestBackends.Create(backendName);
        // The vision tower's heads (as many key-value heads as query heads), and the language model's groups (GQA).
        foreach ((int d, int heads, int kvHeads) in new[] { (16, 2, 2), (80, 2, 2), (16, 4, 2), (64, 6, 1) })
        {
            int[] starts = [0, 1, 17, 90, 94];    // segments of 1, 16, 73 and 4 rows
            int rows = starts[^1], width = heads * d, kvWidth = kvHeads * d;
            var shape = new AttentionShape(heads, kvHeads, d, 0);
            float[] q = KernelData.Floats(rows * width, d, scale: 2f), k = KernelData.Floats(rows * kvWidth, d + 1, scale: 2f), v = KernelData.Floats(rows * kvWidth, d + 2);
            float[] output = Run(backend, rows, width, [(q, width), (k, kvWidth), (v, kvWidth)], (a, o) => backend.SegmentAttention(a[0], a[1], a[2], starts, shape, o));
            for (int s = 0; s + 1 < starts.Length; s++)
            {
                for (int r = starts[s]; r < starts[s + 1]; r++)
                {
                    for (int h = 0; h < heads; h++)
                    {
                        int kvHead = h / (heads / kvHeads);
                        int length = starts[s + 1] - starts[s];
                        var scores = new double[length];
                        for (int j = 0; j < length; j++)
                        {
                            double dot = 0;
                            for (int i = 0; i < d; i++)
                            {
                                dot += (double)q[(r * width) + (h * d) + i] * k[((starts[s] + j) * kvWidth) + (kvHead * d) + i];
                            }

                            scores[j] = dot / Math.Sqrt(d);
                        }

                        double max = scores.Max();
                        double sum = scores.Sum(x => Math.Exp(x - max));
                        for (int i = 0; i < d; i++)
                        {
                            double expected = 0;
                            for (int j = 0; j < length; j++)
                            {
                                expected += Math.Exp(scores[j] - max) / sum * v[((starts[s] + j) * kvWidth) + (kvHead * d) + i];
                            }

                            Assert.True(Math.Abs(expected - output[(r * width) + (h * d) + i]) <= 1e-5,
                                $"head dim {d}, {heads}/{kvHeads} heads, row {r} (segment {s}), head {h}, element {i}: {output[(r * width) + (h * d) + i]}, expected {expected}");
                        }
                    }
                }
            }
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends))]
    public void Write_rows_fills_only_the_rows_named(string backendName)
    {
        using IBackend backend = TestBackends.Create(backendName);
        float[] start = Enumerable.Repeat(-1f, 5 * 3).ToArray();
        float[] y = Run(backend, 5, 3, [(start, 3)], (a, o) =>
        {
            backend.GatherRows(a[0], [0, 1, 2, 3, 4], o);
            backend.WriteRows([1, 2, 3, 4, 5, 6], o, 2);
        });
        Assert.Equal([-1, -1, -1, -1, -1, -1, 1, 2, 3, 4, 5, 6, -1, -1, -1], y);
    }
}
