using QwenSharp.Backend;
using QwenSharp.Cpu;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;
using QwenSharp.Numerics;
using StoredTensor = QwenSharp.Tests.Backend.BackendConformanceTests.StoredTensor;

namespace QwenSharp.Tests.Kernels;

/// <summary>
/// Q8_0 matrices repacked at load (<see cref="Q8_0Panels"/>), against activations padded to a group as a step pads them
/// (<see cref="QuantPanel.PanelTokens"/>): on every path and number of tokens, the same sums bit for bit as packing the rows per
/// step against unpadded activations, as the scalar reference, and within rounding of the dequantized weights dotted in double;
/// nothing written for the padding; which matrices the CPU repacks; and that a batch-invariant backend
/// (<see cref="CpuBackendOptions.BatchInvariant"/>) gives each row its bits alone.
/// </summary>
public sealed class Q8_0PanelsTests
{
    private const int BlockBytes = 34;

    public static TheoryData<KernelPath, int> PathsAndTokens()
    {
        var data = new TheoryData<KernelPath, int>();
        foreach (KernelPath path in KernelPaths.All)
        {
            // Alone; two or three left over after groups of four or eight (padded); one left over (not padded).
            foreach (int tokens in new[] { 1, 2, 3, 5, 6, 7, 8, 13, 14 })
            {
                data.Add(path, tokens);
            }
        }

        return data;
    }

    /// <summary>A panel's rows of random codes (-128 among them) with random small scales and the scales' edge cases.</summary>
    private static byte[] Rows(int cols, int seed)
    {
        var random = new Random(seed);
        var rows = new byte[DTypes.ByteLength(DType.Q8_0, (long)QuantPanel.Rows * cols)];
        random.NextBytes(rows);
        ushort[] edges = [0x0000, 0x8000, 0x0001, 0x03FF, 0x8001, 0x7BFF, 0xFBFF];
        for (int b = 0; b < rows.Length / BlockBytes; b++)
        {
            ushort scale = b % 5 == 0 ? edges[(b / 5) % edges.Length] : HalfBits.FromSingle((float)((random.NextDouble() - 0.3) * 0.01));
            BitConverter.TryWriteBytes(rows.AsSpan(b * BlockBytes), scale);
        }

        return rows;
    }

    [Theory]
    [MemberData(nameof(PathsAndTokens))]
    public void Repacked_products_equal_the_packed_panels_bit_for_bit_and_the_definition(KernelPath path, int tokens)
    {
        const int cols = 384, stride = 19;
        byte[] rows = Rows(cols, 5 + tokens);
        var panel = new byte[Q8_0Panels.PanelBytes(cols)];
        Q8_0Panels.Repack(rows, cols, panel);
        float[] x = KernelData.Floats(tokens * cols, 17 + tokens, scale: 2f);
        x.AsSpan(0, 64).Clear();    // all-zero activation blocks: scale 0
        var plain = new Q8Activations();
        plain.Quantize(x, tokens, cols, path);
        var padded = new Q8Activations();
        padded.Prepare(tokens, cols, QuantPanel.PanelTokens(path, tokens));
        padded.QuantizeRows(x, 0, tokens, path);

        var actual = new float[tokens * stride];
        actual.AsSpan().Fill(float.NaN);
        QuantPanel.MultiplyRepackedQ8_0(path, panel, cols, padded, actual, stride);
        var packed = new float[QuantPanel.PanelFloats(cols)];
        QuantPanel.Pack(path, DType.Q8_0, rows, QuantPanel.Rows, cols, packed);
        var expected = new float[tokens * stride];
        QuantPanel.Multiply(path, DType.Q8_0, packed, QuantPanel.Rows, cols, plain, expected, stride);

        var w = new float[cols];
        for (int r = 0; r < QuantPanel.Rows; r++)
        {
            QuantizedRows.Dequantize(KernelPath.Scalar, DType.Q8_0, rows.AsSpan(r * cols / 32 * BlockBytes, cols / 32 * BlockBytes), w);
            for (int t = 0; t < tokens; t++)
            {
                float y = actual[(t * stride) + r];
                Assert.True(y.Equals(expected[(t * stride) + r]), $"{path} row {r} token {t} of {tokens}: {y}, packed per step {expected[(t * stride) + r]}");
                Q8Row token = plain.Row(t);
                Assert.True(Q8_0Panels.DotRow(panel, cols, r, token.Codes, token.Scales).Equals(y), $"{path} row {r} token {t}: the scalar reference differs");
                double exact = 0, magnitude = 0;
                for (int k = 0; k < cols; k++)
                {
                    double product = w[k] * (double)token.Scales[k / 32] * token.Codes[k];
                    exact += product;
                    magnitude += Math.Abs(product);
                }

                Assert.True(Math.Abs(y - exact) <= 1e-5 * magnitude, $"{path} row {r} token {t}: {y}, expected {exact}");
            }
        }

        for (int i = 0; i < actual.Length; i++)
        {
            Assert.True(i % stride < QuantPanel.Rows || float.IsNaN(actual[i]), $"{path}: wrote past the panel's rows at token {i / stride}, column {i % stride}");
        }
    }

