using System.Runtime.Intrinsics.X86;
using QwenSharp.Backend;
using QwenSharp.Cpu;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;
using QwenSharp.Numerics;
using static QwenSharp.Tests.Backend.BackendConformanceTests;

namespace QwenSharp.Tests.Kernels;

/// <summary>
/// Q4_K's and Q5_K's paired rows (<see cref="PairedNibbleRows"/>): the layout against the format's dequantization, and the paired
/// kernel against the definition (the weights dequantized, the Q8_K activations dotted in double), on every AVX2 path.
/// </summary>
public sealed class PairedNibbleRowsTests
{
    public static TheoryData<DType, bool> TypesAndScales() => new() { { DType.Q4_K, false }, { DType.Q4_K, true }, { DType.Q5_K, false }, { DType.Q5_K, true } };

    [SkippableTheory]
    [MemberData(nameof(TypesAndScales))]
    public void Each_paired_code_meets_the_activation_of_its_own_value(DType type, bool depositScales)
    {
        Skip.If(depositScales && !Bmi2.X64.IsSupported, "deposited scales are read with pdep");
        // Read the paired layout as the class describes it, each code with the paired activation beside it: Σ per sub-block
        // of code × activation must equal the stored row's, and the codes must be the stored ones, each once.
        const int blocks = 2;
        int blockBytes = DTypes.BlockBytes(type);
        byte[] stored = KQuantKernelTests.RandomRow(type, blocks, 5);
        var paired = new byte[stored.Length];
        PairedNibbleRows.Repack(type, stored, paired, depositScales);
        sbyte[] codes = [.. Enumerable.Range(0, blocks * 256).Select(i => (sbyte)((i * 37 % 251) - 125))];
        var pairedCodes = new sbyte[codes.Length];
        PairedNibbleRows.PairActivations(codes, pairedCodes);

        var storedCodes = new List<int>();
        var pairedCodeList = new List<int>();
        for (int b = 0; b < blocks; b++)
        {
            Span<byte> storedBlock = stored.AsSpan(b * blockBytes, blockBytes), pairedBlock = paired.AsSpan(b * blockBytes, blockBytes);
            Assert.True(storedBlock[..4].SequenceEqual(pairedBlock[..4]), "d and dmin move unchanged");
            (ulong Scales, ulong Mins) expectedScales = KQuantIntegerKernel.UnpackScalesAndMins(ref storedBlock[4]);
            if (depositScales)
            {
                // Read back as the kernel reads them: the scales and mins the stored packing holds, each 0..63.
                Assert.Equal(expectedScales, PairedNibbleRows.DepositedScalesAndMins(ref pairedBlock[4]));
            }
            else
            {
                Assert.True(storedBlock[4..16].SequenceEqual(pairedBlock[4..16]), "scales and mins move unchanged");
            }
            for (int c = 0; c < 4; c++)
            {
                long[] expected = new long[2], actual = new long[2];
                for (int k = 0; k < 32; k++)
                {
                    // As stored: byte k of chunk c holds value k of sub-block 2c (low nibble; Q5_K's fifth bit: bit 2c of
                    // qh byte k) and of 2c + 1 (high nibble; bit 2c + 1).
                    (int low, int high) = Codes(type, storedBlock, c, k);
                    expected[0] += low * codes[(b * 256) + (64 * c) + k];
                    expected[1] += high * codes[(b * 256) + (64 * c) + 32 + k];
                    storedCodes.Add(low);
                    storedCodes.Add(high);

                    // Paired: the same bits, but 32-bit lane l of the chunk is sub-block 2c + (l odd), its low codes meeting
                    // the chunk's first 32 paired activations, its high codes the next 32, byte for byte.
                    (low, high) = Codes(type, pairedBlock, c, k);
                    actual[k / 4 % 2] += (low * pairedCodes[(b * 256) + (64 * c) + k]) + (high * pairedCodes[(b * 256) + (64 * c) + 32 + k]);
                    pairedCodeList.Add(low);
                    pairedCodeList.Add(high);
                }

                Assert.Equal(expected, actual);
            }
        }

        Assert.Equal(storedCodes.Order(), pairedCodeList.Order());
        Assert.Equal(codes.Order(), pairedCodes.Order());
    }

