using QwenSharp.Cpu.Kernels;

namespace QwenSharp.Tests.Kernels;

/// <summary>Softmax, RMSNorm, RoPE and one attention head, each against a direct double-precision formula.</summary>
public sealed class SmallKernelTests
{
    [Fact]
    public void Softmax_LargeLogits_DoesNotOverflow()
    {
        float[] x = [1234f, 0f];
        SoftmaxKernel.InPlace(x);
        Assert.Equal([1f, 0f], x);

        float[] ties = [1000f, 1000f, -1000f];
        SoftmaxKernel.InPlace(ties);
        Assert.Equal([0.5f, 0.5f, 0f], ties);
    }

    [Fact]
    public void Softmax_RandomScores_MatchDoubleFormula()
    {
        float[] x = KernelData.Floats(300, 5, 20f);
        double max = x.Max();
        double sum = x.Sum(v => Math.Exp(v - max));
        double[] expected = [.. x.Select(v => Math.Exp(v - max) / sum)];
        SoftmaxKernel.InPlace(x);
        for (int i = 0; i < x.Length; i++)
        {
            Assert.Equal(expected[i], x[i], 1e-6);
        }
    }

    [Fact]
    public void RmsNorm_MatchesDoubleFormula()
    {
        float[] x = KernelData.Floats(896, 1, 3f), weight = KernelData.Floats(896, 2);
        var y = new float[896];
        RmsNormKernel.Row(x, weight, 1e-6f, y);

        double rms = Math.Sqrt((x.Sum(v => (double)v * v) / x.Length) + 1e-6);
        for (int i = 0; i < x.Length; i++)
        {
            Assert.Equal(x[i] / rms * weight[i], y[i], 1e-5);
        }
    }

    [Fact]
    public void Rope_RotatesElementIWithElementIPlusHalf()
    {
        const int headDim = 64, position = 12345;
        const double theta = 1_000_000;
        float[] row = KernelData.Floats(3 * headDim, 3);
        float[] original = [.. row];
        double[] inverse = QwenSharp.Backend.RopeAngles.InverseFrequencies(headDim, theta);
        var cos = new float[headDim / 2];
        var sin = new float[headDim / 2];
        QwenSharp.Backend.RopeAngles.Compute(position, inverse, cos, sin);
        RopeKernel.RotateHeads(row, headDim, cos, sin);

        for (int h = 0; h < 3; h++)
        {
            for (int i = 0; i < headDim / 2; i++)
            {
                // HF apply_rotary_pos_emb: q*cos + rotate_half(q)*sin, rotate_half(q) = cat(-q2, q1).
                double angle = position * Math.Pow(theta, -2.0 * i / headDim);
                double a = original[(h * headDim) + i], b = original[(h * headDim) + i + (headDim / 2)];
                Assert.Equal((a * Math.Cos(angle)) - (b * Math.Sin(angle)), row[(h * headDim) + i], 1e-5);
                Assert.Equal((b * Math.Cos(angle)) + (a * Math.Sin(angle)), row[(h * headDim) + i + (headDim / 2)], 1e-5);
            }
        }
    }

