using System.Buffers.Binary;
using System.Runtime.Intrinsics.X86;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;
using QwenSharp.Numerics;

namespace QwenSharp.Tests.Kernels;

/// <summary>
/// Q5_0 rows stored as pairs of blocks (<see cref="Q5_0Pairs"/>) and their integer dot product (<see cref="Q5_0PairKernel"/>)
/// on every kernel path, against the stored blocks' dequantization (<see cref="LegacyQuantBlocks.DequantizeQ5_0"/>, tested bit
/// for bit against llama.cpp in GgmlDequantizeTests) and the Q8_0 activations, dotted in double.
/// </summary>
public sealed class Q5_0PairKernelTests
{
    public static TheoryData<KernelPath> Paths() => [.. KernelPaths.All];

    /// <summary>
    /// Random Q5_0 blocks: every code and fifth bit random, the f16 scales small and of both signs; then the edge cases:
    /// block 0's codes all 31 and block 1's all 0 (the extremes, all fifth bits set and clear), block 2's scale 0 and block
    /// 3's -0.
    /// </summary>
    private static byte[] RandomBlocks(int blocks, int seed)
    {
        var random = new Random(seed);
        var rows = new byte[blocks * LegacyQuantBlocks.Q5_0BlockBytes];
        random.NextBytes(rows);
        for (int b = 0; b < blocks; b++)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(rows.AsSpan(b * LegacyQuantBlocks.Q5_0BlockBytes), HalfBits.FromSingle((float)((random.NextDouble() - 0.3) * 0.01)));
        }

        if (blocks >= 4)
        {
            rows.AsSpan(2, 20).Fill(0xFF);
            rows.AsSpan(LegacyQuantBlocks.Q5_0BlockBytes + 2, 20).Clear();
            BinaryPrimitives.WriteUInt16LittleEndian(rows.AsSpan(2 * LegacyQuantBlocks.Q5_0BlockBytes), 0);
            BinaryPrimitives.WriteUInt16LittleEndian(rows.AsSpan(3 * LegacyQuantBlocks.Q5_0BlockBytes), 0x8000);
        }