    /// <summary>The low and the high code of byte <paramref name="k"/> of chunk <paramref name="c"/> of a super-block, read as stored.</summary>
    private static (int Low, int High) Codes(DType type, ReadOnlySpan<byte> block, int c, int k)
    {
        bool fifth = type == DType.Q5_K;
        byte both = block[(fifth ? 48 : 16) + (32 * c) + k];
        int qh = fifth ? block[16 + k] : 0;
        return ((both & 0xF) | (((qh >> (2 * c)) & 1) << 4), (both >> 4) | (((qh >> ((2 * c) + 1)) & 1) << 4));
    }

    public static TheoryData<KernelPath, DType, bool> PathsTypesAndScales()
    {
        var data = new TheoryData<KernelPath, DType, bool>();
        foreach (KernelPath path in KernelPaths.All.Where(p => p != KernelPath.Scalar))
        {
            foreach (DType type in new[] { DType.Q4_K, DType.Q5_K })
            {
                data.Add(path, type, false);
                data.Add(path, type, true);
            }
        }

        return data;
    }

    public static TheoryData<KernelPath, DType> PathsAndTypes()
    {
        var data = new TheoryData<KernelPath, DType>();
        foreach (KernelPath path in KernelPaths.All.Where(p => p != KernelPath.Scalar))
        {
            data.Add(path, DType.Q4_K);
            data.Add(path, DType.Q5_K);
        }

        return data;
    }

    [SkippableTheory]
    [MemberData(nameof(PathsTypesAndScales))]
    public void Paired_rows_against_paired_codes_equal_the_definition(KernelPath path, DType type, bool depositScales)
    {
        PairedLayout layout = depositScales ? PairedLayout.DepositedScales : PairedLayout.StoredScales;
        Skip.IfNot(Avx2.IsSupported && Fma.IsSupported, "the paired kernel is AVX2's; a CPU without it never pairs (Pays says no)");
        Skip.If(layout == PairedLayout.DepositedScales && !Bmi2.X64.IsSupported, "deposited scales are read with pdep");

        // Seven rows (a group of four and three alone) of three super-blocks, and the largest codes and scales.
        const int rows = 7, blocks = 3;
        byte[] stored = KQuantKernelTests.RandomRow(type, rows * blocks, 41);
        stored.AsSpan(0, DTypes.BlockBytes(type)).Fill(0xFF);
        BitConverter.TryWriteBytes(stored, HalfBits.FromSingle(1f));
        BitConverter.TryWriteBytes(stored.AsSpan(2), HalfBits.FromSingle(1f));
        var paired = new byte[stored.Length];
        PairedNibbleRows.Repack(type, stored, paired, layout == PairedLayout.DepositedScales);
        float[] x = KernelData.Floats(blocks * 256, 7, scale: 2f);
        x.AsSpan(0, 256).Fill(-1f);    // every code at -127 against the first row's largest codes
        var q8 = new Q8KActivations();
        q8.Quantize(x, 1, x.Length);
        q8.PairCodes();
        Q8KRow activations = q8.Row(0);

        var results = new float[rows];
        KQuantIntegerKernel.DotRows(path, type, paired, rows, activations, results, layout);

        int rowBytes = blocks * DTypes.BlockBytes(type);
        for (int r = 0; r < rows; r++)
        {
            var w = new float[blocks * 256];
            QuantizedRows.Dequantize(KernelPath.Scalar, type, stored.AsSpan(r * rowBytes, rowBytes), w);
            double expected = 0, magnitude = 0;
            for (int i = 0; i < w.Length; i++)
            {
                double a = (double)activations.Scales[i / 256] * activations.Codes[i];
                expected += w[i] * a;
                magnitude += Math.Abs(w[i] * a);
            }

            Assert.True(Math.Abs(results[r] - expected) <= 1e-5 * magnitude, $"{type} {path} {layout} row {r}: {results[r]}, expected {expected}");
        }
    }

