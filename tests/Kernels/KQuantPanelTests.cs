using System.Runtime.InteropServices;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;

namespace QwenSharp.Tests.Kernels;

/// <summary>
/// The k-quants' integer prefill panels: packing against the format's dequantization (KQuantBlocks, tested bit for bit against
/// llama.cpp), every path's packing and products against the scalar reference, and the products against the dequantized
/// weights and Q8_K activations dotted in double.
/// </summary>
public sealed class KQuantPanelTests
{
    public static TheoryData<KernelPath, DType> PathsAndTypes() => KQuantKernelTests.PathsAndTypes();

    private static float[] Packed(KernelPath path, DType type, byte[] matrix, int count, int cols)
    {
        var panel = new float[KQuantPanel.PanelFloats(cols)];
        panel.AsSpan().Fill(float.NaN);
        KQuantPanel.Pack(path, type, matrix, count, cols, panel);
        return panel;
    }

    [Theory]
    [MemberData(nameof(PathsAndTypes))]
    public void Packed_codes_scales_and_mins_give_the_format_s_weights(KernelPath path, DType type)
    {
        const int cols = 512, count = 11;
        byte[] matrix = KQuantKernelTests.RandomRow(type, count * cols / 256, 5 + (int)type);
        float[] panel = Packed(path, type, matrix, count, cols);
        ReadOnlySpan<byte> codes = MemoryMarshal.AsBytes(panel.AsSpan(0, cols * KQuantPanel.Rows / 4));
        int groupValues = KQuantPanel.GroupValues(type), groups = cols / groupValues;
        ReadOnlySpan<float> scales = panel.AsSpan(cols * KQuantPanel.Rows / 4, groups * KQuantPanel.Rows);
        ReadOnlySpan<float> mins = panel.AsSpan((cols * KQuantPanel.Rows / 4) + (groups * KQuantPanel.Rows), groups * KQuantPanel.Rows);
        int rowBytes = (int)DTypes.ByteLength(type, cols);
        var expected = new float[cols];
        for (int r = 0; r < KQuantPanel.Rows; r++)
        {
            if (r < count)
            {
                QuantizedRows.Dequantize(KernelPath.Scalar, type, matrix.AsSpan(r * rowBytes, rowBytes), expected);
            }

            for (int k = 0; k < cols; k++)
            {
                byte code = codes[((((k / 4) * KQuantPanel.Rows) + r) * 4) + (k % 4)];
                float scale = scales[((k / groupValues) * KQuantPanel.Rows) + r], min = mins[((k / groupValues) * KQuantPanel.Rows) + r];
                if (r >= count)
                {
                    Assert.True(code == 0 && scale == 0 && min == 0, $"{type} {path}: row {r} past the {count} rows is not zero at {k}");
                    continue;
                }

                // Q4_K and Q5_K dequantize as d·scale × q − dmin·min in f32 (not fused); Q6_K as d·scale × (q − 32), which the
                // packed d·scale × q − 32·d·scale equals when worked out exactly.
                float weight = type == DType.Q6_K ? (float)(((double)scale * code) - min) : (scale * code) - min;
                Assert.True(weight.Equals(expected[k]), $"{type} {path} row {r} value {k}: code {code}, scale {scale}, min {min} give {weight}, expected {expected[k]}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(PathsAndTypes))]
    public void Products_equal_the_reference_bit_for_bit_and_the_definition(KernelPath path, DType type)
    {
        // 13 rows (a partial panel), 9 tokens (two tiles of four and one alone), 3 super-blocks.
        const int cols = 768, count = 13, tokens = 9, stride = 20;
        byte[] matrix = KQuantKernelTests.RandomRow(type, count * cols / 256, 40 + (int)type);
        float[] x = KernelData.Floats(tokens * cols, 77, scale: 2f);
        x.AsSpan(3 * cols, 256).Clear();    // an all-zero block: scale 0
        var q8 = new Q8KActivations();
        q8.Quantize(x, tokens, cols);

        float[] Multiply(KernelPath p)
        {
            var y = new float[tokens * stride];
            y.AsSpan().Fill(float.NaN);
            KQuantPanel.Multiply(p, type, Packed(p, type, matrix, count, cols), count, cols, q8, y, stride);
            return y;
        }

        float[] actual = Multiply(path), reference = Multiply(KernelPath.Scalar);
        int rowBytes = (int)DTypes.ByteLength(type, cols);
        var w = new float[cols];
        for (int r = 0; r < count; r++)
        {
            QuantizedRows.Dequantize(KernelPath.Scalar, type, matrix.AsSpan(r * rowBytes, rowBytes), w);
            for (int t = 0; t < tokens; t++)
            {
                Q8KRow a = q8.Row(t);
                double expected = 0, magnitude = 0;
                for (int k = 0; k < cols; k++)
                {
                    double product = w[k] * (double)a.Scales[k / 256] * a.Codes[k];
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
