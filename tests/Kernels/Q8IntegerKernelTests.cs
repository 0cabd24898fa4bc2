using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;
using QwenSharp.Numerics;

namespace QwenSharp.Tests.Kernels;

/// <summary>
/// The Q8_0, Q4_0 and IQ4_NL integer dot products on every kernel path against the formats' dequantization (Q8_0Blocks,
/// LegacyQuantBlocks, WidenedBlocks: tested bit for bit against llama.cpp in GgmlDequantizeTests) and the Q8_0 activations, dotted in
/// double; and the activations' quantization against ggml's definition.
/// </summary>
public sealed class Q8IntegerKernelTests
{
    public static TheoryData<KernelPath, DType> PathsAndTypes()
    {
        var data = new TheoryData<KernelPath, DType>();
        foreach (KernelPath path in KernelPaths.All)
        {
            data.Add(path, DType.Q8_0);
            data.Add(path, DType.Q4_0);
            data.Add(path, DType.IQ4_NL);
        }

        return data;
    }

    /// <summary>Random blocks: every code byte random (Q8_0's -128 included), the f16 scales small and of both signs.</summary>
    internal static byte[] RandomRows(DType type, int blocks, int seed)
    {
        var random = new Random(seed);
        int size = DTypes.BlockBytes(type);
        var rows = new byte[blocks * size];
        random.NextBytes(rows);
        for (int b = 0; b < blocks; b++)
        {
            BitConverter.TryWriteBytes(rows.AsSpan(b * size), HalfBits.FromSingle((float)((random.NextDouble() - 0.3) * 0.01)));
        }

        return rows;
    }

    private static double Expected(DType type, byte[] row, Q8Row x, out double magnitude)
    {
        var w = new float[x.Codes.Length];
        if (type == DType.IQ4_NL)
        {
            WidenedBlocks.DequantizeIq4_NL(row, w);
        }
        else
        {
            QuantizedRows.Dequantize(KernelPath.Scalar, type, row, w);
        }

        return DotInDouble(w, x, out magnitude);
    }

    /// <summary>Σ w × x in double, x being the Q8_0 activations' codes × their block's scale; <paramref name="magnitude"/>: Σ |w × x|.</summary>
    internal static double DotInDouble(float[] w, Q8Row x, out double magnitude)
    {
        double expected = 0;
        magnitude = 0;
        for (int i = 0; i < w.Length; i++)
        {
            double a = (double)x.Scales[i / 32] * x.Codes[i];
            expected += w[i] * a;
            magnitude += Math.Abs(w[i] * a);
        }

        return expected;
    }