    [Fact]
    public void The_cpu_repacks_q8_0_where_it_multiplies_its_panels_in_integers_and_they_fit()
    {
        KernelPath path = KernelPaths.Default;
        using var backend = new CpuBackend(new CpuBackendOptions { Threads = 1 });
        using var off = new CpuBackend(new CpuBackendOptions { Threads = 1, RepackPanels = false });
        using var scalar = new CpuBackend(new CpuBackendOptions { Threads = 1, KernelPath = KernelPath.Scalar });
        bool Repacks(CpuBackend b, int outputs, int inputs)
        {
            using var w = new StoredTensor("w", KernelData.Floats(outputs * inputs, outputs + inputs), DType.Q8_0, [outputs, inputs]);
            using var weight = (CpuWeight)b.Upload(w.View);
            return weight.Repacked;
        }

        Assert.Equal(QuantPanel.MultipliesInIntegers(path, DType.Q8_0), Repacks(backend, 32, 96));
        Assert.False(Repacks(off, 32, 96), "repacked with RepackPanels off");
        Assert.False(Repacks(backend, 40, 96), "40 rows are not whole panels of 16");
        Assert.False(Repacks(scalar, 32, 96), "repacked for the scalar path, which has no vpdpbusd");
    }

    /// <summary>
    /// A decode step of 2-7 rows through a repacked matrix: a batch-invariant backend (<see cref="CpuBackendOptions.BatchInvariant"/>)
    /// gives every row bit for bit what a step of that row alone gives it; the default takes the panels, whose sums differ in
    /// the last bits somewhere (so the test sees which kernels ran) and stay within rounding of them.
    /// </summary>
    [SkippableTheory]
    [InlineData(DType.Q8_0)]
    [InlineData(DType.Q4_0)]
    [InlineData(DType.Q4_K)]
    [InlineData(DType.Q5_0)]
    [InlineData(DType.Q5_1)]
    public void A_batch_invariant_backend_gives_each_row_its_bits_alone(DType type)
    {
        const int outputs = 64, inputs = 512;
        Skip.If(type == DType.Q8_0 && !QuantPanel.MultipliesInIntegers(KernelPaths.Default, DType.Q8_0), "Q8_0 is repacked only on a CPU with vpdpbusd");
        Skip.If(type is DType.Q5_0 or DType.Q5_1 && !Q5_0Pairs.Pays(KernelPaths.Default), "Q5_0 and Q5_1 go in pairs (their rows) and Q8_0 panels only on a CPU with GFNI and vpdpbusd");
        using var invariant = new CpuBackend(new CpuBackendOptions { Threads = 2, BatchInvariant = true });
        using var fast = new CpuBackend(new CpuBackendOptions { Threads = 2 });
        using var w = new StoredTensor("w", KernelData.Floats(outputs * inputs, 21), type, [outputs, inputs]);
        using DeviceWeight invariantWeight = invariant.Upload(w.View), fastWeight = fast.Upload(w.View);
        Assert.True(((CpuWeight)invariantWeight).Repacked && ((CpuWeight)fastWeight).Repacked);
        // The panels take 2 tokens on (MatMul.RepackedPanelTokens); one token, the rows (as it does but for Q4_0 on AMD Zen).
        using ThreadOverride<PanelDecode.Switch>.Scope storedRows = PanelDecode.Assume(false);
        foreach (int rows in new[] { 2, 3, 4, 7 })
        {
            float[] x = KernelData.Floats(rows * inputs, 40 + rows);
            float[] Product(CpuBackend backend, DeviceWeight weight, float[] input, int count) =>
                QwenSharp.Tests.Backend.BackendConformanceTests.Run(backend, count, outputs, [(input, inputs)], (a, o) => backend.Linear(a[0], weight, null, o));

            float[] asked = Product(invariant, invariantWeight, x, rows), panels = Product(fast, fastWeight, x, rows);
            int differing = 0;
            for (int r = 0; r < rows; r++)
            {
                float[] single = Product(fast, fastWeight, x.AsSpan(r * inputs, inputs).ToArray(), 1);
                for (int o = 0; o < outputs; o++)
                {
                    float y = asked[(r * outputs) + o], p = panels[(r * outputs) + o];
                    Assert.True(y.Equals(single[o]), $"{type}, {rows} rows batch-invariant, row {r} output {o}: {y}, alone {single[o]}");
                    Assert.True(Math.Abs(p - y) <= 1e-4 * (Math.Abs(y) + 1), $"{type}, {rows} rows through the panels, row {r} output {o}: {p}, alone {y}");
                    differing += p.Equals(y) ? 0 : 1;
                }
            }

            Assert.True(differing > 0, $"{type}, {rows} rows: the panels gave every sum's bits alone; did they run?");
        }
    }

