using QwenSharp.Cpu;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;
using QwenSharp.Numerics;
using StoredTensor = QwenSharp.Tests.Backend.BackendConformanceTests.StoredTensor;

namespace QwenSharp.Tests.Kernels;

/// <summary>
/// Q4_0 matrices repacked at load (<see cref="Q4_0Panels"/>): their products on every path against the same rows packed per
/// step (<see cref="QuantPanel.Pack"/>, tested against the format's dequantization), bit for bit, and against the dequantized
/// weights and Q8_0 activations dotted in double; and which matrices the CPU repacks.
/// </summary>
public sealed class Q4_0PanelsTests
{
    public static TheoryData<KernelPath, int> PathsAndTokens()
    {
        var data = new TheoryData<KernelPath, int>();
        foreach (KernelPath path in KernelPaths.All)
        {
            // One token (decode), a few, and on the 512-bit path eights, fours and ones together.
            foreach (int tokens in new[] { 1, 3, 4, 8, 13, 16 })
            {
                data.Add(path, tokens);
            }
        }

        return data;
    }

    /// <summary>
    /// A panel's rows of random codes with random small scales, and the scales' edge cases among them: zero, the smallest and
    /// largest f16 subnormals, negative ones, and the largest f16.
    /// </summary>
    private static byte[] Rows(int cols, int seed)
    {
        var random = new Random(seed);
        var rows = new byte[DTypes.ByteLength(DType.Q4_0, (long)QuantPanel.Rows * cols)];
        random.NextBytes(rows);
        ushort[] edges = [0x0000, 0x8000, 0x0001, 0x03FF, 0x8001, 0x7BFF, 0xFBFF];
        for (int b = 0; b < rows.Length / 18; b++)
        {
            ushort scale = b % 5 == 0 ? edges[(b / 5) % edges.Length] : HalfBits.FromSingle((float)((random.NextDouble() - 0.3) * 0.01));
            BitConverter.TryWriteBytes(rows.AsSpan(b * 18), scale);
        }

        return rows;
    }

    private static byte[] RepackedPanel(byte[] rows, int cols)
    {
        var panel = new byte[Q4_0Panels.PanelBytes(cols)];
        Q4_0Panels.Repack(rows, cols, panel);
        return panel;
    }

    [Theory]
    [MemberData(nameof(PathsAndTokens))]
    public void Products_equal_the_packed_panels_bit_for_bit_and_the_definition(KernelPath path, int tokens)
    {
        const int cols = 640, stride = 19;
        byte[] rows = Rows(cols, 3 + tokens);
        byte[] panel = RepackedPanel(rows, cols);
        float[] x = KernelData.Floats(tokens * cols, 11 + tokens, scale: 2f);
        x.AsSpan(0, 32).Clear();    // an all-zero activation block: scale 0
        var q8 = new Q8Activations();
        q8.Quantize(x, tokens, cols, path);

        float[] Multiplied()
        {
            var y = new float[tokens * stride];
            y.AsSpan().Fill(float.NaN);
            QuantPanel.MultiplyRepacked(path, panel, cols, q8, y, stride);
            return y;
        }

        float[] actual = Multiplied();
        var packed = new float[QuantPanel.PanelFloats(cols)];
        QuantPanel.Pack(path, DType.Q4_0, rows, QuantPanel.Rows, cols, packed);
        var expected = new float[tokens * stride];
        QuantPanel.Multiply(path, DType.Q4_0, packed, QuantPanel.Rows, cols, q8, expected, stride);
        float[]? pairs = null;
        if (path == KernelPath.Vector512)
        {
            // The 512-bit path's other integer product (vpmaddubsw pairs, as on AMD Zen 4, with the high nibbles shifted down).
            using (ByteDots.WithoutVnni())
            {
                pairs = Multiplied();
            }
        }

        int rowBytes = (int)DTypes.ByteLength(DType.Q4_0, cols);
        var w = new float[cols];
        for (int r = 0; r < QuantPanel.Rows; r++)
        {
            QuantizedRows.Dequantize(KernelPath.Scalar, DType.Q4_0, rows.AsSpan(r * rowBytes, rowBytes), w);
            for (int t = 0; t < tokens; t++)
            {
                float y = actual[(t * stride) + r];
                Assert.True(y.Equals(expected[(t * stride) + r]), $"{path} row {r} token {t}: {y}, packed per step {expected[(t * stride) + r]}");
                Assert.True(pairs is null || pairs[(t * stride) + r].Equals(y), $"{path} without VNNI, row {r} token {t}: {pairs?[(t * stride) + r]}, with it {y}");
                double exact = 0, magnitude = 0;
                for (int k = 0; k < cols; k++)
                {
                    double product = w[k] * (double)q8.Row(t).Scales[k / 32] * q8.Row(t).Codes[k];
                    exact += product;
                    magnitude += Math.Abs(product);
                }

                Assert.True(Math.Abs(y - exact) <= 1e-5 * magnitude, $"{path} row {r} token {t}: {y}, expected {exact}");
                Assert.True(Q4_0Panels.DotRow(panel, cols, r, q8.Row(t).Codes, q8.Row(t).Scales).Equals(y), $"{path} row {r} token {t}: the scalar reference differs");
            }

            for (int t = 0; t < tokens; t++)
            {
                for (int i = QuantPanel.Rows; i < stride; i++)
                {
                    Assert.True(float.IsNaN(actual[(t * stride) + i]), $"{path}: wrote past the panel's rows at token {t}, column {i}");
                }
            }
        }
    }

    [Fact]
    public void The_cpu_repacks_whole_panels_only()
    {
        using var backend = new CpuBackend(new CpuBackendOptions { Threads = 1 });
        using var off = new CpuBackend(new CpuBackendOptions { Threads = 1, RepackQ4_0 = false });
        bool Repacks(CpuBackend b, int outputs, int inputs)
        {
            using var w = new StoredTensor("w", KernelData.Floats(outputs * inputs, outputs + inputs), DType.Q4_0, [outputs, inputs]);
            using var weight = (CpuWeight)b.Upload(w.View);
            return weight.Repacked;
        }

        Assert.True(Repacks(backend, 32, 128));
        Assert.False(Repacks(off, 32, 128), "repacked with RepackQ4_0 off");
        Assert.False(Repacks(backend, 40, 128), "40 rows are not whole panels of 16");
        Assert.False(Repacks(backend, 32, 96), "96 columns are not whole pairs of blocks");
    }
}
