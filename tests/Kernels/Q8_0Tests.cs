using QwenSharp.Cpu.Kernels;
using QwenSharp.Numerics;

namespace QwenSharp.Tests.Kernels;

/// <summary>Q8_0 blocks against the format's definition (ggml's block_q8_0, quantize_row_q8_0_ref), and the CPU kernels against that reference.</summary>
public sealed class Q8_0Tests
{
    /// <summary>A block from its parts: the f16 bits of d, then 32 int8.</summary>
    private static byte[] Block(ushort d, params sbyte[] q)
    {
        var block = new byte[34];
        block[0] = (byte)d;
        block[1] = (byte)(d >> 8);
        for (int j = 0; j < q.Length; j++)
        {
            block[2 + j] = (byte)q[j];
        }

        return block;
    }

    [Fact]
    public void Dequantize_EdgeCodes_AreScaleTimesCode()
    {
        // d = 0.5 is f16 0x3800; codes at both ends of int8, zero and ±1.
        byte[] block = Block(0x3800, -128, -1, 0, 1, 127);
        var values = new float[32];

        Q8_0Blocks.Dequantize(block, values);

        Assert.Equal([-64f, -0.5f, 0f, 0.5f, 63.5f], values[..5]);
        Assert.All(values[5..], v => Assert.Equal(0f, v));
    }

    [Fact]
    public void Dequantize_ZeroAndNegativeZeroScale_GiveZerosOfTheRightSign()
    {
        var values = new float[32];
        Q8_0Blocks.Dequantize(Block(0x0000, 5, -5), values);
        Assert.Equal([0f, -0f], values[..2]);
        Assert.False(float.IsNegative(values[0]));
        Assert.True(float.IsNegative(values[1]));

        Q8_0Blocks.Dequantize(Block(0x8000, 5, -5), values);
        Assert.True(float.IsNegative(values[0]));    // -0 × 5
        Assert.False(float.IsNegative(values[1]));   // -0 × -5
    }

    [Fact]
    public void Quantize_AsLlamaCpp_ScaleFromMaxAndHalvesAwayFromZero()
    {
        // max |x| = 127 gives d = 1 exactly, so each code is x rounded, halves away from zero (C's roundf).
        var x = new float[32];
        float[] given = [127, -127, 63.5f, -63.5f, 0.5f, -0.5f, 2.5f, 1.49f, 0];
        given.CopyTo(x, 0);
        var block = new byte[34];

        Q8_0Blocks.Quantize(x, block);

        Assert.Equal(0x3C00, block[0] | (block[1] << 8));   // f16 1.0
        Assert.Equal(new sbyte[] { 127, -127, 64, -64, 1, -1, 3, 1, 0 }, block[2..11].Select(b => (sbyte)b));
    }

    [Fact]
    public void Quantize_AllZeros_ScaleZeroAndCodesZero()
    {
        var block = new byte[34];
        Array.Fill(block, (byte)0xAA);

        Q8_0Blocks.Quantize(new float[32], block);

        Assert.All(block, b => Assert.Equal(0, b));
    }

    [Theory]
    [MemberData(nameof(KernelPathData))]
    public void Kernels_EveryPath_MatchTheReference(KernelPath path)
    {
        foreach (int blocks in new[] { 1, 2, 7, 28, 152 })
        {
            float[] values = KernelData.Floats(blocks * 32, blocks, scale: 3);
            (byte[] stored, float[] exact) = KernelData.Store(values, QwenSharp.Formats.DType.Q8_0);
            float[] x = KernelData.Floats(blocks * 32, blocks + 1);
            var dequantized = new float[blocks * 32];

            Q8_0Kernel.Dequantize(path, stored, dequantized);
            float dot = Q8_0Kernel.Dot(path, stored, x);

            Assert.Equal(exact, dequantized);
            double expected = KernelData.DotExact(exact, x, out double magnitude);
            Assert.True(Math.Abs(dot - expected) <= 1e-6 * (magnitude + 1), $"{blocks} blocks on {path}: {dot} vs {expected}");
        }
    }

    [Theory]
    [MemberData(nameof(KernelPathData))]
    public void DotTokens_EveryPath_IsEachTokensDotBitForBit(KernelPath path)
    {
        foreach (int blocks in new[] { 1, 2, 3, 28, 153 })
        {
            (byte[] stored, float[] exact) = KernelData.Store(KernelData.Floats(blocks * 32, blocks, scale: 3), QwenSharp.Formats.DType.Q8_0);
            for (int tokens = 1; tokens <= 9; tokens++)
            {
                float[] x = KernelData.Floats(blocks * 32 * tokens, (blocks * 10) + tokens);
                float[] together = [.. Enumerable.Repeat(float.NaN, tokens + 1)];
                Q8_0Kernel.DotTokens(path, stored, x, blocks * 32, tokens, together);

                for (int t = 0; t < tokens; t++)
                {
                    float[] xt = x[(t * blocks * 32)..((t + 1) * blocks * 32)];
                    float alone = Q8_0Kernel.Dot(path, stored, xt);
                    double expected = KernelData.DotExact(exact, xt, out double magnitude);
                    Assert.True(Math.Abs(together[t] - expected) <= 1e-6 * (magnitude + 1), $"{blocks} blocks, token {t} of {tokens} on {path}: {together[t]} vs {expected}");
                    Assert.True(BitConverter.SingleToInt32Bits(alone) == BitConverter.SingleToInt32Bits(together[t]),
                        $"{blocks} blocks, token {t} of {tokens} on {path}: {together[t]} in the batch, {alone} alone");
                }

                Assert.True(float.IsNaN(together[tokens]), "wrote past the tokens' results");
            }
        }
    }

    public static TheoryData<KernelPath> KernelPathData() => [.. KernelPaths.All];
}