    public static TheoryData<KernelPath> VectorPaths() => [KernelPath.Vector256, KernelPath.Vector512];

    /// <summary>
    /// Where one token reads a repacked Q4_0 matrix's panels (<see cref="PanelDecode"/>, AMD Zen and Zen+; forced here, on
    /// each vector path): that token's sums are bit for bit its sums in a step of several through the panels, so every step
    /// gives each row its bits alone, batch-invariant or not; and they differ from the stored rows' in the last bits somewhere
    /// (so the test sees the panels ran) and stay within rounding of them.
    /// </summary>

    [SkippableTheory]
    [MemberData(nameof(VectorPaths))]
    public void Where_one_token_reads_the_Q4_0_panels_every_step_gives_each_row_its_bits_alone(KernelPath path)
    {
        const int outputs = 64, inputs = 512;
        using (PanelDecode.Assume(true))
        {
            Skip.IfNot(PanelDecode.Pays(path, DType.Q4_0), $"one token reads the panels on the vector paths only (AVX2 and FMA)");
        }

        using var invariant = new CpuBackend(new CpuBackendOptions { KernelPath = path, Threads = 2, BatchInvariant = true });
        using var fast = new CpuBackend(new CpuBackendOptions { KernelPath = path, Threads = 2 });
        using var w = new StoredTensor("w", KernelData.Floats(outputs * inputs, 23), DType.Q4_0, [outputs, inputs]);
        using DeviceWeight invariantWeight = invariant.Upload(w.View), fastWeight = fast.Upload(w.View);
        float[] Product(CpuBackend backend, DeviceWeight weight, float[] input, int count) =>
            QwenSharp.Tests.Backend.BackendConformanceTests.Run(backend, count, outputs, [(input, inputs)], (a, o) => backend.Linear(a[0], weight, null, o));

        int differing = 0;
        foreach (int rows in new[] { 2, 3, 4, 7, 9 })
        {
            float[] x = KernelData.Floats(rows * inputs, 60 + rows);
            using ThreadOverride<PanelDecode.Switch>.Scope panels = PanelDecode.Assume(true);
            float[] asked = Product(invariant, invariantWeight, x, rows), batched = Product(fast, fastWeight, x, rows);
            for (int r = 0; r < rows; r++)
            {
                float[] row = x.AsSpan(r * inputs, inputs).ToArray();
                float[] single = Product(fast, fastWeight, row, 1);
                float[] stored;
                using (PanelDecode.Assume(false))
                {
                    stored = Product(fast, fastWeight, row, 1);
                }

                for (int o = 0; o < outputs; o++)
                {
                    float alone = single[o];
                    Assert.True(asked[(r * outputs) + o].Equals(alone), $"{rows} rows batch-invariant, row {r} output {o}: {asked[(r * outputs) + o]}, alone {alone}");
                    Assert.True(batched[(r * outputs) + o].Equals(alone), $"{rows} rows, row {r} output {o}: {batched[(r * outputs) + o]}, alone {alone}");
                    Assert.True(Math.Abs(alone - stored[o]) <= 1e-4 * (Math.Abs(stored[o]) + 1), $"row {r} output {o} through the panels: {alone}, the rows {stored[o]}");
                    differing += alone.Equals(stored[o]) ? 0 : 1;
                }
            }
        }

        Assert.True(differing > 0, "one token through the panels gave every sum the rows give; did the panels run?");
    }
}
