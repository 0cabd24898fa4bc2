using System.Runtime.InteropServices;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;

namespace QwenSharp.Tests.Kernels;

/// <summary>
/// Q4_0's, Q8_0's and the k-quants' integer prefill panels: packing against the formats' dequantization (LegacyQuantBlocks and
/// KQuantBlocks, tested bit for bit against llama.cpp), every path's packing and products against the scalar reference, and the
/// products against the dequantized weights and Q8_0 or Q8_K activations dotted in double.
/// </summary>
public sealed class QuantPanelTests
{
    public static TheoryData<KernelPath, DType> PathsAndTypes()
    {
        // The k-quants' integer panels (Q3_K's in Q6_K's form; Q2_K has none, IQ4_XS packs into Q8_0's: Iq4XsPanelsTests).
        var data = new TheoryData<KernelPath, DType>();
        foreach (object[] row in KQuantKernelTests.PathsAndTypes().Where(row => (DType)row[1] is not (DType.IQ4_XS or DType.Q2_K)))
        {
            data.Add((KernelPath)row[0], (DType)row[1]);
        }

        foreach (KernelPath path in KernelPaths.All)
        {
            data.Add(path, DType.Q4_0);
            data.Add(path, DType.Q8_0);
        }

        return data;
    }

    /// <summary><see cref="PathsAndTypes"/> with a partial panel's rows and a whole panel's.</summary>
    public static TheoryData<KernelPath, DType, int> PathsTypesAndRows(int partial)
    {
        var data = new TheoryData<KernelPath, DType, int>();
        foreach (object[] row in PathsAndTypes())
        {
            data.Add((KernelPath)row[0], (DType)row[1], partial);
            data.Add((KernelPath)row[0], (DType)row[1], QuantPanel.Rows);
        }

        return data;
    }

    /// <summary>Random blocks of <paramref name="type"/>, <paramref name="values"/> values in all: codes random, scales small.</summary>
    private static byte[] RandomMatrix(DType type, int values, int seed)
    {
        if (type is not (DType.Q4_0 or DType.Q8_0))
        {
            return KQuantKernelTests.RandomRow(type, values / 256, seed);
        }

        // Every byte random (Q8_0's codes -128..127, the extremes included); then each block's f16 scale.
        var random = new Random(seed);
        var matrix = new byte[DTypes.ByteLength(type, values)];
        random.NextBytes(matrix);
        for (int b = 0; b < values / 32; b++)
        {
            BitConverter.TryWriteBytes(matrix.AsSpan(b * DTypes.BlockBytes(type)), QwenSharp.Numerics.HalfBits.FromSingle((float)((random.NextDouble() - 0.3) * 0.01)));
        }

        return matrix;
    }

    private static float[] Packed(KernelPath path, DType type, byte[] matrix, int count, int cols)
    {
        var panel = new float[QuantPanel.PanelFloats(cols)];
        panel.AsSpan().Fill(float.NaN);
        QuantPanel.Pack(path, type, matrix, count, cols, panel);
        return panel;
    }

