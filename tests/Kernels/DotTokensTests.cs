using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;

namespace QwenSharp.Tests.Kernels;

/// <summary>
/// One weight row against several tokens (a small batch's decode step), on every dtype and path: each
/// token's sum is within float rounding of the exact double sum, and bit-identical to the single-token
/// <see cref="Dot{TW}"/> (what makes a sequence's logits independent of its batch).
/// </summary>
public sealed class DotTokensTests
{
    public static TheoryData<DType, KernelPath> DTypesAndPaths() => DotTests.DTypesAndPaths();

    [Theory]
    [MemberData(nameof(DTypesAndPaths))]
    public void EveryTokenMatchesTheExactSumAndItsSumAlone(DType type, KernelPath path)
    {
        foreach (int length in Enumerable.Range(0, 140).Concat([896, 4864]))
        {
            (byte[] weights, float[] exact) = KernelData.Store(KernelData.Floats(length, seed: length, scale: 0.05f), type);
            for (int tokens = 1; tokens <= 9; tokens++)
            {
                float[] x = KernelData.Floats(length * tokens, seed: (length * 10) + tokens);
                float[] together = Enumerable.Repeat(float.NaN, tokens + 1).ToArray();
                Run(type, path, weights, x, length, tokens, together);

                for (int t = 0; t < tokens; t++)
                {
                    float[] xt = x[(t * length)..((t + 1) * length)];
                    float alone = type switch
                    {
                        DType.BF16 => Dot<Bf16Load>.Run(path, weights, xt),
                        DType.F16 => Dot<F16Load>.Run(path, weights, xt),
                        _ => Dot<F32Load>.Run(path, weights, xt),
                    };
                    double expected = KernelData.DotExact(exact, xt, out double magnitude);
                    Assert.True(Math.Abs(together[t] - expected) <= (2e-6 * magnitude) + 1e-9,
                        $"{type} {path} length {length}, token {t} of {tokens}: {together[t]} vs {expected}");
                    Assert.True(BitConverter.SingleToInt32Bits(alone) == BitConverter.SingleToInt32Bits(together[t]),
                        $"{type} {path} length {length}, token {t} of {tokens}: {together[t]} in the batch, {alone} alone");
                }

                Assert.True(float.IsNaN(together[tokens]), "wrote past the tokens' results");
            }
        }
    }

    [Fact]
    public void ShortInputsAreRefused()
    {
        Assert.Throws<ArgumentException>(() => DotTokens<F32Load>.Run(KernelPath.Vector512, new byte[4 * 8], new float[8 * 2], 8, 3, new float[3]));
        Assert.Throws<ArgumentException>(() => DotTokens<F32Load>.Run(KernelPath.Vector512, new byte[4 * 7], new float[8 * 3], 8, 3, new float[3]));
    }

    private static void Run(DType type, KernelPath path, byte[] weights, float[] x, int k, int tokens, float[] results)
    {
        switch (type)
        {
            case DType.BF16:
                DotTokens<Bf16Load>.Run(path, weights, x, k, tokens, results);
                break;
            case DType.F16:
                DotTokens<F16Load>.Run(path, weights, x, k, tokens, results);
                break;
            default:
                DotTokens<F32Load>.Run(path, weights, x, k, tokens, results);
                break;
        }
    }
}