    public static TheoryData<KernelPath, int> PathsAndHeadSizes()
    {
        var data = new TheoryData<KernelPath, int>();
        foreach (KernelPath path in KernelPaths.All)
        {
            foreach (int d in new[] { 8, 64, 4, 24, 40, 128 })
            {
                data.Add(path, d);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(PathsAndHeadSizes))]
    public void AttentionGroup_EachHeadBitForBitAsAlone(KernelPath path, int d)
    {
        // One token's heads of a key-value head (a decode step's block): lengths inside one tile, across several with a
        // tail of 1-3 positions past a multiple of four, and one position.
        foreach (int length in new[] { 1, 37, 300 })
        {
            foreach (int heads in new[] { 1, 3, 7 })
            {
                int kvDim = 2 * d, offset = d;
                float[] queries = KernelData.Floats(heads * d, 4), keys = KernelData.Floats(length * kvDim, 5), values = KernelData.Floats(length * kvDim, 6);
                float scale = 1f / MathF.Sqrt(d);
                float[] outputs = [.. Enumerable.Repeat(float.NaN, heads * d)];
                AttentionKernel<F32Load>.Block(path, queries, heads * d, 1, Bytes(keys), Bytes(values), kvDim, offset, length, scale, heads, d, new float[heads * length], outputs);
                for (int h = 0; h < heads; h++)
                {
                    var alone = new float[d];
                    AttentionKernel<F32Load>.Head(path, queries.AsSpan(h * d, d), Bytes(keys), Bytes(values), kvDim, offset, length, scale, new float[length], alone);
                    for (int i = 0; i < d; i++)
                    {
                        Assert.True(BitConverter.SingleToInt32Bits(alone[i]) == BitConverter.SingleToInt32Bits(outputs[(h * d) + i]),
                            $"length {length}, head {h} of {heads}, element {i}: group {outputs[(h * d) + i]:R}, alone {alone[i]:R}");
                    }
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(PathsAndHeadSizes))]
    public void AttentionBlock_EachRowAndHeadBitForBitAsAlone(KernelPath path, int d)
    {
        // Rows of a prompt: row r sees firstLength + r positions, so the rows end in different tiles and at every
        // remainder of four; the row stride leaves other heads' floats (NaN) between the group's.
        foreach ((int firstLength, int rows) in new[] { (1, 5), (35, 8), (290, 3) })
        {
            const int heads = 3, otherHeads = 2;
            int kvDim = 2 * d, offset = d, rowStride = (heads + otherHeads) * d, length = firstLength + rows - 1;
            float[] queries = KernelData.Floats(rows * rowStride, 7), keys = KernelData.Floats(length * kvDim, 8), values = KernelData.Floats(length * kvDim, 9);
            float scale = 1f / MathF.Sqrt(d);
            float[] outputs = [.. Enumerable.Repeat(float.NaN, rows * rowStride)];
            AttentionKernel<F32Load>.Block(path, queries, rowStride, rows, Bytes(keys), Bytes(values), kvDim, offset, firstLength, scale, heads, d, new float[rows * heads * length], outputs);
            for (int r = 0; r < rows; r++)
            {
                for (int h = 0; h < heads + otherHeads; h++)
                {
                    var alone = new float[d];
                    AttentionKernel<F32Load>.Head(path, queries.AsSpan((r * rowStride) + (h * d), d), Bytes(keys), Bytes(values), kvDim, offset, firstLength + r, scale, new float[length], alone);
                    for (int i = 0; i < d; i++)
                    {
                        float got = outputs[(r * rowStride) + (h * d) + i];
                        if (h >= heads)
                        {
                            Assert.True(float.IsNaN(got), $"row {r}: head {h} is not the group's, but element {i} was written");
                            continue;
                        }

                        Assert.True(BitConverter.SingleToInt32Bits(alone[i]) == BitConverter.SingleToInt32Bits(got),
                            $"{firstLength} + {r} positions, head {h}, element {i}: block {got:R}, alone {alone[i]:R}");
                    }
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(PathsAndHeadSizes))]
    public void AttentionHead_MatchesDoubleFormula(KernelPath path, int d)
    {
        int kvDim = 2 * d, length = 37, offset = d;
        float[] q = KernelData.Floats(d, 1), keys = KernelData.Floats(length * kvDim, 2), values = KernelData.Floats(length * kvDim, 3);
        var output = new float[d];
        var scores = new float[length];
        float scale = 1f / MathF.Sqrt(d);
        AttentionKernel<F32Load>.Head(path, q, Bytes(keys), Bytes(values), kvDim, offset, length, scale, scores, output);

        double[] s = [.. Enumerable.Range(0, length).Select(j => Enumerable.Range(0, d).Sum(i => (double)q[i] * keys[(j * kvDim) + offset + i]) * scale)];
        double max = s.Max(), sum = s.Sum(v => Math.Exp(v - max));
        for (int i = 0; i < d; i++)
        {
            double expected = Enumerable.Range(0, length).Sum(j => Math.Exp(s[j] - max) / sum * values[(j * kvDim) + offset + i]);
            Assert.Equal(expected, output[i], 1e-5);
        }
    }

    private static ReadOnlySpan<byte> Bytes(float[] values) => System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan());
}
