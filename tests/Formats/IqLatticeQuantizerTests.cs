using QwenSharp.Formats.Gguf;
using QwenSharp.Numerics;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Formats;

/// <summary>The IQ3_XXS, IQ3_S, IQ2_S, IQ2_XS, IQ2_XXS, IQ1_S and IQ1_M quantizers against ggml's own (ggml_quantize_chunk), byte for byte, with and without importance.</summary>
public class IqLatticeQuantizerTests
{
    [Theory]
    [InlineData("IQ3_XXS", false)]
    [InlineData("IQ3_XXS", true)]
    [InlineData("IQ3_S", false)]
    [InlineData("IQ3_S", true)]
    [InlineData("IQ2_S", false)]
    [InlineData("IQ2_S", true)]
    [InlineData("IQ2_XS", true)]
    [InlineData("IQ2_XXS", true)]
    [InlineData("IQ1_S", true)]
    [InlineData("IQ1_M", true)]
    public void Rows_QuantizeAsGgmlDoes(string typeName, bool weighted)
    {
        GgmlType type = Enum.Parse<GgmlType>(typeName);
        const int cols = 512;
        (float[] values, int rows) = ImportanceQuantizerTests.Rows(cols, seed: 300 + (int)type);
        float[]? importance = weighted ? ImportanceQuantizerTests.Importance(cols, seed: 9) : null;
        int rowBytes = cols / 256 * (type switch { GgmlType.IQ3_XXS => Iq3Quantizer.Iq3XxsBlockBytes, GgmlType.IQ3_S => Iq3Quantizer.Iq3SBlockBytes, GgmlType.IQ2_XS => Iq2Quantizer.Iq2XsBlockBytes,
            GgmlType.IQ2_XXS => Iq2Quantizer.Iq2XxsBlockBytes, GgmlType.IQ1_S => Iq1Quantizer.Iq1SBlockBytes, GgmlType.IQ1_M => Iq1Quantizer.Iq1MBlockBytes, _ => Iq2Quantizer.Iq2SBlockBytes });

        byte[] ggml = Ggml.QuantizeChunk((int)type, values, rows, cols, importance, rowBytes);
        for (int r = 0; r < rows; r++)
        {
            float[] row = values[(r * cols)..((r + 1) * cols)];
            var ours = new byte[rowBytes];
            switch (type)
            {
                case GgmlType.IQ3_XXS: Iq3Quantizer.QuantizeIq3_XXS(row, ours, importance); break;
                case GgmlType.IQ3_S: Iq3Quantizer.QuantizeIq3_S(row, ours, importance); break;
                case GgmlType.IQ2_XS: Iq2Quantizer.QuantizeIq2_XS(row, ours, importance); break;
                case GgmlType.IQ2_XXS: Iq2Quantizer.QuantizeIq2_XXS(row, ours, importance); break;
                case GgmlType.IQ1_S: Iq1Quantizer.QuantizeIq1_S(row, ours, importance); break;
                case GgmlType.IQ1_M: Iq1Quantizer.QuantizeIq1_M(row, ours, importance); break;
                default: Iq2Quantizer.QuantizeIq2_S(row, ours, importance); break;
            }

            int at = ours.AsSpan().CommonPrefixLength(ggml.AsSpan(r * rowBytes, rowBytes));
            Assert.True(at == rowBytes, $"{typeName}: row {r} differs from ggml's at byte {at}: ours {string.Join(",", ours.Skip(at).Take(8))} ggml {string.Join(",", ggml.Skip((r * rowBytes) + at).Take(8))}");
        }
    }

    [Fact]
    public void Iq2XsAndXxs_WithoutImportance_AreRefused()
    {
        // ggml asserts an importance matrix for them; llama-quantize requires one.
        var error = Assert.Throws<NotSupportedException>(() => Iq2Quantizer.QuantizeIq2_XS(new float[256], new byte[Iq2Quantizer.Iq2XsBlockBytes], default));
        Assert.Contains("IQ2_XS is quantized with an importance matrix only", error.Message, StringComparison.Ordinal);
        Assert.Throws<NotSupportedException>(() => Iq2Quantizer.QuantizeIq2_XXS(new float[256], new byte[Iq2Quantizer.Iq2XxsBlockBytes], default));
    }

    [Fact]
    public void Iq3S_AZeroGroupLeavesTheOthersInPlace()
    {
        // ggml skips a group of 32 zeros without moving on to its index and sign bytes, so each later group's land one
        // group early, read under the wrong scale and ninth bits; here every group keeps its place. All else is ggml's.
        var random = new Random(5);
        float[] row = [.. Enumerable.Range(0, 256).Select(_ => (float)(random.NextDouble() - 0.5))];
        Array.Clear(row, 3 * 32, 32);
        byte[] ggml = Ggml.QuantizeChunk((int)GgmlType.IQ3_S, row, 1, 256, null, Iq3Quantizer.Iq3SBlockBytes);
        var ours = new byte[Iq3Quantizer.Iq3SBlockBytes];
        Iq3Quantizer.QuantizeIq3_S(row, ours);

        Assert.Equal(ggml[..2], ours[..2]);            // d
        Assert.Equal(ggml[66..74], ours[66..74]);      // ninth bits, by group
        Assert.Equal(ggml[106..], ours[106..]);        // scales
        for (int g = 0; g < 8; g++)
        {
            int from = g < 3 ? g : g - 1;              // where ggml put group g's bytes
            byte[] ourIndices = ours[(2 + (8 * g))..(10 + (8 * g))], ourSigns = ours[(74 + (4 * g))..(78 + (4 * g))];
            if (g == 3)
            {
                Assert.All(ourIndices.Concat(ourSigns), b => Assert.Equal(0, b));
                continue;
            }

            Assert.Equal(ggml[(2 + (8 * from))..(10 + (8 * from))], ourIndices);
            Assert.Equal(ggml[(74 + (4 * from))..(78 + (4 * from))], ourSigns);
        }

        // Dequantized, the zero group is the smallest value the format has (d × point 1), not a copy of its neighbour's.
        float[] back = new float[256];
        IqBlocks.Dequantize(IqType.Iq3S, ours, back);
        Assert.All(back[96..128], v => Assert.True(MathF.Abs(v) <= 0.02f, $"{v}"));
    }
}