    [Theory]
    [MemberData(nameof(PathsAndTypes))]
    public void Integer_dot_with_q8_0_activations_equals_its_definition_on_every_path(KernelPath path, DType type)
    {
        foreach (int blocks in new[] { 1, 2, 3, 28 })
        {
            byte[] row = RandomRows(type, blocks, (blocks * 13) + (int)type);
            float[] x = KernelData.Floats(blocks * 32, blocks + 50, scale: 3f);
            x.AsSpan(0, 32).Clear();    // a block of zero activations: scale 0
            var q8 = new Q8Activations();
            q8.Quantize(x, 1, x.Length, path);

            float actual = Q8IntegerKernel.Dot(path, type, row, q8.Row(0));

            double expected = Expected(type, row, q8.Row(0), out double magnitude);
            Assert.True(Math.Abs(actual - expected) <= 1e-5 * (magnitude + 1e-9), $"{type} {path}, {blocks} blocks: {actual}, expected {expected}");
        }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void Iq4_nl_at_its_table_ends_against_full_activations_sums_exactly(KernelPath path)
    {
        // Every value -127 (nibble 0) or 113 (nibble 15) against activations of ±127: where vpmaddubsw's 16-bit pairs would
        // saturate on the table + 128 (241 × 127 × 2), and the largest sums vpdpbusd's lanes take. Integers exact, so the
        // one rounding left is the scales' product.
        const int blocks = 4;
        foreach (byte fill in new byte[] { 0x00, 0xFF, 0xF0 })
        {
            var row = new byte[blocks * 18];
            for (int b = 0; b < blocks; b++)
            {
                BitConverter.TryWriteBytes(row.AsSpan(b * 18), HalfBits.FromSingle(0.25f));
                row.AsSpan((b * 18) + 2, 16).Fill(fill);
            }

            float[] x = [.. Enumerable.Range(0, blocks * 32).Select(i => i % 3 == 0 ? -1f : 1f)];
            var q8 = new Q8Activations();
            q8.Quantize(x, 1, x.Length, path);
            Assert.All(q8.Row(0).Codes.ToArray(), c => Assert.Equal(127, Math.Abs((int)c)));

            float actual = Q8IntegerKernel.Dot(path, DType.IQ4_NL, row, q8.Row(0));

            double expected = Expected(DType.IQ4_NL, row, q8.Row(0), out double magnitude);
            Assert.True(Math.Abs(actual - expected) <= 1e-6 * magnitude, $"{path}, nibbles 0x{fill:X2}: {actual}, expected {expected}");
        }
    }

    [Theory]
    [MemberData(nameof(PathsAndTypes))]
    public void Rows_four_at_a_time_equal_one_at_a_time(KernelPath path, DType type)
    {
        const int rows = 9, blocks = 3;
        byte[] matrix = RandomRows(type, rows * blocks, 77);
        float[] x = KernelData.Floats(blocks * 32, 8, scale: 2f);
        var q8 = new Q8Activations();
        q8.Quantize(x, 1, x.Length, path);
        var results = new float[rows + 1];
        results[rows] = float.NaN;
        Q8IntegerKernel.DotRows(path, type, matrix, rows, q8.Row(0), results);
        int rowBytes = blocks * DTypes.BlockBytes(type);
        for (int r = 0; r < rows; r++)
        {
            float alone = Q8IntegerKernel.Dot(path, type, matrix.AsSpan(r * rowBytes, rowBytes), q8.Row(0));
            Assert.True(Math.Abs(results[r] - alone) <= 1e-5f * Math.Max(1f, Math.Abs(alone)), $"{type} {path} row {r}: {results[r]}, alone {alone}");
        }

        Assert.True(float.IsNaN(results[rows]), "wrote past the rows' results");
    }

    public static TheoryData<KernelPath> Paths() => [.. KernelPaths.All];

    public static TheoryData<DType> Types() => [DType.Q8_0, DType.Q4_0, DType.IQ4_NL];

    [Theory]
    [MemberData(nameof(Types))]
    public void The_512_bit_path_without_vnni_passes_the_same_tests(DType type)
    {
        // The 512-bit path's vpmaddubsw kernels (AMD Zen 4's: AVX-512 without AVX-VNNI), whichever this CPU has.
        using (ByteDots.WithoutVnni())
        {
            Integer_dot_with_q8_0_activations_equals_its_definition_on_every_path(KernelPath.Vector512, type);
            Rows_four_at_a_time_equal_one_at_a_time(KernelPath.Vector512, type);
            if (type == DType.Q4_0)
            {
                Q4_0_rows_against_many_tokens_equal_each_token_alone_bit_for_bit(KernelPath.Vector512);
            }
            else if (type == DType.Q8_0)
            {
                Q8_0_rows_against_two_tokens_equal_each_token_alone_bit_for_bit(KernelPath.Vector512);
            }
        }
    }

    [Theory]
    [InlineData(KernelPath.Vector512, false)]
    [InlineData(KernelPath.Vector512, true)]
    [InlineData(KernelPath.Vector256, false)]
    [InlineData(KernelPath.Vector256, true)]
    public void Q8_0_rows_in_pairs_give_each_row_its_own_sum_bit_for_bit(KernelPath path, bool withoutVnni)
    {
        // RowsApart' order (rows half the range apart, two pairs a pass) against row by row: counts with whole passes only,
        // a pair left over, an odd row left over, and both; five blocks (two pairs of blocks and one left over).
        const int blocks = 5;
        using IDisposable? pairSums = withoutVnni ? ByteDots.WithoutVnni() : null;
        foreach (int rows in new[] { 1, 2, 4, 6, 9, 11 })
        {
            byte[] matrix = RandomRows(DType.Q8_0, rows * blocks, 600 + rows);
            float[] x = KernelData.Floats(blocks * 32, rows, scale: 2f);
            var q8 = new Q8Activations();
            q8.Quantize(x, 1, x.Length, path);
            float[] paired = Enumerable.Repeat(float.NaN, rows + 1).ToArray(), alone = new float[rows];
            using (RowsApart.Assume(true))
            {
                Q8IntegerKernel.DotRows(path, DType.Q8_0, matrix, rows, q8.Row(0), paired);
            }

            using (RowsApart.Assume(false))
            {
                Q8IntegerKernel.DotRows(path, DType.Q8_0, matrix, rows, q8.Row(0), alone);
            }

            for (int r = 0; r < rows; r++)
            {
                Assert.True(BitConverter.SingleToInt32Bits(alone[r]) == BitConverter.SingleToInt32Bits(paired[r]), $"{path}, {rows} rows: row {r} paired {paired[r]}, alone {alone[r]}");
            }

            Assert.True(float.IsNaN(paired[rows]), $"{rows} rows: wrote past the rows' results");
        }
    }

    [Fact]
    public void Q4_0_with_vnni_equals_the_pair_sums_kernel_bit_for_bit()
    {
        // With vpdpbusd the high nibbles are multiplied in place (16 × their value) and the upper lanes scaled back at the
        // row's end, which must leave every sum as the shift-and-mask kernel's. (Where the CPU has no AVX-VNNI both runs
        // take the same kernel.)
        const int rows = 13, blocks = 28;
        byte[] matrix = RandomRows(DType.Q4_0, rows * blocks, 31);
        float[] x = KernelData.Floats(blocks * 32, 9, scale: 3f);
        var q8 = new Q8Activations();
        q8.Quantize(x, 2, x.Length / 2, KernelPath.Vector512);
        var vnni = new float[3 * rows];
        var pairs = new float[3 * rows];
        Q8IntegerKernel.DotRows(KernelPath.Vector512, DType.Q4_0, matrix, rows, q8.Row(0), vnni);
        Q8IntegerKernel.GemmRows(KernelPath.Vector512, matrix, rows, q8, 2, vnni.AsSpan(rows), rows);
        using (ByteDots.WithoutVnni())
        {
            Q8IntegerKernel.DotRows(KernelPath.Vector512, DType.Q4_0, matrix, rows, q8.Row(0), pairs);
            Q8IntegerKernel.GemmRows(KernelPath.Vector512, matrix, rows, q8, 2, pairs.AsSpan(rows), rows);
        }

        for (int r = 0; r < 3 * rows; r++)
        {
            Assert.True(BitConverter.SingleToInt32Bits(vnni[r]) == BitConverter.SingleToInt32Bits(pairs[r]), $"result {r}: {vnni[r]} with VNNI, {pairs[r]} with pair sums");
        }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void Q4_0_rows_against_many_tokens_equal_each_token_alone_bit_for_bit(KernelPath path)
    {
        // 69 rows (quarters of 17: a block of 16 rows and one more; then one row left over) of three blocks, against 1, 2, 5 and 8 tokens (pairs
        // and one left over), written into a strided result with NaN between: each token's sums are DotRows' for that token.
        const int rows = 69, blocks = 3, stride = rows + 2;
        byte[] matrix = RandomRows(DType.Q4_0, rows * blocks, 123);
        foreach (int tokens in new[] { 1, 2, 5, 8 })
        {
            float[] x = KernelData.Floats(tokens * blocks * 32, 40 + tokens, scale: 2f);
            var q8 = new Q8Activations();
            q8.Quantize(x, tokens, blocks * 32, path);
            float[] y = Enumerable.Repeat(float.NaN, tokens * stride).ToArray();

            Q8IntegerKernel.GemmRows(path, matrix, rows, q8, tokens, y, stride);

            var alone = new float[rows];
            for (int t = 0; t < tokens; t++)
            {
                Q8IntegerKernel.DotRows(path, DType.Q4_0, matrix, rows, q8.Row(t), alone);
                for (int r = 0; r < rows; r++)
                {
                    Assert.True(BitConverter.SingleToInt32Bits(alone[r]) == BitConverter.SingleToInt32Bits(y[(t * stride) + r]),
                        $"{path}, {tokens} tokens: token {t} row {r} is {y[(t * stride) + r]}, alone {alone[r]}");
                }

                Assert.True(float.IsNaN(y[(t * stride) + rows]) && float.IsNaN(y[(t * stride) + rows + 1]), $"{path}: wrote past token {t}'s rows");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void Q8_0_rows_against_two_tokens_equal_each_token_alone_bit_for_bit(KernelPath path)
    {
        // Seven rows (a group of four, then three alone) of five blocks (two pairs and one left over), a token with a block
        // of zeros: each token's sums are DotRows' for that token.
        const int rows = 7, blocks = 5;
        byte[] matrix = RandomRows(DType.Q8_0, rows * blocks, 321);
        float[] x = KernelData.Floats(2 * blocks * 32, 77, scale: 2f);
        x.AsSpan(32, 32).Clear();
        var q8 = new Q8Activations();
        q8.Quantize(x, 2, blocks * 32, path);
        float[] first = Enumerable.Repeat(float.NaN, rows + 1).ToArray(), second = Enumerable.Repeat(float.NaN, rows + 1).ToArray();

        Q8IntegerKernel.DotRowsTwoTokens(path, matrix, rows, q8.Row(0), q8.Row(1), first, second);

        var alone = new float[rows];
        foreach ((int t, float[] together) in new[] { (0, first), (1, second) })
        {
            Q8IntegerKernel.DotRows(path, DType.Q8_0, matrix, rows, q8.Row(t), alone);
            for (int r = 0; r < rows; r++)
            {
                Assert.True(BitConverter.SingleToInt32Bits(alone[r]) == BitConverter.SingleToInt32Bits(together[r]), $"{path}: token {t} row {r} is {together[r]}, alone {alone[r]}");
            }

            Assert.True(float.IsNaN(together[rows]), $"{path}: wrote past token {t}'s rows");
        }
    }

    [Theory]
    [MemberData(nameof(PathsAndTypes))]
    public void Integer_dot_at_the_extreme_codes_does_not_saturate(KernelPath path, DType type)
    {
        // Q8_0 codes of -128 (|w| = 128 as an unsigned byte) and Q4_0's nibble 0 (code -8), against activations at ±127:
        // the pair sums 128 × 127 × 2 still fit 16 bits.
        // Q4_0's nibble 15 (code 7) too, which VNNI multiplies as 240 in the high half.
        foreach ((byte fill, float sign) in new[] { ((byte)0x80, 1f), ((byte)0x80, -1f), ((byte)0x00, 1f), ((byte)0x00, -1f), ((byte)0xFF, 1f), ((byte)0xFF, -1f) })
        {
            if ((type == DType.Q8_0) != (fill == 0x80))
            {
                continue;
            }

            byte[] row = new byte[DTypes.BlockBytes(type)];
            BitConverter.TryWriteBytes(row, HalfBits.FromSingle(1f));
            row.AsSpan(2).Fill(fill);
            var q8 = new Q8Activations();
            q8.Quantize(Enumerable.Repeat(sign, 32).ToArray(), 1, 32, path);
            double expected = Expected(type, row, q8.Row(0), out _);
            float actual = Q8IntegerKernel.Dot(path, type, row, q8.Row(0));
            Assert.True(Math.Abs(actual - expected) <= 1e-6 * Math.Abs(expected), $"{type} {path} sign {sign}: {actual}, expected {expected}");
        }
    }

    [Theory]
    [InlineData(KernelPath.Scalar)]
    [InlineData(KernelPath.Vector256)]
    public void Activations_quantize_as_ggml_quantize_row_q8_0(KernelPath path)
    {
        // d = max|x| / 127; codes x / d rounded, ties to even (ggml's x86 code); a block of zeros is d = 0, codes 0.
        var x = new float[64];
        x[0] = -2.54f;   // the largest magnitude: d = 0.02, code -127
        x[1] = 1.27f;    // 63.5 -> 64 (ties to even)
        x[2] = 0.05f;    // 2.5 -> 2 (ties to even)
        x[3] = -0.03f;   // -1.5 -> -2
        var q8 = new Q8Activations();
        q8.Quantize(x, 2, 32, path);
        Q8Row first = q8.Row(0), second = q8.Row(1);
        Assert.Equal(0.02f, first.Scales[0], 1e-7f);
        Assert.Equal(new sbyte[] { -127, 64, 2, -2, 0 }, first.Codes[..5].ToArray());
        Assert.Equal(-8 * (-127 + 64 + 2 - 2), first.Offsets[0]);    // Q4_0's offset: -8 × the sum of codes 0-3
        Assert.Equal(0, first.Offsets[1]);
        Assert.Equal(0f, second.Scales[0]);
        Assert.All(second.Codes.ToArray(), c => Assert.Equal(0, c));
    }

    [Fact]
    public void Vector_activations_equal_the_scalar_reference()
    {
        float[] x = KernelData.Floats(40 * 32, 3, scale: 5f);
        var scalar = new Q8Activations();
        var vector = new Q8Activations();
        scalar.Quantize(x, 4, x.Length / 4, KernelPath.Scalar);
        vector.Quantize(x, 4, x.Length / 4, KernelPath.Vector256);
        for (int t = 0; t < 4; t++)
        {
            Assert.Equal(scalar.Row(t).Codes.ToArray(), vector.Row(t).Codes.ToArray());
            Assert.Equal(scalar.Row(t).Scales.ToArray(), vector.Row(t).Scales.ToArray());
            Assert.Equal(scalar.Row(t).Offsets.ToArray(), vector.Row(t).Offsets.ToArray());
        }
    }

    [Fact]
    public void Q4_0_quantizes_as_llama_cpp_quantize_row_q4_0_ref()
    {
        // The largest magnitude (the first, sign kept) is -4: d = -4 / -8 = 0.5, so codes are x / 0.5 + 8.5 truncated,
        // at most 15 (a block of zeros: d = -0, codes 8): -4 -> 0, 3.9 -> 16.3 -> 15 (the top is clipped), 0.26 -> 9.02 -> 9, -0.74 -> 7.02 -> 7, 0 -> 8.
        var x = new float[32];
        x[0] = -4f;
        x[1] = 3.9f;
        x[16] = 0.26f;
        x[17] = -0.74f;
        x[20] = 4f;       // as large as x[0] but later: x[0] stays the maximum
        var block = new byte[18];
        LegacyQuantBlocks.QuantizeQ4_0(x, block);
        Assert.Equal(HalfBits.FromSingle(0.5f), BitConverter.ToUInt16(block));
        Assert.Equal(0 | (9 << 4), block[2]);       // values 0 and 16
        Assert.Equal(15 | (7 << 4), block[3]);      // values 1 and 17
        Assert.Equal(8 | (15 << 4), block[6]);      // values 4 and 20: 4 / 0.5 + 8.5 = 16.5 -> 15
        Assert.Equal(8 | (8 << 4), block[10]);      // zeros

        var zeros = new byte[18];
        LegacyQuantBlocks.QuantizeQ4_0(new float[32], zeros);
        Assert.Equal(0x8000, BitConverter.ToUInt16(zeros));    // 0 / -8 is -0, as in C
        Assert.All(zeros[2..], b => Assert.Equal(0x88, b));
    }
}
