using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;
using StoredTensor = QwenSharp.Tests.Backend.BackendConformanceTests.StoredTensor;

namespace QwenSharp.Tests.Kernels;

/// <summary>
/// A step's activations padded with zero tokens to a group of four or eight (<see cref="QuantPanel.PanelTokens"/>), as Q8_0
/// (<see cref="Q8Activations"/>) for Q4_0 and Q8_0 and as Q8_K (<see cref="Q8KActivations"/>) for the k-quants: every panel the
/// kernels read, packed per step or repacked at load, gives the real tokens' sums bit for bit as unpadded activations do, and
/// nothing is written for the padding.
/// </summary>
public sealed class PanelPaddingTests
{
    public static TheoryData<KernelPath, int> PathsAndTokens() => Q8_0PanelsTests.PathsAndTokens();

    /// <summary>
    /// Q4_0's panels, repacked at load and packed per step, and Q8_0's packed per step, against activations padded to a group:
    /// the real tokens' sums bit for bit as unpadded, and nothing written for the padding (the results end at the last real token).
    /// </summary>
    [Theory]
    [MemberData(nameof(PathsAndTokens))]
    public void Q8_0_padding_changes_no_sum_and_writes_nothing(KernelPath path, int tokens)
    {
        const int cols = 256;
        int panelTokens = QuantPanel.PanelTokens(path, tokens);
        float[] x = KernelData.Floats(tokens * cols, 3 + tokens);
        var plain = new Q8Activations();
        plain.Quantize(x, tokens, cols, path);
        // Reused, as a job's are: a bigger step's codes, scales and offsets are in its buffers first, and the padding must clear them.
        var padded = new Q8Activations();
        padded.Quantize(KernelData.Floats((panelTokens + 3) * cols, 77), panelTokens + 3, cols, path);
        padded.Prepare(tokens, cols, panelTokens);
        padded.QuantizeRows(x, 0, tokens, path);
        Assert.Equal(panelTokens, padded.PanelTokens);

        foreach (DType type in new[] { DType.Q4_0, DType.Q8_0 })
        {
            using var w = new StoredTensor("w", KernelData.Floats(QuantPanel.Rows * cols, 9), type, [QuantPanel.Rows, cols]);
            byte[] rows = w.View.Bytes.ToArray();
            var packed = new float[QuantPanel.PanelFloats(cols)];
            QuantPanel.Pack(path, type, rows, QuantPanel.Rows, cols, packed);
            var nibbles = new byte[NibblePanels.PanelBytes(DType.Q4_0, cols)];
            if (type == DType.Q4_0)
            {
                NibblePanels.Repack(type, rows, cols, nibbles);
            }

            foreach (bool repacked in type == DType.Q4_0 ? new[] { false, true } : [false])
            {
                AssertSameSums($"{type} {(repacked ? "repacked" : "packed")} {path}", tokens, panelTokens, (withPadding, y) =>
                {
                    Q8Activations activations = withPadding ? padded : plain;
                    if (repacked)
                    {
                        QuantPanel.MultiplyRepacked(path, nibbles, cols, activations, y, QuantPanel.Rows);
                    }
                    else
                    {
                        QuantPanel.Multiply(path, type, packed, QuantPanel.Rows, cols, activations, y, QuantPanel.Rows);
                    }
                });
            }
        }
    }

    [Fact]
    public void Tokens_are_padded_where_two_or_three_are_left_over_on_a_vector_path()
    {
        Assert.Equal([1, 4, 4, 4, 5, 8, 8, 8, 9, 12, 12], Enumerable.Range(1, 11).Select(t => QuantPanel.PanelTokens(KernelPaths.Default, t)));
        Assert.Equal(7, QuantPanel.PanelTokens(KernelPath.Scalar, 7));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Q8Activations().Prepare(5, 32, 4));
    }

    /// <summary>The same for the k-quants: Q4_K, Q5_K and Q6_K packed per step, and Q4_K repacked at load, against padded Q8_K activations.</summary>
    [Theory]
    [MemberData(nameof(PathsAndTokens))]
    public void Q8_K_padding_changes_no_sum_and_writes_nothing(KernelPath path, int tokens)
    {
        const int cols = 512;
        int panelTokens = QuantPanel.PanelTokens(path, tokens);
        float[] x = KernelData.Floats(tokens * cols, 5 + tokens);
        var plain = new Q8KActivations();
        plain.Quantize(x, tokens, cols, path);
        var padded = new Q8KActivations();
        padded.Quantize(KernelData.Floats((panelTokens + 3) * cols, 78), panelTokens + 3, cols, path);
        padded.Prepare(tokens, cols, panelTokens);
        padded.QuantizeRows(x, 0, tokens, path);
        Assert.Equal(panelTokens, padded.PanelTokens);

        foreach (DType type in new[] { DType.Q4_K, DType.Q5_K, DType.Q6_K })
        {
            byte[] rows = KQuantKernelTests.RandomRow(type, QuantPanel.Rows * cols / 256, 31);
            var packed = new float[QuantPanel.PanelFloats(cols)];
            QuantPanel.Pack(path, type, rows, QuantPanel.Rows, cols, packed);
            var nibbles = new byte[NibblePanels.PanelBytes(DType.Q4_K, cols)];
            if (type == DType.Q4_K)
            {
                NibblePanels.Repack(type, rows, cols, nibbles);
            }

            foreach (bool repacked in type == DType.Q4_K ? new[] { false, true } : [false])
            {
                AssertSameSums($"{type} {(repacked ? "repacked" : "packed")} {path}", tokens, panelTokens, (withPadding, y) =>
                {
                    Q8KActivations activations = withPadding ? padded : plain;
                    if (repacked)
                    {
                        QuantPanel.MultiplyRepacked(path, nibbles, cols, activations, y, QuantPanel.Rows);
                    }
                    else
                    {
                        QuantPanel.Multiply(path, type, packed, QuantPanel.Rows, cols, activations, y, QuantPanel.Rows);
                    }
                });
            }
        }
    }

    /// <summary>
    /// <paramref name="multiply"/> (told whether to take the padded activations) into room for every held token's 16 results,
    /// NaN first, without and with the padding: the real tokens' sums alike bit for bit (and written), the padding's left NaN.
    /// </summary>
    private static void AssertSameSums(string what, int tokens, int panelTokens, Action<bool, float[]> multiply)
    {
        float[] Multiplied(bool withPadding)
        {
            var y = new float[panelTokens * QuantPanel.Rows];
            y.AsSpan().Fill(float.NaN);
            multiply(withPadding, y);
            return y;
        }

        float[] expected = Multiplied(false), actual = Multiplied(true);
        for (int i = 0; i < actual.Length; i++)
        {
            Assert.True(i < tokens * QuantPanel.Rows ? actual[i].Equals(expected[i]) && !float.IsNaN(actual[i]) : float.IsNaN(actual[i]),
                $"{what}, token {i / QuantPanel.Rows} of {tokens} (held as {panelTokens}), row {i % QuantPanel.Rows}: {actual[i]}, unpadded {expected[i]}");
        }
    }
}
