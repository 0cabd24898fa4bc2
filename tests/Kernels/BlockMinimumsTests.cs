using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;
using QwenSharp.Numerics;

namespace QwenSharp.Tests.Kernels;

/// <summary>
/// Q4_1 and Q5_1 on the CPU: their blocks split into Q8_0 codes and f32 minimums keep every value (against the format's
/// dequantization, tested bit for bit against llama.cpp in GgmlDequantizeTests), and the minimums' share of a product is
/// the same on every kernel path and equals Σ_b m × (the block's sum) worked out in double.
/// </summary>
public sealed class BlockMinimumsTests
{
    public static TheoryData<KernelPath> Paths() => [.. KernelPaths.All];

    [Theory]
    [InlineData(DType.Q4_1)]
    [InlineData(DType.Q5_1)]
    public void SplitBlocks_AreTheStoredValues_BitForBit(DType type)
    {
        // Random codes and fifth bits; scales and minimums of both signs, zero, negative zero and the f16 extremes' neighbours.
        const int blocks = 48;
        int size = DTypes.BlockBytes(type);
        var random = new Random(11);
        var stored = new byte[blocks * size];
        random.NextBytes(stored);
        float[] halves = [0.5f, -0.25f, 0f, -0f, 1e-3f, -7.5f, 6.1e-5f, 60000f];
        for (int b = 0; b < blocks; b++)
        {
            BitConverter.TryWriteBytes(stored.AsSpan(b * size), HalfBits.FromSingle(halves[b % halves.Length]));
            BitConverter.TryWriteBytes(stored.AsSpan((b * size) + 2), HalfBits.FromSingle(-halves[(b / 3) % halves.Length]));
        }

        var codes = new byte[blocks * 34];
        var minimums = new float[blocks * 2];
        LegacyQuantBlocks.SplitMinimums(type, stored, codes, minimums, minimumStride: 2);

        var expected = new float[blocks * 32];
        var actual = new float[blocks * 32];
        if (type == DType.Q4_1)
        {
            LegacyQuantBlocks.DequantizeQ4_1(stored, expected);
        }
        else
        {
            LegacyQuantBlocks.DequantizeQ5_1(stored, expected);
        }

        Q8_0Blocks.Dequantize(codes, actual);
        for (int i = 0; i < expected.Length; i++)
        {
            float value = actual[i] + minimums[i / 32 * 2];
            Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(value), $"{type} value {i}: {value}, stored {expected[i]}");
            Assert.InRange(codes[(i / 32 * 34) + 2 + (i % 32)], 0, type == DType.Q4_1 ? 15 : 31);
        }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public unsafe void Add_EveryPath_GivesTheScalarBits_AndTheSumInDouble(KernelPath path)
    {
        // 77 rows in groups of 16 and a partial one, 5 blocks, 3 tokens; rows 3..74 only (a partial group either side of whole
        // ones), the rest left alone.
        const int rows = 77, blocks = 5, tokens = 3, start = 3, end = 74;
        float[] minimums = KernelData.Floats(checked((int)BlockMinimums.Floats(rows, blocks)), 1);
        float[] x = KernelData.Floats(tokens * blocks * 32, 2);
        float[] initial = KernelData.Floats(tokens * rows, 3);
        var sums = new float[tokens * blocks];
        BlockMinimums.BlockSums(x, blocks * 32, 0, tokens, sums);

        float[] scalar = [.. initial], vector = [.. initial];
        fixed (float* m = minimums)
        {
            BlockMinimums.Add(KernelPath.Scalar, m, rows, blocks, sums, tokens, scalar, start, end);
            BlockMinimums.Add(path, m, rows, blocks, sums, tokens, vector, start, end);
        }

        for (int t = 0; t < tokens; t++)
        {
            for (int r = 0; r < rows; r++)
            {
                int i = (t * rows) + r;
                Assert.Equal(BitConverter.SingleToInt32Bits(scalar[i]), BitConverter.SingleToInt32Bits(vector[i]));
                double expected = initial[i];
                if (r is >= start and < end)
                {
                    for (int b = 0; b < blocks; b++)
                    {
                        double sum = 0;
                        for (int j = 0; j < 32; j++)
                        {
                            sum += x[(t * blocks * 32) + (b * 32) + j];
                        }

                        expected += minimums[BlockMinimums.Index(r, b, blocks)] * sum;
                    }
                }

                Assert.True(Math.Abs(expected - vector[i]) <= 1e-5 * (1 + Math.Abs(expected)), $"{path} token {t} row {r}: {vector[i]}, expected {expected}");
            }
        }
    }
}