    [Fact]
    public void Paired_rows_need_paired_codes()
    {
        if (!Avx2.IsSupported || !Fma.IsSupported)
        {
            return;
        }

        byte[] stored = KQuantKernelTests.RandomRow(DType.Q4_K, 1, 3);
        var q8 = new Q8KActivations();
        q8.Quantize(KernelData.Floats(256, 3, scale: 1f), 1, 256);
        var results = new float[1];
        ArgumentException error = Assert.Throws<ArgumentException>(() => KQuantIntegerKernel.DotRows(KernelPath.Vector256, DType.Q4_K, stored, 1, q8.Row(0), results, PairedLayout.StoredScales));
        Assert.Contains("paired activation codes", error.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// The CPU pairs a repacked Q4_K matrix's rows where asked (not on the scalar path), and one token's product then reads
    /// them: within rounding of the stored rows' product, and not bit for bit the same everywhere (so the test sees which
    /// rows were read).
    /// </summary>
    [SkippableTheory]
    [MemberData(nameof(PathsAndTypes))]
    public void One_token_reads_the_paired_rows_where_the_cpu_pairs_them(KernelPath path, DType type)
    {
        Skip.IfNot(Avx2.IsSupported && Fma.IsSupported, "the paired kernel is AVX2's");
        Skip.If(path == KernelPath.Vector512 && !Avx512BW.IsSupported, "no 512-bit path here");
        const int outputs = 64, inputs = 512;
        using var w = new StoredTensor("w", KernelData.Floats(outputs * inputs, 23), type, [outputs, inputs]);
        float[] x = KernelData.Floats(inputs, 24);
        // As stored, then paired with the scales as stored and deposited: the choice is made on this thread at load and kept
        // by the weight, while the workers that multiply take the CPU's own answers.
        var products = new List<float[]>();
        foreach ((bool pairs, bool deposit) in new[] { (false, false), (true, false), (true, true) })
        {
            if (deposit && !Bmi2.X64.IsSupported)
            {
                continue;
            }

            using ThreadOverride<PairedNibbleRows.Switch>.Scope choice = PairedNibbleRows.Assume(pairs);
            using ThreadOverride<KQuantIntegerKernel.ScaleDepositSwitch>.Scope scales = KQuantIntegerKernel.AssumeScaleDeposit(deposit);
            using var backend = new CpuBackend(new CpuBackendOptions { Threads = 2, KernelPath = path });
            using var weight = (CpuWeight)backend.Upload(w.View);
            Assert.Equal(pairs, weight.HasPairedRows);
            Assert.Equal(!pairs ? PairedLayout.None : deposit ? PairedLayout.DepositedScales : PairedLayout.StoredScales, weight.PairedLayout);
            products.Add(QwenSharp.Tests.Backend.BackendConformanceTests.Run(backend, 1, outputs, [(x, inputs)], (a, o) => backend.Linear(a[0], weight, null, o)));
        }

        foreach (float[] pairedProduct in products.Skip(1))
        {
            int differing = 0;
            for (int o = 0; o < outputs; o++)
            {
                float stored = products[0][o], paired = pairedProduct[o];
                Assert.True(Math.Abs(paired - stored) <= 1e-4 * (Math.Abs(stored) + 1), $"{type} {path} output {o}: paired {paired}, stored {stored}");
                differing += paired.Equals(stored) ? 0 : 1;
            }

            Assert.True(differing > 0, $"{type} {path}: the paired rows gave every sum the stored rows' bits; were they read?");
        }

        if (products.Count == 3)
        {
            // The scales' encoding changes no bit: the same integers, the same float operations.
            Assert.Equal(products[1], products[2]);
        }

        using (PairedNibbleRows.Assume(true))
        {
            using var scalar = new CpuBackend(new CpuBackendOptions { Threads = 1, KernelPath = KernelPath.Scalar });
            using var weight = (CpuWeight)scalar.Upload(w.View);
            Assert.False(weight.HasPairedRows, "paired for the scalar path, which has no paired kernel");
        }
    }
}