    [Theory]
    [MemberData(nameof(PathsTypesAndRows), 11)]
    public void Packed_codes_scales_and_mins_give_the_format_s_weights(KernelPath path, DType type, int count)
    {
        const int cols = 512;
        byte[] matrix = RandomMatrix(type, count * cols, 5 + (int)type);
        float[] panel = Packed(path, type, matrix, count, cols);
        ReadOnlySpan<byte> codes = MemoryMarshal.AsBytes(panel.AsSpan(0, cols * QuantPanel.Rows / 4));
        int groupValues = QuantPanel.GroupValues(type), groups = cols / groupValues;
        ReadOnlySpan<float> scales = panel.AsSpan(cols * QuantPanel.Rows / 4, groups * QuantPanel.Rows);
        ReadOnlySpan<float> mins = panel.AsSpan((cols * QuantPanel.Rows / 4) + (groups * QuantPanel.Rows), groups * QuantPanel.Rows);
        int rowBytes = (int)DTypes.ByteLength(type, cols);
        var expected = new float[cols];
        for (int r = 0; r < QuantPanel.Rows; r++)
        {
            if (r < count)
            {
                QuantizedRows.Dequantize(KernelPath.Scalar, type, matrix.AsSpan(r * rowBytes, rowBytes), expected);
            }

            for (int k = 0; k < cols; k++)
            {
                byte code = codes[((((k / 4) * QuantPanel.Rows) + r) * 4) + (k % 4)];
                // Q6_K's panels keep no mins (its offset of 32 goes through the activations' sums): its min is 32 × the scale.
                // So do Q3_K's, in Q6_K's form (codes + 32).
                float scale = scales[((k / groupValues) * QuantPanel.Rows) + r];
                float min = type is DType.Q6_K or DType.Q3_K ? 32 * scale : mins[((k / groupValues) * QuantPanel.Rows) + r];
                if (r >= count)
                {
                    Assert.True(code == 0 && scale == 0 && min == 0, $"{type} {path}: row {r} past the {count} rows is not zero at {k}");
                    continue;
                }

                // Q4_K and Q5_K dequantize as d·scale × q − dmin·min in f32 (not fused); Q6_K as d·scale × (q − 32) and Q4_0 as
                // d × (q − 8) and Q8_0 as d × q, which the packed d·scale × q − 32·d·scale, d × q − 8·d and d × (q + 128) − 128·d
                // equal when worked out exactly.
                float weight = type is DType.Q6_K or DType.Q3_K or DType.Q4_0 or DType.Q8_0 ? (float)(((double)scale * code) - min) : (scale * code) - min;
                Assert.True(weight.Equals(expected[k]), $"{type} {path} row {r} value {k}: code {code}, scale {scale}, min {min} give {weight}, expected {expected[k]}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(PathsTypesAndRows), 13)]
    public void Products_equal_the_reference_bit_for_bit_and_the_definition(KernelPath path, DType type, int count)
    {
        // 13 rows (a partial panel) or 16, 13 tokens (on the 512-bit path one tile of eight, one of four and one alone), 3 super-blocks.
        const int cols = 768, tokens = 13, stride = 20;
        byte[] matrix = RandomMatrix(type, count * cols, 40 + (int)type);
        float[] x = KernelData.Floats(tokens * cols, 77, scale: 2f);
        x.AsSpan(3 * cols, 256).Clear();    // an all-zero block: scale 0
        var q8k = new Q8KActivations();
        q8k.Quantize(x, tokens, cols);
        var q8 = new Q8Activations();
        q8.Quantize(x, tokens, cols, path);
        (sbyte Code, float Scale) Activation(int t, int k) => type is DType.Q4_0 or DType.Q8_0
            ? (q8.Row(t).Codes[k], q8.Row(t).Scales[k / 32])
            : (q8k.Row(t).Codes[k], q8k.Row(t).Scales[k / 256]);

        float[] Multiply(KernelPath p)
        {
            var y = new float[tokens * stride];
            y.AsSpan().Fill(float.NaN);
            float[] panel = Packed(p, type, matrix, count, cols);
            if (type is DType.Q4_0 or DType.Q8_0)
            {
                QuantPanel.Multiply(p, type, panel, count, cols, q8, y, stride);
            }
            else
            {
                QuantPanel.Multiply(p, type, panel, count, cols, q8k, y, stride);
            }

            return y;
        }

        float[] actual = Multiply(path), reference = Multiply(KernelPath.Scalar);
        if (path == KernelPath.Vector512)
        {
            // The 512-bit path's other integer product (vpmaddubsw pairs, as on AMD Zen 4), whichever this CPU has.
            float[] pairs;
            using (ByteDots.WithoutVnni())
            {
                pairs = Multiply(path);
            }

            for (int i = 0; i < pairs.Length; i++)
            {
                Assert.True(pairs[i].Equals(actual[i]), $"{type} {path} without VNNI, result {i}: {pairs[i]}, with it {actual[i]}");
            }
        }

        int rowBytes = (int)DTypes.ByteLength(type, cols);
        var w = new float[cols];
        for (int r = 0; r < count; r++)
        {
            QuantizedRows.Dequantize(KernelPath.Scalar, type, matrix.AsSpan(r * rowBytes, rowBytes), w);
            for (int t = 0; t < tokens; t++)
            {
                double expected = 0, magnitude = 0;
                for (int k = 0; k < cols; k++)
                {
                    (sbyte code, float scale) = Activation(t, k);
                    double product = w[k] * (double)scale * code;
                    expected += product;
                    magnitude += Math.Abs(product);
                }

                float y = actual[(t * stride) + r];
                Assert.True(y.Equals(reference[(t * stride) + r]), $"{type} {path} row {r} token {t}: {y}, the reference {reference[(t * stride) + r]}");
                Assert.True(Math.Abs(y - expected) <= 1e-5 * magnitude, $"{type} {path} row {r} token {t}: {y}, expected {expected}");
            }

            for (int t = 0; t < tokens; t++)
            {
                for (int i = count; i < stride; i++)
                {
                    Assert.True(float.IsNaN(actual[(t * stride) + i]), $"{type} {path}: wrote past the {count} rows at token {t}, column {i}");
                }
            }
        }
    }
}
