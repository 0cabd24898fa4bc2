using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;
using QwenSharp.Numerics;

namespace QwenSharp.Tests.Kernels;

/// <summary>The Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and IQ4_XS integer dot products on every kernel path against the format's dequantization (KQuantBlocks,
/// Iq4XsBlocks: tested bit for bit against llama.cpp in GgmlDequantizeTests) and the Q8_K activations, dotted in double.</summary>
public sealed class KQuantKernelTests
{
    public static TheoryData<KernelPath, DType> PathsAndTypes()
    {
        var data = new TheoryData<KernelPath, DType>();
        foreach (KernelPath path in KernelPaths.All)
        {
            data.Add(path, DType.Q4_K);
            data.Add(path, DType.Q5_K);
            data.Add(path, DType.Q6_K);
            data.Add(path, DType.IQ4_XS);
            data.Add(path, DType.Q2_K);
            data.Add(path, DType.Q3_K);
        }

        return data;
    }

    /// <summary>Random super-blocks: every code, scale and min byte random, the f16 scales small and of both signs.</summary>
    internal static byte[] RandomRow(DType type, int blocks, int seed)
    {
        var random = new Random(seed);
        int size = DTypes.BlockBytes(type);
        var row = new byte[blocks * size];
        random.NextBytes(row);
        for (int b = 0; b < blocks; b++)
        {
            Span<byte> block = row.AsSpan(b * size, size);
            ushort Scale() => HalfBits.FromSingle((float)((random.NextDouble() - 0.3) * 0.01));
            if (type is DType.Q4_K or DType.Q5_K)
            {
                BitConverter.TryWriteBytes(block, Scale());
                BitConverter.TryWriteBytes(block[2..], Scale());
            }
            else if (type == DType.IQ4_XS)
            {
                BitConverter.TryWriteBytes(block, Scale());
            }
            else if (type == DType.Q2_K)
            {
                BitConverter.TryWriteBytes(block[80..], Scale());
                BitConverter.TryWriteBytes(block[82..], Scale());
            }
            else if (type == DType.Q3_K)
            {
                BitConverter.TryWriteBytes(block[108..], Scale());
            }
            else
            {
                BitConverter.TryWriteBytes(block[208..], Scale());
            }
        }

        return row;
    }

    [Theory]
    [MemberData(nameof(PathsAndTypes))]
    public void Integer_dot_with_q8_k_activations_equals_its_definition_on_every_path(KernelPath path, DType type)
    {
        foreach (int blocks in new[] { 1, 3 })
        {
            byte[] row = RandomRow(type, blocks, (blocks * 17) + (int)type);
            float[] x = KernelData.Floats(blocks * 256, blocks + 100, scale: 3f);
            x[5] = 0;
            var q8 = new Q8KActivations();
            q8.Quantize(x, 1, x.Length);
            Q8KRow activations = q8.Row(0);
            ReadOnlySpan<sbyte> codes = activations.Codes;
            ReadOnlySpan<float> scales = activations.Scales;

            float actual = KQuantIntegerKernel.Dot(path, type, row, activations);

            // The definition: the weights dequantized, the activations as d × code, dotted in double.
            var w = new float[x.Length];
            QuantizedRows.Dequantize(KernelPath.Scalar, type, row, w);
            double expected = 0, magnitude = 0;
            for (int i = 0; i < x.Length; i++)
            {
                double a = (double)scales[i / 256] * codes[i];
                expected += w[i] * a;
                magnitude += Math.Abs(w[i] * a);
            }

            Assert.True(Math.Abs(actual - expected) <= 1e-5 * magnitude, $"{type} {path}, {blocks} blocks: {actual}, expected {expected}");

            // And close to the f32 product: the activations' 8-bit rounding is the only difference.
            double exact = 0;
            for (int i = 0; i < x.Length; i++)
            {
                exact += (double)w[i] * x[i];
            }

            Assert.True(Math.Abs(actual - exact) <= 2e-2 * magnitude, $"{type} {path}: {actual} against the f32 activations' {exact}");
        }
    }

