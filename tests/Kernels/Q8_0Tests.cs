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
    public void Dequantize_EveryPath_MatchesTheReference(KernelPath path)
    {
        foreach (int blocks in new[] { 1, 2, 7, 28 })
        {
            (byte[] stored, float[] exact) = KernelData.Store(KernelData.Floats(blocks * 32, blocks, scale: 3), QwenSharp.Formats.DType.Q8_0);
            var dequantized = new float[blocks * 32];
            Q8_0Kernel.Dequantize(path, stored, dequantized);
            Assert.Equal(exact, dequantized);
        }
    }

    public static TheoryData<KernelPath> KernelPathData() => [.. KernelPaths.All];
}
