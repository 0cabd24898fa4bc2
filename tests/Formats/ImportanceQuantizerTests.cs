using QwenSharp.Formats;
using QwenSharp.Formats.Gguf;
using QwenSharp.Numerics;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Formats;

/// <summary>The importance-weighted quantizers (llama-quantize --imatrix) against ggml's own, byte for byte.</summary>
public class ImportanceQuantizerTests
{
    public static TheoryData<string> WeightedTypes => new() { "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS" };

    [Theory]
    [InlineData("IQ4_NL")]
    [InlineData("IQ4_XS")]
    public void Iq4Rows_WithoutImportance_QuantizeAsGgmlDoes(string typeName)
    {
        // llama-quantize's IQ4_NL and IQ4_XS search scales even without a matrix (weights x²), unlike the reference
        // quantizers of the other types: ggml_quantize_chunk with no importance is the oracle.
        DType type = Enum.Parse<DType>(typeName);
        const int cols = 512;
        (float[] values, int rows) = Rows(cols, seed: 100 + (int)type);
        int rowBytes = checked((int)DTypes.ByteLength(type, cols));

        byte[] ours = TensorValues.FromSingle(values, type);
        byte[] ggml = Ggml.QuantizeChunk((int)GgmlTypes.Of(type), values, rows, cols, null, rowBytes);

        for (int r = 0; r < rows; r++)
        {
            Assert.True(ours.AsSpan(r * rowBytes, rowBytes).SequenceEqual(ggml.AsSpan(r * rowBytes, rowBytes)), $"{typeName}: row {r} differs from ggml's");
        }
    }

    [Theory]
    [MemberData(nameof(WeightedTypes))]
    public void Rows_QuantizeAsGgmlDoesWithTheSameImportance(string typeName)
    {
        DType type = Enum.Parse<DType>(typeName);
        const int cols = 512;
        (float[] values, int rows) = Rows(cols, seed: (int)type);
        float[] importance = Importance(cols, seed: 7);
        int rowBytes = checked((int)DTypes.ByteLength(type, cols));

        byte[] ours = new byte[rows * rowBytes];
        for (int r = 0; r < rows; r++)
        {
            ImportanceQuantizer.QuantizeRow(type, values.AsSpan(r * cols, cols), importance, ours.AsSpan(r * rowBytes, rowBytes));
        }

        byte[] ggml = Ggml.QuantizeChunk((int)GgmlTypes.Of(type), values, rows, cols, importance, rowBytes);
        for (int r = 0; r < rows; r++)
        {
            Assert.True(ours.AsSpan(r * rowBytes, rowBytes).SequenceEqual(ggml.AsSpan(r * rowBytes, rowBytes)), $"{typeName}: row {r} differs from ggml's");
        }

        // The importance changes the result (else the test would pass on the reference quantizer alone).
        Assert.False(ours.AsSpan().SequenceEqual(TensorValues.FromSingle(values, type)), $"{typeName}: the weighted bytes equal the unweighted ones");
    }

    [Fact]
    public void ARowOfTheWrongLength_IsRefused()
    {
        var error = Assert.Throws<ArgumentException>(() => ImportanceQuantizer.QuantizeRow(DType.Q4_K, new float[256], new float[255], new byte[144]));
        Assert.Contains("255 importances for a row of 256 values", error.Message, StringComparison.Ordinal);
    }

    /// <summary>Random rows of several scales, and the edge cases: zeros, a constant, a lone outlier, one sign only, tiny values.</summary>
    internal static (float[] Values, int Rows) Rows(int cols, int seed)
    {
        var random = new Random(seed);
        var rows = new List<float[]>();
        foreach (float scale in new[] { 1f, 0.02f, 30f })
        {
            for (int r = 0; r < 3; r++)
            {
                rows.Add([.. Enumerable.Range(0, cols).Select(_ => scale * Normal(random))]);
            }
        }

        rows.Add(new float[cols]);
        rows.Add([.. Enumerable.Repeat(0.75f, cols)]);
        float[] outlier = [.. Enumerable.Range(0, cols).Select(_ => 0.01f * Normal(random))];
        outlier[37] = 50f;
        outlier[300] = -80f;
        rows.Add(outlier);
        rows.Add([.. Enumerable.Range(0, cols).Select(_ => MathF.Abs(Normal(random)))]);
        rows.Add([.. Enumerable.Range(0, cols).Select(_ => -MathF.Abs(Normal(random)) - 1f)]);
        rows.Add([.. Enumerable.Range(0, cols).Select(_ => 1e-6f * Normal(random))]);
        float[] halfZero = [.. Enumerable.Range(0, cols).Select(_ => Normal(random))];
        Array.Clear(halfZero, 0, 256);
        rows.Add(halfZero);
        return ([.. rows.SelectMany(r => r)], rows.Count);
    }

    /// <summary>Mean squared activations as an imatrix holds them: positive, spread over orders of magnitude, a few columns never active.</summary>
    internal static float[] Importance(int cols, int seed)
    {
        var random = new Random(seed);
        float[] importance = [.. Enumerable.Range(0, cols).Select(_ => MathF.Exp(2 * Normal(random)))];
        importance[5] = 0;
        importance[130] = 0;
        Array.Clear(importance, 64, 32);    // a whole block that no token ever used
        return importance;
    }

    private static float Normal(Random random) =>
        (float)(Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble()));
}
