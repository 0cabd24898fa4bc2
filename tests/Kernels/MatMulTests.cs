using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;

namespace QwenSharp.Tests.Kernels;

/// <summary>
/// Linear layers through <see cref="MatMul"/> (the matvec path for one token, row dots for a few, f32 panels and
/// outer-product tiles for many) and the tile kernels themselves, on every path and dtype, against exact double sums;
/// the vector tiles also bit for bit against their scalar reference.
/// </summary>
public sealed class MatMulTests
{
    public static TheoryData<DType, KernelPath> DTypesAndPaths() => DotTests.DTypesAndPaths();

    public static TheoryData<KernelPath> Paths() => [.. KernelPaths.All];

    [Theory]
    [InlineData(KernelPath.Vector512)]
    [InlineData(KernelPath.Vector256)]
    public void Bf16Decode_InRowsApart_GivesEachRowsOwnSumBitForBit(KernelPath path)
    {
        // One token's BF16 rows in fours a quarter of the range apart (RowsApart, 512-bit path): the same sums as row by row,
        // for row counts with 0 to 3 rows left over, a range that does not start at row 0, widths with a vector tail and a
        // scalar tail, with and without bias; and rows narrower than RowsApart.FloatMinimumWidth, which go in pairs half the
        // range apart (0 or 1 left over). On the 256-bit path every row goes in pairs.
        int wide = RowsApart.FloatMinimumWidth;
        foreach (var (rows, cols, start) in new[] { (1, wide, 0), (2, wide + 16, 0), (7, wide + 35, 0), (36, wide + 5, 0), (37, wide + 1003, 3), (64, 4864, 11), (10, wide + 80, 0),
            (9, 896, 0), (1, 896, 0), (2, 96, 0), (12, 900, 5), (13, 35, 0) })
        {
            (byte[] weights, _) = KernelData.Store(KernelData.Floats(rows * cols, 4, 0.05f), DType.BF16);
            float[] x = KernelData.Floats(cols, 5);
            float[] bias = KernelData.Floats(rows, 6);
            ReadOnlySpan<byte> range = weights.AsSpan((start * cols * 2)..);
            foreach (bool withBias in new[] { false, true })
            {
                var apart = new float[rows];
                var alone = new float[rows];
                apart.AsSpan().Fill(float.NaN);
                ReadOnlySpan<float> b = withBias ? bias : default;
                using (RowsApart.Assume(true))
                {
                    MatMul.Rows<Bf16Load>(path, range, cols, rows, x, default, 1, b, apart, start, rows, []);
                }

                using (RowsApart.Assume(false))
                {
                    MatMul.Rows<Bf16Load>(path, range, cols, rows, x, default, 1, b, alone, start, rows, []);
                }

                for (int r = start; r < rows; r++)
                {
                    float expected = Dot<Bf16Load>.Run(path, weights.AsSpan(r * cols * 2, cols * 2), x) + (withBias ? bias[r] : 0f);
                    Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(apart[r]), $"{path}, {rows} x {cols} from {start}, row {r}, bias {withBias}: rows apart {apart[r]}, alone {expected}");
                    Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(alone[r]), $"{path}, {rows} x {cols} from {start}, row {r}, bias {withBias}: row by row {alone[r]}, expected {expected}");
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(DTypesAndPaths))]
    public void Rows_AnyTokensRowsAndWidth_MatchExactProduct(DType type, KernelPath path)
    {
        foreach (var (tokens, outFeatures, inFeatures) in new[] { (1, 37, 64), (2, 5, 3), (3, 17, 33), (4, 16, 16), (5, 33, 172), (9, 20, 70), (13, 64, 896), (8, 3, 5), (17, 35, 258), (40, 16, 33) })
        {
            (byte[] weights, float[] exact) = KernelData.Store(KernelData.Floats(outFeatures * inFeatures, 1, 0.05f), type);
            float[] x = KernelData.Floats(tokens * inFeatures, 2);
            float[] bias = KernelData.Floats(outFeatures, 3);
            var y = new float[tokens * outFeatures];
            var panel = new float[MatMul.PanelScratchFloats(inFeatures)];
            panel.AsSpan().Fill(float.NaN);

            // The blocks poisoned first: a padding lane or column left unwritten would turn its sums to NaN.
            var blocks = new float[TokenBlocks.Count(path, tokens) * TokenBlocks.BlockFloats(path, inFeatures)];
            blocks.AsSpan().Fill(float.NaN);
            TokenBlocks.ClearPadding(path, inFeatures, tokens, blocks);
            TokenBlocks.Write(path, x, inFeatures, 0, tokens / 2, blocks);
            TokenBlocks.Write(path, x, inFeatures, tokens / 2, tokens, blocks);

            // Two chunks, split at a row that is not a multiple of the panel, as threads would split it.
            int split = outFeatures / 3;
            Run(type, path, weights, inFeatures, outFeatures, x, blocks, tokens, bias, y, 0, split, panel);
            Run(type, path, weights, inFeatures, outFeatures, x, blocks, tokens, bias, y, split, outFeatures, panel);

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

    [Theory]
    [MemberData(nameof(Paths))]
    public void OuterProductTile_EveryDepthAndBlockCount_MatchesReferenceBitForBitAndExactProduct(KernelPath path)
    {
        int lanes = TokenBlocks.Lanes(path), rows = OuterProductTile.Rows, stride = OuterProductTile.Tokens;
        foreach (int k in Enumerable.Range(0, 40).Concat([255, 256, 257, 896, 4864]))
        {
            for (int blocks = 1; blocks <= OuterProductTile.Blocks(path); blocks++)
            {
                int tokens = blocks * lanes, quads = F32Panel.ColumnQuads(k), blockFloats = TokenBlocks.BlockFloats(path, k);
                float[] w = KernelData.Floats(rows * k, k + 1);
                float[] x = KernelData.Floats(tokens * k, k + 2);
                var panel = new float[F32Panel.Floats(k)];
                F32Panel.Fill<F32Load>(KernelPath.Scalar, MemoryMarshal.AsBytes(w.AsSpan()), k * 4, rows, k, panel);
                var tokenBlocks = new float[blocks * blockFloats];
                TokenBlocks.Write(path, x, k, 0, tokens, tokenBlocks);
                var sums = new float[rows * stride];
                var reference = new float[rows * stride];
                sums.AsSpan().Fill(float.NaN);
                OuterProductTile.Run(path, panel, tokenBlocks, blocks, quads, sums);
                for (int b = 0; b < blocks; b++)
                {
                    OuterProductTile.Reference(ref MemoryMarshal.GetArrayDataReference(panel), ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(tokenBlocks), b * blockFloats), quads, lanes, ref reference[b * lanes]);
                }

                for (int n = 0; n < rows; n++)
                {
                    for (int t = 0; t < stride; t++)
                    {
                        float actual = sums[(n * stride) + t];
                        if (t >= tokens)
                        {
                            Assert.True(float.IsNaN(actual), $"{path} k={k} {blocks} blocks: row {n}'s sum for token {t}, past the tile's tokens, was written");
                            continue;
                        }

                        Assert.Equal(BitConverter.SingleToInt32Bits(reference[(n * stride) + t]), BitConverter.SingleToInt32Bits(actual));
                        double expected = KernelData.DotExact(w.AsSpan(n * k, k), x.AsSpan(t * k, k), out double magnitude);
                        Assert.True(Math.Abs(actual - expected) <= (2e-6 * magnitude) + 1e-9, $"{path} k={k} {blocks} blocks ({t}, {n}): {actual} vs {expected}");
                    }
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(DTypesAndPaths))]
    public void F32Panel_AnyRowsAndWidth_PlacesEveryValueAndZeroPadding(DType type, KernelPath path)
    {
        foreach (var (count, k) in new[] { (16, 64), (1, 3), (5, 17), (16, 33), (9, 896) })
        {
            (byte[] weights, float[] exact) = KernelData.Store(KernelData.Floats(count * k, count + k, 0.05f), type);
            var panel = new float[F32Panel.Floats(k)];
            panel.AsSpan().Fill(float.NaN);
            int rowBytes = weights.Length / count;
            switch (type)
            {
                case DType.BF16: F32Panel.Fill<Bf16Load>(path, weights, rowBytes, count, k, panel); break;
                case DType.F16: F32Panel.Fill<F16Load>(path, weights, rowBytes, count, k, panel); break;
                default: F32Panel.Fill<F32Load>(path, weights, rowBytes, count, k, panel); break;
            }

            for (int q = 0; q < F32Panel.ColumnQuads(k); q++)
            {
                for (int n = 0; n < F32Panel.Rows; n++)
                {
                    for (int j = 0; j < 4; j++)
                    {
                        int column = (4 * q) + j;
                        float expected = n < count && column < k ? exact[(n * k) + column] : 0f;
                        Assert.Equal(expected, panel[(q * 4 * F32Panel.Rows) + (n * 4) + j]);
                    }
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void TokenBlocks_AnySplit_HoldEveryActivationAndZeroPadding(KernelPath path)
    {
        int lanes = TokenBlocks.Lanes(path);
        foreach (var (tokens, columns, split) in new[] { (16, 16, 16), (32, 896, 16), (37, 33, 32), (37, 64, 5), (8, 3, 8), (48, 4864, 16), (16, 100, 16) })
        {
            float[] x = KernelData.Floats(tokens * columns, tokens + columns);
            var blocks = new float[TokenBlocks.Count(path, tokens) * TokenBlocks.BlockFloats(path, columns)];
            blocks.AsSpan().Fill(float.NaN);
            TokenBlocks.ClearPadding(path, columns, tokens, blocks);
            TokenBlocks.Write(path, x, columns, 0, split, blocks);
            TokenBlocks.Write(path, x, columns, split, tokens, blocks);

            int padded = F32Panel.ColumnQuads(columns) * 4;
            for (int t = 0; t < TokenBlocks.Count(path, tokens) * lanes; t++)
            {
                for (int i = 0; i < padded; i++)
                {
                    float expected = t < tokens && i < columns ? x[(t * columns) + i] : 0f;
                    Assert.Equal(expected, blocks[(t / lanes * TokenBlocks.BlockFloats(path, columns)) + (i * lanes) + (t % lanes)]);
                }
            }
        }
    }

    private static void Run(DType type, KernelPath path, byte[] weights, int k, int n, float[] x, float[] blocks, int tokens, float[] bias, float[] y,
        int start, int end, float[] panel)
    {
        int rowBytes = k * (type == DType.F32 ? 4 : 2);
        ReadOnlySpan<byte> rows = weights.AsSpan(start * rowBytes, (end - start) * rowBytes);
        switch (type)
        {
            case DType.BF16: MatMul.Rows<Bf16Load>(path, rows, k, n, x, blocks, tokens, bias, y, start, end, panel); break;
            case DType.F16: MatMul.Rows<F16Load>(path, rows, k, n, x, blocks, tokens, bias, y, start, end, panel); break;
            default: MatMul.Rows<F32Load>(path, rows, k, n, x, blocks, tokens, bias, y, start, end, panel); break;
        }
    }
}