        return rows;
    }

    private static byte[] Paired(byte[] stored)
    {
        var pairs = new byte[stored.Length];
        Q5_0Pairs.Repack(stored, pairs);
        return pairs;
    }

    [Fact]
    public void Pairs_hold_every_stored_value_bit_for_bit()
    {
        foreach (int blocks in new[] { 2, 4, 28 })
        {
            byte[] stored = RandomBlocks(blocks, blocks);
            byte[] pairs = Paired(stored);
            float[] expected = new float[blocks * 32], actual = new float[blocks * 32];
            LegacyQuantBlocks.DequantizeQ5_0(stored, expected);
            Q5_0Pairs.Dequantize(pairs, actual);
            for (int i = 0; i < expected.Length; i++)
            {
                Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]), $"{blocks} blocks, value {i}: {actual[i]}, stored {expected[i]}");
            }

            byte[] q8Expected = new byte[blocks * Q8_0Blocks.BlockBytes], q8Actual = new byte[blocks * Q8_0Blocks.BlockBytes];
            LegacyQuantBlocks.WidenQ5_0ToQ8_0(stored, q8Expected);
            Q5_0Pairs.ToQ8_0(pairs, q8Actual);
            Assert.Equal(q8Expected, q8Actual);
        }
    }

    [Fact]
    public void Q5_1_pairs_and_minimums_hold_every_stored_value_bit_for_bit()
    {
        // Q5_1 blocks (random codes, fifth bits, scales and minimums; the first block's codes all 31, the second's all 0) as
        // pairs of codes and scales and f32 minimums every third float: code × scale + minimum must be the stored value.
        const int blocks = 6, stride = 3;
        var random = new Random(5);
        var stored = new byte[blocks * LegacyQuantBlocks.Q5_1BlockBytes];
        random.NextBytes(stored);
        for (int b = 0; b < blocks; b++)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(stored.AsSpan(b * LegacyQuantBlocks.Q5_1BlockBytes), HalfBits.FromSingle((float)(random.NextDouble() * 0.01)));
            BinaryPrimitives.WriteUInt16LittleEndian(stored.AsSpan((b * LegacyQuantBlocks.Q5_1BlockBytes) + 2), HalfBits.FromSingle((float)(random.NextDouble() - 0.5)));
        }

        stored.AsSpan(4, 20).Fill(0xFF);
        stored.AsSpan(LegacyQuantBlocks.Q5_1BlockBytes + 4, 20).Clear();
        var pairs = new byte[blocks * LegacyQuantBlocks.Q5_0BlockBytes];
        float[] minimums = Enumerable.Repeat(float.NaN, ((blocks - 1) * stride) + 1).ToArray();
        Q5_0Pairs.RepackQ5_1(stored, pairs, minimums, stride);
        float[] expected = new float[blocks * 32], actual = new float[blocks * 32];
        LegacyQuantBlocks.DequantizeQ5_1(stored, expected);
        Q5_0Pairs.Dequantize(pairs, actual, offset: 0);
        for (int i = 0; i < expected.Length; i++)
        {
            float value = actual[i] + minimums[i / 32 * stride];
            Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(value), $"value {i}: {value}, stored {expected[i]}");
        }

        byte[] q8Expected = new byte[blocks * Q8_0Blocks.BlockBytes], q8Actual = new byte[blocks * Q8_0Blocks.BlockBytes];
        LegacyQuantBlocks.SplitMinimums(DType.Q5_1, stored, q8Expected, new float[((blocks - 1) * stride) + 1], stride);
        Q5_0Pairs.ToQ8_0(pairs, q8Actual, offset: 0);
        Assert.Equal(q8Expected, q8Actual);
    }

    [Fact]
    public void Repack_refuses_rows_that_are_not_whole_pairs()
    {
        byte[] oneBlock = RandomBlocks(1, 1);
        var e = Assert.Throws<ArgumentException>(() => Q5_0Pairs.Repack(oneBlock, new byte[oneBlock.Length]));
        Assert.Contains("pairs", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<ArgumentException>(() => Q5_0Pairs.RepackQ5_1(new byte[LegacyQuantBlocks.Q5_1BlockBytes], new byte[LegacyQuantBlocks.Q5_0BlockBytes], new float[1], 1));
        Assert.Contains("Q5_1", e.Message, StringComparison.Ordinal);
        Assert.False(Q5_0Pairs.Fits(32));
        Assert.True(Q5_0Pairs.Fits(896));
    }

    private static double Expected(byte[] stored, Q8Row x, out double magnitude)
    {
        var w = new float[x.Codes.Length];
        LegacyQuantBlocks.DequantizeQ5_0(stored, w);
        return Q8IntegerKernelTests.DotInDouble(w, x, out magnitude);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void Integer_dot_with_q8_0_activations_equals_its_definition_on_every_path(KernelPath path)
    {
        foreach (int blocks in new[] { 2, 4, 6, 28 })
        {
            byte[] stored = RandomBlocks(blocks, (blocks * 7) + 3);
            float[] x = KernelData.Floats(blocks * 32, blocks + 60, scale: 3f);
            x.AsSpan(32, 32).Clear();    // a block of zero activations: scale 0
            var q8 = new Q8Activations();
            q8.Quantize(x, 1, x.Length, path);

            float actual = Q5_0PairKernel.Dot(path, Paired(stored), q8.Row(0));

            double expected = Expected(stored, q8.Row(0), out double magnitude);
            Assert.True(Math.Abs(actual - expected) <= 1e-5 * (magnitude + 1e-9), $"{path}, {blocks} blocks: {actual}, expected {expected}");
        }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void Rows_four_at_a_time_equal_one_at_a_time_and_the_definition(KernelPath path)
    {
        // 11 rows: two of four a quarter apart, then three one at a time; a NaN past the results must stay. With Q5_0's
        // offset of 16, and with the codes taken as stored (a Q5_1 matrix's, whose minimums are added apart): each value
        // then the stored Q5_0 value + 16 × its block's scale.
        const int rows = 11, blocks = 6, rowBytes = blocks / 2 * Q5_0Pairs.PairBytes;
        byte[] stored = RandomBlocks(rows * blocks, 77), matrix = Paired(stored);
        float[] x = KernelData.Floats(blocks * 32, 8, scale: 2f);
        var q8 = new Q8Activations();
        q8.Quantize(x, 1, x.Length, path);
        foreach (bool offset in new[] { true, false })
        {
            float[] results = Enumerable.Repeat(float.NaN, rows + 1).ToArray();
            Q5_0PairKernel.DotRows(path, matrix, rows, q8.Row(0), results, offset);
            for (int r = 0; r < rows; r++)
            {
                float alone = Q5_0PairKernel.Dot(path, matrix.AsSpan(r * rowBytes, rowBytes), q8.Row(0), offset);
                Assert.True(BitConverter.SingleToInt32Bits(results[r]) == BitConverter.SingleToInt32Bits(alone), $"{path} offset {offset} row {r}: {results[r]}, alone {alone}");
                var w = new float[blocks * 32];
                ReadOnlySpan<byte> row = stored.AsSpan(r * blocks * LegacyQuantBlocks.Q5_0BlockBytes, blocks * LegacyQuantBlocks.Q5_0BlockBytes);
                LegacyQuantBlocks.DequantizeQ5_0(row, w);
                double expected = 0, magnitude = 0;
                for (int i = 0; i < w.Length; i++)
                {
                    double value = w[i] + (offset ? 0 : 16.0 * HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(row[(i / 32 * LegacyQuantBlocks.Q5_0BlockBytes)..])));
                    double a = (double)q8.Row(0).Scales[i / 32] * q8.Row(0).Codes[i];
                    expected += value * a;
                    magnitude += Math.Abs(value * a);
                }

                Assert.True(Math.Abs(alone - expected) <= 1e-5 * (magnitude + 1e-9), $"{path} offset {offset} row {r}: {alone}, expected {expected}");
            }

            Assert.True(float.IsNaN(results[rows]), "wrote past the rows' results");
        }
    }

    [Fact]
    public void The_pair_sums_kernel_equals_the_vnni_kernel_bit_for_bit()
    {
        // vpmaddubsw + vpmaddwd against vpdpbusd: the same integer sums, so the same floats (where the CPU has no AVX-VNNI
        // both runs take the same kernel).
        const int rows = 13, blocks = 28;
        byte[] matrix = Paired(RandomBlocks(rows * blocks, 31));
        float[] x = KernelData.Floats(blocks * 32, 9, scale: 3f);
        var q8 = new Q8Activations();
        q8.Quantize(x, 1, x.Length, KernelPath.Vector512);
        float[] vnni = new float[rows], pairSums = new float[rows];
        Q5_0PairKernel.DotRows(KernelPath.Vector512, matrix, rows, q8.Row(0), vnni);
        using (ByteDots.WithoutVnni())
        {
            Q5_0PairKernel.DotRows(KernelPath.Vector512, matrix, rows, q8.Row(0), pairSums);
        }

        Assert.Equal(vnni, pairSums);
    }

    [Fact]
    public void Pays_only_where_the_cpu_has_gfni_and_never_on_the_scalar_path()
    {
        // Several tokens multiply the Q8_0 panels of the same values, in integers only with vpdpbusd (the 512-bit path).
        Assert.False(Q5_0Pairs.Pays(KernelPath.Scalar));
        Assert.False(Q5_0Pairs.Pays(KernelPath.Vector256));
        Assert.Equal(Gfni.V256.IsSupported && Avx2.IsSupported && Fma.IsSupported && AvxVnni.IsSupported, Q5_0Pairs.Pays(KernelPath.Vector512));
        using (Q5_0Pairs.Assume(false))
        {
            Assert.False(Q5_0Pairs.Pays(KernelPath.Vector512));
        }
    }
}
