using System.Runtime.InteropServices;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;
using QwenSharp.Numerics;

namespace QwenSharp.Tests.Kernels;

/// <summary>
/// IQ4_XS rows packed into Q8_0's panels at a prefill (<see cref="Q8_0Panels.PackIq4Xs"/>, <see cref="MatMul.Iq4XsPanels"/>):
/// every value as the format's dequantization gives it (Iq4XsBlocks: tested bit for bit against llama.cpp in
/// GgmlDequantizeTests), and the products against the Q8_0 activations dotted in double.
/// </summary>
public sealed class Iq4XsPanelsTests
{
    [Theory]
    [InlineData(16)]
    [InlineData(5)]
    public void Packed_panel_holds_every_value_as_stored_and_zero_past_the_rows(int count)
    {
        const int cols = 512;
        byte[] rows = KQuantKernelTests.RandomRow(DType.IQ4_XS, count * cols / 256, 31 + count);
        byte[] panel = new byte[Q8_0Panels.PanelBytes(cols)];
        panel.AsSpan().Fill(0x5A);    // what an unwritten byte would read as

        Q8_0Panels.PackIq4Xs(rows, count, cols, panel);

        ReadOnlySpan<float> scales = MemoryMarshal.Cast<byte, float>(panel.AsSpan(Q8_0Panels.CodeBytes(cols)));
        var expected = new float[cols];
        for (int r = 0; r < QuantPanel.Rows; r++)
        {
            if (r < count)
            {
                Iq4XsBlocks.Dequantize(rows.AsSpan(r * cols / 256 * Iq4XsBlocks.BlockBytes, cols / 256 * Iq4XsBlocks.BlockBytes), expected);
            }

            for (int c = 0; c < cols; c++)
            {
                int j = c / 32, quad = (j * 8) + (c % 32 / 4);
                int code = panel[(((quad * QuantPanel.Rows) + r) * 4) + (c % 4)] - 128;
                float scale = scales[(j * QuantPanel.Rows) + r];
                if (r < count)
                {
                    Assert.True(BitConverter.SingleToInt32Bits(expected[c]) == BitConverter.SingleToInt32Bits(code * scale), $"row {r} value {c}: {code} × {scale}, stored {expected[c]}");
                }
                else
                {
                    Assert.True(code == -128 && scale == 0, $"row {r} past the {count} packed: code {code}, scale {scale}");
                }
            }
        }
    }

    public static TheoryData<KernelPath> Paths() => [.. KernelPaths.All];

    [Theory]
    [MemberData(nameof(Paths))]
    public void Products_of_a_whole_and_a_partial_panel_equal_the_definition_and_write_only_their_rows(KernelPath path)
    {
        // 21 rows (a whole panel and five), 9 tokens (more than a decode step's), 2 super-blocks; results 24 apart, so that
        // rows 21-23 of each token show a write past the rows.
        const int rows = 21, cols = 512, tokens = 9, stride = 24;
        byte[] matrix = KQuantKernelTests.RandomRow(DType.IQ4_XS, rows * cols / 256, 5);
        float[] x = KernelData.Floats(tokens * cols, 11, scale: 2f);
        x.AsSpan(2 * cols, 32).Clear();    // an all-zero block: scale 0
        var q8 = new Q8Activations();
        q8.Prepare(tokens, cols, QuantPanel.PanelTokens(path, tokens));
        q8.QuantizeRows(x, 0, tokens, path);
        float[] bias = KernelData.Floats(rows, 3, scale: 1f);
        var y = new float[tokens * stride];
        y.AsSpan().Fill(float.NaN);
        float[] scratch = new float[MatMul.PanelScratchFloats(cols)];

        MatMul.Iq4XsPanels(path, matrix, cols, stride, q8, tokens, bias, y, 0, rows, scratch);

        var w = new float[cols];
        int rowBytes = cols / 256 * Iq4XsBlocks.BlockBytes;
        for (int r = 0; r < rows; r++)
        {
            Iq4XsBlocks.Dequantize(matrix.AsSpan(r * rowBytes, rowBytes), w);
            for (int t = 0; t < tokens; t++)
            {
                double expected = bias[r], magnitude = Math.Abs(bias[r]);
                for (int c = 0; c < cols; c++)
                {
                    double a = (double)q8.Row(t).Scales[c / 32] * q8.Row(t).Codes[c];
                    expected += w[c] * a;
                    magnitude += Math.Abs(w[c] * a);
                }

                float actual = y[(t * stride) + r];
                Assert.True(Math.Abs(actual - expected) <= 1e-5 * magnitude, $"{path}, row {r}, token {t}: {actual}, expected {expected}");
            }
        }

        for (int t = 0; t < tokens; t++)
        {
            Assert.All(y.AsSpan((t * stride) + rows, stride - rows).ToArray(), v => Assert.True(float.IsNaN(v), $"token {t}: wrote past the rows"));
        }
    }
}
