using System.Runtime.InteropServices;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;

namespace QwenSharp.Tests.Kernels;

/// <summary>
/// Linear layers through <see cref="MatMul"/> (the matvec path for one token, panels and 4 × 4 tiles for
/// several) and the tile kernel itself, on every path and dtype, against exact double sums.
/// </summary>
public sealed class MatMulTests
{
    public static TheoryData<DType, KernelPath> DTypesAndPaths() => DotTests.DTypesAndPaths();

    public static TheoryData<KernelPath> Paths() => [.. KernelPaths.All];

    [Theory]
    [MemberData(nameof(DTypesAndPaths))]
    public void Rows_AnyTokensRowsAndWidth_MatchExactProduct(DType type, KernelPath path)
    {
        foreach (var (tokens, outFeatures, inFeatures) in new[] { (1, 37, 64), (2, 5, 3), (3, 17, 33), (4, 16, 16), (5, 33, 172), (9, 20, 70), (13, 64, 896) })
        {
            (byte[] weights, float[] exact) = KernelData.Store(KernelData.Floats(outFeatures * inFeatures, 1, 0.05f), type);
            float[] x = KernelData.Floats(tokens * inFeatures, 2);
            float[] bias = KernelData.Floats(outFeatures, 3);
            var y = new float[tokens * outFeatures];
            var panel = new float[MatMul.PanelRows * inFeatures];

            // Two chunks, split at a row that is not a multiple of the panel, as threads would split it.
            int split = outFeatures / 3;
            Run(type, path, weights, inFeatures, outFeatures, x, tokens, bias, y, 0, split, panel);
            Run(type, path, weights, inFeatures, outFeatures, x, tokens, bias, y, split, outFeatures, panel);

            for (int t = 0; t < tokens; t++)
            {
                for (int n = 0; n < outFeatures; n++)
                {
                    double expected = KernelData.DotExact(exact.AsSpan(n * inFeatures, inFeatures), x.AsSpan(t * inFeatures, inFeatures), out double magnitude) + bias[n];
                    float actual = y[(t * outFeatures) + n];
                    Assert.True(Math.Abs(actual - expected) <= (2e-6 * (magnitude + Math.Abs(bias[n]))) + 1e-9,
                        $"{type} {path} [{tokens}x{inFeatures}]·[{outFeatures}x{inFeatures}]ᵀ at ({t}, {n}): {actual} vs {expected}");
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void GemmTile_EveryDepth_MatchesExactProduct(KernelPath path)
    {
        foreach (int k in Enumerable.Range(0, 70).Concat([896, 4864]))
        {
            float[] x = KernelData.Floats(4 * (k + 3), k);
            float[] w = KernelData.Floats(4 * (k + 1), k + 1);
            var y = new float[4 * 6];
            GemmTile.Run(path, ref x[0], k + 3, ref w[0], k + 1, k, ref y[0], 6);

            for (int t = 0; t < 4; t++)
            {
                for (int n = 0; n < 4; n++)
                {
                    double expected = KernelData.DotExact(x.AsSpan(t * (k + 3), k), w.AsSpan(n * (k + 1), k), out double magnitude);
                    Assert.True(Math.Abs(y[(t * 6) + n] - expected) <= (2e-6 * magnitude) + 1e-9, $"{path} k={k} ({t}, {n}): {y[(t * 6) + n]} vs {expected}");
                }
            }
        }
    }

    private static void Run(DType type, KernelPath path, byte[] weights, int k, int n, float[] x, int tokens, float[] bias, float[] y,
        int start, int end, float[] panel)
    {
        int rowBytes = k * (type == DType.F32 ? 4 : 2);
        ReadOnlySpan<byte> rows = weights.AsSpan(start * rowBytes, (end - start) * rowBytes);
        switch (type)
        {
            case DType.BF16: MatMul.Rows<Bf16Load>(path, rows, k, n, x, tokens, bias, y, start, end, panel); break;
            case DType.F16: MatMul.Rows<F16Load>(path, rows, k, n, x, tokens, bias, y, start, end, panel); break;
            default: MatMul.Rows<F32Load>(path, rows, k, n, x, tokens, bias, y, start, end, panel); break;
        }
    }
}