    [Theory]
    [MemberData(nameof(PathsAndTypes))]
    public void Rows_four_at_a_time_equal_one_at_a_time(KernelPath path, DType type)
    {
        // Seven rows: one group of four (their sums shared in vhaddps) and three alone.
        const int rows = 7, blocks = 2;
        (byte[] matrix, Q8KActivations q8) = RandomProduct(type, rows, blocks, 31, 9);
        var results = new float[rows];
        KQuantIntegerKernel.DotRows(path, type, matrix, rows, q8.Row(0), results);
        int rowBytes = blocks * DTypes.BlockBytes(type);
        for (int r = 0; r < rows; r++)
        {
            float alone = KQuantIntegerKernel.Dot(path, type, matrix.AsSpan(r * rowBytes, rowBytes), q8.Row(0));
            Assert.True(Math.Abs(results[r] - alone) <= 1e-5f * Math.Max(1f, Math.Abs(alone)), $"{type} {path} row {r}: {results[r]}, alone {alone}");
        }
    }

    public static TheoryData<DType> Types() => [DType.Q4_K, DType.Q5_K, DType.Q6_K, DType.IQ4_XS, DType.Q2_K, DType.Q3_K];

    /// <summary><paramref name="rows"/> random rows of <paramref name="blocks"/> super-blocks and one token's Q8_K activations.</summary>
    private static (byte[] Matrix, Q8KActivations Q8) RandomProduct(DType type, int rows, int blocks, int matrixSeed, int activationSeed)
    {
        byte[] matrix = RandomRow(type, rows * blocks, matrixSeed);
        float[] x = KernelData.Floats(blocks * 256, activationSeed, scale: 2f);
        var q8 = new Q8KActivations();
        q8.Quantize(x, 1, x.Length);
        return (matrix, q8);
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void The_512_bit_path_with_and_without_64_byte_products_passes_the_same_tests(DType type)
    {
        // Both of VectorUnits' answers on this machine (the hardware permitting): Zen 5's 64-byte kernels and the others' 32-byte ones.
        foreach (bool doubleRate in new[] { true, false })
        {
            using (VectorUnits.Assume(doubleRate))
            {
                Integer_dot_with_q8_k_activations_equals_its_definition_on_every_path(KernelPath.Vector512, type);
                Rows_four_at_a_time_equal_one_at_a_time(KernelPath.Vector512, type);
                Integer_dot_at_the_largest_codes_and_scales_does_not_saturate(KernelPath.Vector512, type);
            }
        }
    }

    [Theory]
    [InlineData(DType.Q4_K)]
    [InlineData(DType.Q5_K)]
    [InlineData(DType.Q6_K)]
    public void The_64_byte_kernels_give_the_32_byte_kernels_sums_bit_for_bit(DType type)
    {
        // The 64-byte kernel's 32-bit lanes hold the 32-byte kernel's integers, so the float work is the same.
        const int rows = 9;
        (byte[] matrix, Q8KActivations q8) = RandomProduct(type, rows, 3, 41, 5);
        var wide = new float[rows];
        var narrow = new float[rows];
        using (VectorUnits.Assume(true))
        {
            KQuantIntegerKernel.DotRows(KernelPath.Vector512, type, matrix, rows, q8.Row(0), wide);
        }

        using (VectorUnits.Assume(false))
        {
            KQuantIntegerKernel.DotRows(KernelPath.Vector512, type, matrix, rows, q8.Row(0), narrow);
        }

        Assert.Equal(narrow.Select(BitConverter.SingleToInt32Bits), wide.Select(BitConverter.SingleToInt32Bits));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Iq4_xs_with_scales_by_shifts_or_bit_deposits_passes_the_same_tests(bool deposit)
    {
        // The 32-byte kernel's two ways to unpack the scales (pdep where it is fast, shifts on AMD before Zen 3), on every
        // vector path, whichever this CPU would take.
        using (KQuantIntegerKernel.AssumeScaleDeposit(deposit))
        using (VectorUnits.Assume(false))
        {
            foreach (KernelPath path in KernelPaths.All.Where(p => p != KernelPath.Scalar))
            {
                Integer_dot_with_q8_k_activations_equals_its_definition_on_every_path(path, DType.IQ4_XS);
                Rows_four_at_a_time_equal_one_at_a_time(path, DType.IQ4_XS);
                Integer_dot_at_the_largest_codes_and_scales_does_not_saturate(path, DType.IQ4_XS);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Types))]
    public void The_512_bit_path_without_vnni_passes_the_same_tests(DType type)
    {
        // The 512-bit path's kernels without vpdpwssd (AMD Zen 4's: AVX-512 and GFNI without AVX-VNNI, 512-bit multiplies at
        // the 256-bit rate), whichever this CPU has.
        using (ByteDots.WithoutVnni())
        using (VectorUnits.Assume(false))
        {
            Integer_dot_with_q8_k_activations_equals_its_definition_on_every_path(KernelPath.Vector512, type);
            Rows_four_at_a_time_equal_one_at_a_time(KernelPath.Vector512, type);
            Integer_dot_at_the_largest_codes_and_scales_does_not_saturate(KernelPath.Vector512, type);
        }
    }

    [Theory]
    [MemberData(nameof(PathsAndTypes))]
    public void Integer_dot_at_the_largest_codes_and_scales_does_not_saturate(KernelPath path, DType type)
    {
        // Every code, scale and min at its largest (0xFF bytes), activations all at ±127: the 16-bit pair sums
        // (15 or 63 × 127 × 2) and the 32-bit weighted sums must hold them exactly. IQ4_XS at its largest magnitudes: every
        // index 0 (-127, pairs of 127 × 127 × 2) under every scale 0 (ls - 32 = -32).
        byte[] row = new byte[DTypes.BlockBytes(type)];
        row.AsSpan().Fill(type == DType.IQ4_XS ? (byte)0 : (byte)0xFF);
        ushort one = HalfBits.FromSingle(1f);
        if (type == DType.IQ4_XS)
        {
            BitConverter.TryWriteBytes(row, one);
        }
        else if (type == DType.Q3_K)
        {
            BitConverter.TryWriteBytes(row.AsSpan(108), one);    // d; codes (3: every high bit set) and scales (63 - 32) at their largest
        }
        else if (type == DType.Q2_K)
        {
            BitConverter.TryWriteBytes(row.AsSpan(80), one);    // d; scales, mins (15) and codes (3) at their largest
            BitConverter.TryWriteBytes(row.AsSpan(82), one);    // dmin
        }
        else if (type is DType.Q4_K or DType.Q5_K)
        {
            BitConverter.TryWriteBytes(row, one);
            BitConverter.TryWriteBytes(row.AsSpan(2), one);
        }
        else
        {
            row.AsSpan(192, 16).Fill(0x7F);    // the largest signed scale
            BitConverter.TryWriteBytes(row.AsSpan(208), one);
        }

        foreach (float sign in new[] { 1f, -1f })
        {
            float[] x = Enumerable.Repeat(sign, 256).ToArray();
            var q8 = new Q8KActivations();
            q8.Quantize(x, 1, 256);
            var w = new float[256];
            QuantizedRows.Dequantize(KernelPath.Scalar, type, row, w);
            double expected = 0;
            for (int i = 0; i < 256; i++)
            {
                expected += (double)w[i] * q8.Row(0).Scales[0] * q8.Row(0).Codes[i];
            }

            float actual = KQuantIntegerKernel.Dot(path, type, row, q8.Row(0));
            Assert.True(Math.Abs(actual - expected) <= 1e-6 * Math.Abs(expected), $"{type} {path} sign {sign}: {actual}, expected {expected}");
        }
    }

    [Theory]
    [InlineData(KernelPath.Scalar)]
    [InlineData(KernelPath.Vector256)]
    public void Q8_k_quantization_follows_ggml(KernelPath path)
    {
        // The largest magnitude maps to -127 (ggml divides by the signed maximum), ties round to even, and the sums of 16 add the codes.
        var x = new float[512];
        x[0] = 2.54f;     // the maximum: code -127, d = 2.54 / -127 = -0.02
        x[1] = -1.27f;    // -1.27 / -0.02 = 63.5 -> 64 (ties to even)
        x[2] = 0.01f;     // 0.01 / -0.02 = -0.5 -> -0 (ties to even)
        x[17] = -0.03f;   // 1.5 -> 2
        x[9] = -2.54f;    // as large as x[0] but later: ggml keeps the first, so d stays negative

        // The second block: the first largest magnitude is negative, so the scale is positive; an all-zero third block would
        // be all zero codes with scale 0 (tested by the first theory's zero value).
        x[256 + 3] = -4f;
        x[256 + 200] = 4f;
        x[256 + 4] = 1f;
        var q8 = new Q8KActivations();
        q8.Quantize(x, 1, 512, path);
        Q8KRow row = q8.Row(0);
        Assert.Equal(-0.02f, row.Scales[0], 1e-7f);
        Assert.Equal(new sbyte[] { -127, 64, 0 }, row.Codes[..3].ToArray());
        Assert.Equal(127, row.Codes[9]);
        Assert.Equal(2, row.Codes[17]);
        Assert.Equal(-127 + 64 + 127, row.GroupSums[0]);
        Assert.Equal(2, row.GroupSums[1]);
        Assert.Equal(-127 + 64 + 127 + 2, row.SubBlockSums[0]);
        Assert.Equal(4f / 127, row.Scales[1], 1e-7f);
        Assert.Equal(new sbyte[] { -127, 32 }, row.Codes.Slice(256 + 3, 2).ToArray());   // 1 / (4 / 127) = 31.75 -> 32
        Assert.Equal(127, row.Codes[256 + 200]);
    }

    [Fact]
    public void Q8_k_vector_quantization_equals_the_scalar_reference()
    {
        float[] x = KernelData.Floats(8 * 256, 5, scale: 4f);
        x[300] = 0;
        x.AsSpan(512, 256).Clear();    // an all-zero block
        var scalar = new Q8KActivations();
        var vector = new Q8KActivations();
        scalar.Quantize(x, 2, x.Length / 2, KernelPath.Scalar);
        vector.Quantize(x, 2, x.Length / 2, KernelPath.Vector256);
        for (int t = 0; t < 2; t++)
        {
            Assert.Equal(scalar.Row(t).Codes.ToArray(), vector.Row(t).Codes.ToArray());
            Assert.Equal(scalar.Row(t).Scales.ToArray(), vector.Row(t).Scales.ToArray());
            Assert.Equal(scalar.Row(t).GroupSums.ToArray(), vector.Row(t).GroupSums.ToArray());
            Assert.Equal(scalar.Row(t).SubBlockSums.ToArray(), vector.Row(t).SubBlockSums.ToArray());
        }
    }

    [Theory]
    [InlineData(DType.Q4_0)]
    [InlineData(DType.Q4_K)]
    [InlineData(DType.Q5_K)]
    [InlineData(DType.Q6_K)]
    public void Vector_dequantization_equals_the_reference_bit_for_bit(DType type)
    {
        // Random blocks (every code and packed scale byte random, small f16 scales of both signs, one scale 0), each path
        // against the format's reference (tested against llama.cpp's dequantizer in GgmlDequantizeTests).
        int blocks = type == DType.Q4_0 ? 56 : 7;
        byte[] row = type == DType.Q4_0 ? Q8IntegerKernelTests.RandomRows(type, blocks, 9) : RandomRow(type, blocks, 5);
        if (type == DType.Q4_0)
        {
            row[3 * 18] = row[(3 * 18) + 1] = 0;    // a block with scale 0
        }

        var reference = new float[blocks * DTypes.BlockValues(type)];
        QuantizedRows.Dequantize(KernelPath.Scalar, type, row, reference);
        foreach (KernelPath path in new[] { KernelPath.Vector256, KernelPath.Vector512 })
        {
            var values = new float[reference.Length];
            QuantizedRows.Dequantize(path, type, row, values);
            for (int i = 0; i < values.Length; i++)
            {
                Assert.True(BitConverter.SingleToInt32Bits(values[i]) == BitConverter.SingleToInt32Bits(reference[i]), $"{type} {path} value {i}: {values[i]}, reference {reference[i]}");
            }
        }
    }
}
