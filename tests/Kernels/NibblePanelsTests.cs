using QwenSharp.Cpu;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;
using QwenSharp.Numerics;
using QwenSharp.Tests.Backend;
using StoredTensor = QwenSharp.Tests.Backend.BackendConformanceTests.StoredTensor;

namespace QwenSharp.Tests.Kernels;

/// <summary>
/// Q4_0 and Q4_K matrices repacked at load (<see cref="NibblePanels"/>): their products on every path against the same rows
/// packed per step (<see cref="QuantPanel.Pack"/>, tested against the formats' dequantization), bit for bit, against the
/// reference, and against the dequantized weights and Q8_0 or Q8_K activations dotted in double; and which matrices the CPU
/// repacks.
/// </summary>
public sealed class NibblePanelsTests
{
    /// <summary>Paths, types and token counts; Q4_0 with f32 and f16 panel scales (<see cref="PanelScales"/>: true for f16).</summary>
    public static TheoryData<KernelPath, DType, int, bool> PathsTypesAndTokens()
    {
        var data = new TheoryData<KernelPath, DType, int, bool>();
        foreach (KernelPath path in KernelPaths.All)
        {
            foreach (DType type in new[] { DType.Q4_0, DType.Q4_K })
            {
                // A few tokens (f16 scales read as they are up to 4, widened once per panel past that), and on the 512-bit
                // path eights, fours and ones together.
                foreach (int tokens in new[] { 1, 3, 4, 8, 13, 16 })
                {
                    data.Add(path, type, tokens, false);
                    if (type == DType.Q4_0)
                    {
                        data.Add(path, type, tokens, true);
                    }
                }
            }
        }

        return data;
    }

    private static PanelScales ScalesOf(bool halves) => halves ? PanelScales.F16 : PanelScales.F32;

    /// <summary>
    /// A panel's rows of random codes with random small scales; for Q4_0 the scales' edge cases among them (zero, the smallest
    /// and largest f16 subnormals, negative ones, the largest f16), for Q4_K every 6-bit scale and min code.
    /// </summary>
    private static byte[] Rows(DType type, int cols, int seed)
    {
        if (type == DType.Q4_K)
        {
            return KQuantKernelTests.RandomRow(type, QuantPanel.Rows * cols / 256, seed);
        }

        var random = new Random(seed);
        var rows = new byte[DTypes.ByteLength(DType.Q4_0, (long)QuantPanel.Rows * cols)];
        random.NextBytes(rows);
        ushort[] edges = [0x0000, 0x8000, 0x0001, 0x03FF, 0x8001, 0x7BFF, 0xFBFF];
        for (int b = 0; b < rows.Length / 18; b++)
        {
            ushort scale = b % 5 == 0 ? edges[(b / 5) % edges.Length] : HalfBits.FromSingle((float)((random.NextDouble() - 0.3) * 0.01));
            BitConverter.TryWriteBytes(rows.AsSpan(b * 18), scale);
        }

        return rows;
    }

    [Theory]
    [MemberData(nameof(PathsTypesAndTokens))]
    public void Products_equal_the_packed_panels_bit_for_bit_and_the_definition(KernelPath path, DType type, int tokens, bool halves)
    {
        const int cols = 768, stride = 19;
        PanelScales panelScales = ScalesOf(halves);
        byte[] rows = Rows(type, cols, 3 + tokens);
        var panel = new byte[NibblePanels.PanelBytes(type, cols, panelScales)];
        NibblePanels.Repack(type, rows, cols, panel, panelScales);
        float[] x = KernelData.Floats(tokens * cols, 11 + tokens, scale: 2f);
        x.AsSpan(0, 256).Clear();    // all-zero activation blocks: scale 0
        var q8 = new Q8Activations();
        q8.Quantize(x, tokens, cols, path);
        var q8k = new Q8KActivations();
        q8k.Quantize(x, tokens, cols);
        int block = type == DType.Q4_0 ? 32 : 256;
        sbyte[] Codes(int t) => type == DType.Q4_0 ? q8.Row(t).Codes.ToArray() : q8k.Row(t).Codes.ToArray();
        float[] Scales(int t) => type == DType.Q4_0 ? q8.Row(t).Scales.ToArray() : q8k.Row(t).Scales.ToArray();

        float[] Multiplied()
        {
            var y = new float[tokens * stride];
            y.AsSpan().Fill(float.NaN);
            if (type == DType.Q4_0)
            {
                QuantPanel.MultiplyRepacked(path, panel, cols, q8, y, stride, default, panelScales);
            }
            else
            {
                QuantPanel.MultiplyRepacked(path, panel, cols, q8k, y, stride);
            }

            return y;
        }

        float[] actual = Multiplied();
        var packed = new float[QuantPanel.PanelFloats(cols)];
        QuantPanel.Pack(path, type, rows, QuantPanel.Rows, cols, packed);
        var expected = new float[tokens * stride];
        if (type == DType.Q4_0)
        {
            QuantPanel.Multiply(path, type, packed, QuantPanel.Rows, cols, q8, expected, stride);
        }
        else
        {
            QuantPanel.Multiply(path, type, packed, QuantPanel.Rows, cols, q8k, expected, stride);
        }

        float[]? pairs = null;
        if (path == KernelPath.Vector512)
        {
            // The 512-bit path's other integer product (vpmaddubsw pairs, as on AMD Zen 4, with the high nibbles shifted down).
            using (ByteDots.WithoutVnni())
            {
                pairs = Multiplied();
            }
        }

        int rowBytes = (int)DTypes.ByteLength(type, cols);
        var w = new float[cols];
        for (int r = 0; r < QuantPanel.Rows; r++)
        {
            QuantizedRows.Dequantize(KernelPath.Scalar, type, rows.AsSpan(r * rowBytes, rowBytes), w);
            for (int t = 0; t < tokens; t++)
            {
                float y = actual[(t * stride) + r];
                Assert.True(y.Equals(expected[(t * stride) + r]), $"{type} {path} row {r} token {t}: {y}, packed per step {expected[(t * stride) + r]}");
                Assert.True(pairs is null || pairs[(t * stride) + r].Equals(y), $"{type} {path} without VNNI, row {r} token {t}: {pairs?[(t * stride) + r]}, with it {y}");
                sbyte[] codes = Codes(t);
                float[] scales = Scales(t);
                Assert.True(NibblePanels.DotRow(type, panel, cols, r, codes, scales, panelScales).Equals(y), $"{type} {path} {panelScales} row {r} token {t}: the scalar reference differs");
                double exact = 0, magnitude = 0;
                for (int k = 0; k < cols; k++)
                {
                    double product = w[k] * (double)scales[k / block] * codes[k];
                    exact += product;
                    magnitude += Math.Abs(product);
                }

                Assert.True(Math.Abs(y - exact) <= 1e-5 * magnitude, $"{type} {path} row {r} token {t}: {y}, expected {exact}");
            }

            for (int t = 0; t < tokens; t++)
            {
                for (int i = QuantPanel.Rows; i < stride; i++)
                {
                    Assert.True(float.IsNaN(actual[(t * stride) + i]), $"{type} {path}: wrote past the panel's rows at token {t}, column {i}");
                }
            }
        }
    }

    /// <summary>
    /// Every code 15 against activations all -1 (Q8_0 and Q8_K codes -127): a sub-block's products are then as large as they
    /// can be (32 × 15 × 127 = 60960 for Q4_K, 32 × 7 × 127 for Q4_0 and its offset), and the 256-bit path's 16-bit pair sums
    /// (<see cref="NibblePairSums"/>, 8 × 2 × 15 × 127 = 30480) must hold them without wrapping; every path and token count
    /// equals the scalar reference bit for bit, and the definition.
    /// </summary>
    [Theory]
    [MemberData(nameof(PathsTypesAndTokens))]
    public void The_largest_products_stay_exact(KernelPath path, DType type, int tokens, bool halves)
    {
        PanelScales panelScales = ScalesOf(halves);
        const int cols = 512;
        int rowBytes = (int)DTypes.ByteLength(type, cols);
        var rows = new byte[QuantPanel.Rows * rowBytes];
        rows.AsSpan().Fill(0xFF);
        for (int r = 0; r < rows.Length; r += type == DType.Q4_0 ? 18 : 144)
        {
            // Scale 1 (and for Q4_K: dmin 0, then 6-bit scales and mins whose packed bytes 0xFF give 63 everywhere).
            BitConverter.TryWriteBytes(rows.AsSpan(r), HalfBits.FromSingle(1));
            if (type == DType.Q4_K)
            {
                BitConverter.TryWriteBytes(rows.AsSpan(r + 2), (ushort)0);
            }
        }

        var panel = new byte[NibblePanels.PanelBytes(type, cols, panelScales)];
        NibblePanels.Repack(type, rows, cols, panel, panelScales);
        float[] x = new float[tokens * cols];
        x.AsSpan().Fill(-1);
        var q8 = new Q8Activations();
        q8.Quantize(x, tokens, cols, path);
        var q8k = new Q8KActivations();
        q8k.Quantize(x, tokens, cols);
        var y = new float[tokens * QuantPanel.Rows];
        using (path == KernelPath.Vector512 ? ByteDots.WithoutVnni() : default)
        {
            if (type == DType.Q4_0)
            {
                QuantPanel.MultiplyRepacked(path, panel, cols, q8, y, QuantPanel.Rows, default, panelScales);
            }
            else
            {
                QuantPanel.MultiplyRepacked(path, panel, cols, q8k, y, QuantPanel.Rows);
            }
        }

        ReadOnlySpan<sbyte> codes = type == DType.Q4_0 ? q8.Row(0).Codes : q8k.Row(0).Codes;
        Assert.Equal(-127, codes[0]);
        float[] scales = type == DType.Q4_0 ? q8.Row(0).Scales.ToArray() : q8k.Row(0).Scales.ToArray();
        float reference = NibblePanels.DotRow(type, panel, cols, 0, codes, scales, panelScales);
        var w = new float[cols];
        QuantizedRows.Dequantize(KernelPath.Scalar, type, rows.AsSpan(0, rowBytes), w);
        double exact = 0;
        for (int k = 0; k < cols; k++)
        {
            exact += w[k] * (double)scales[k / (type == DType.Q4_0 ? 32 : 256)] * codes[k];
        }

        Assert.True(Math.Abs(reference - exact) <= 1e-5 * Math.Abs(exact), $"{type}: the reference {reference}, the definition {exact}");
        for (int i = 0; i < y.Length; i++)
        {
            Assert.True(y[i].Equals(reference), $"{type} {path} row {i % QuantPanel.Rows} token {i / QuantPanel.Rows}: {y[i]}, the reference {reference}");
        }
    }

    /// <summary>Paths and widths, with f32 and f16 panel scales (true for f16).</summary>
    public static TheoryData<KernelPath, int, bool> PathsAndWidths()
    {
        var data = new TheoryData<KernelPath, int, bool>();
        foreach (KernelPath path in KernelPaths.All)
        {
            foreach (int cols in new[] { 64, 768, 4864 })
            {
                data.Add(path, cols, false);
                data.Add(path, cols, true);
            }
        }

        return data;
    }

    /// <summary>
    /// One token against several repacked Q4_0 panels in one loop (<see cref="PanelDecode.MultiplyQ4_0"/>, decode where the
    /// panels pay): every row bit for bit the scalar reference and each panel multiplied alone, the scales' edge cases and an
    /// all-zero activation block among them, the largest products too (every code 15, activations -127); nothing written
    /// outside its results. Where vpdpbusd runs, or without AVX2, it refuses instead of running.
    /// </summary>
    [Theory]
    [MemberData(nameof(PathsAndWidths))]
    public void One_token_through_the_panels_in_one_loop_equals_the_reference_and_each_panel_alone(KernelPath path, int cols, bool halves)
    {
        const int panels = 5;
        PanelScales panelScales = ScalesOf(halves);
        // An all-zero activation block first (scale 0), a block of -1s last (codes -127, against the last panel's 15s).
        float[] x = KernelData.Floats(cols, 17 + cols, scale: 2f);
        x.AsSpan(0, 32).Clear();
        x.AsSpan(cols - 32, 32).Fill(-1);
        var q8 = new Q8Activations();
        q8.Quantize(x, 1, cols, path);
        Assert.Equal(-127, q8.Row(0).Codes[cols - 1]);
        int panelBytes = NibblePanels.PanelBytes(DType.Q4_0, cols, panelScales);
        var all = new byte[panels * panelBytes];
        for (int p = 0; p < panels; p++)
        {
            byte[] rows = Rows(DType.Q4_0, cols, 40 + p);
            if (p == panels - 1)
            {
                // The largest products: every code 15 (stored 0xFF bytes), scale 1, against -127 (a block of -1s).
                rows.AsSpan().Fill(0xFF);
                for (int r = 0; r < rows.Length; r += 18)
                {
                    BitConverter.TryWriteBytes(rows.AsSpan(r), HalfBits.FromSingle(1));
                }
            }

            NibblePanels.Repack(DType.Q4_0, rows, cols, all.AsSpan(p * panelBytes, panelBytes), panelScales);
        }

        if (!PanelDecode.HasKernel(path))
        {
            // The scalar path, or vpdpbusd's (whose panels' odd blocks it reads as the codes × 16).
            Assert.Throws<ArgumentException>(() => PanelDecode.MultiplyQ4_0(path, all, cols, q8, new float[panels * QuantPanel.Rows], panelScales));
        }

        using (path == KernelPath.Vector512 ? ByteDots.WithoutVnni() : default)
        {
            if (!PanelDecode.HasKernel(path))
            {
                return;
            }

            var y = new float[(panels * QuantPanel.Rows) + 2];
            y.AsSpan().Fill(float.NaN);
            PanelDecode.MultiplyQ4_0(path, all, cols, q8, y.AsSpan(1, panels * QuantPanel.Rows), panelScales);
            Assert.True(float.IsNaN(y[0]) && float.IsNaN(y[^1]), $"{path}: wrote outside its results");
            var alone = new float[QuantPanel.Rows];
            sbyte[] codes = q8.Row(0).Codes.ToArray();
            float[] scales = q8.Row(0).Scales.ToArray();
            for (int p = 0; p < panels; p++)
            {
                ReadOnlySpan<byte> panel = all.AsSpan(p * panelBytes, panelBytes);
                QuantPanel.MultiplyRepacked(path, panel, cols, q8, alone, QuantPanel.Rows, default, panelScales);
                for (int r = 0; r < QuantPanel.Rows; r++)
                {
                    float actual = y[1 + (p * QuantPanel.Rows) + r];
                    float reference = NibblePanels.DotRow(DType.Q4_0, panel, cols, r, codes, scales, panelScales);
                    Assert.True(actual.Equals(reference), $"{path}, {cols} wide, {panelScales}, panel {p} row {r}: {actual}, the reference {reference}");
                    Assert.True(actual.Equals(alone[r]), $"{path}, {cols} wide, panel {p} row {r}: {actual}, the panel alone {alone[r]}");
                }
            }
        }
    }

    /// <summary>
    /// Which matrices' products all read the CPU's copies, so that a mapped file's pages of them may go (<see cref="CpuWeight.ProductsReadCopies"/>):
    /// Q4_K with paired rows and panels, Q4_0 where one token reads its panels too; not Q5_K (its prefill packs the stored
    /// rows), nor Q4_K or Q4_0 whose decode reads the stored rows, nor any matrix on the scalar path.
    /// </summary>
    [Theory]
    [InlineData(DType.Q4_K, true)]
    [InlineData(DType.Q4_K, false)]
    [InlineData(DType.Q4_0, true)]
    [InlineData(DType.Q4_0, false)]
    [InlineData(DType.Q5_K, true)]
    [InlineData(DType.Q8_0, true)]
    public void Products_read_only_copies_where_decode_and_prefill_both_read_them(DType type, bool copiesForDecode)
    {
        bool Reads(KernelPath path)
        {
            using ThreadOverride<PairedNibbleRows.Switch>.Scope paired = PairedNibbleRows.Assume(copiesForDecode);
            using ThreadOverride<PanelDecode.Switch>.Scope panels = PanelDecode.Assume(copiesForDecode);
            using var backend = new CpuBackend(new CpuBackendOptions { Threads = 1, KernelPath = path });
            using var w = new StoredTensor("w", KernelData.Floats(32 * 256, 9), type, [32, 256]);
            using var weight = (CpuWeight)backend.Upload(w.View);
            return weight.ProductsReadCopies;
        }

        bool expected = copiesForDecode && type is DType.Q4_K or DType.Q4_0 && System.Runtime.Intrinsics.X86.Avx2.IsSupported;
        Assert.Equal(expected, Reads(KernelPaths.Default));
        Assert.False(Reads(KernelPath.Scalar), $"{type} on the scalar path");
    }

    /// <summary>
    /// A Q4_0 matrix keeps its panels' scales as f16 (18 bytes a row per 32 values, what one token's step reads) where one
    /// token reads the panels, and every scale is finite; one infinite or NaN scale, the scalar path, or decode from the
    /// stored rows keep f32. The panels refuse f16 scales that are not all finite, or for Q4_K; f16 and f32 panels give the
    /// same products bit for bit (one token through the backend, against the weight repacked with f32 scales).
    /// </summary>
    [Fact]
    public void Q4_0_panels_keep_f16_scales_where_one_token_reads_them_and_every_scale_is_finite()
    {
        const int outputs = 48, inputs = 256;
        byte[] finite = Rows(DType.Q4_0, inputs, 5).Concat(Rows(DType.Q4_0, inputs, 6)).Concat(Rows(DType.Q4_0, inputs, 7)).ToArray();
        Assert.Equal(DTypes.ByteLength(DType.Q4_0, (long)outputs * inputs), finite.Length);
        Assert.True(NibblePanels.HasFiniteScales(finite));
        foreach (ushort bad in new ushort[] { 0x7C00, 0xFC00, 0x7E00, 0x7C01 })
        {
            byte[] rows = (byte[])finite.Clone();
            BitConverter.TryWriteBytes(rows.AsSpan((outputs * inputs / 32 - 1) * 18), bad);    // the last block's scale
            Assert.False(NibblePanels.HasFiniteScales(rows), $"scale 0x{bad:X4}");
            var panel = new byte[NibblePanels.PanelBytes(DType.Q4_0, inputs, PanelScales.F16)];
            Assert.Throws<ArgumentException>(() => NibblePanels.Repack(DType.Q4_0, rows.AsSpan(rows.Length - panel.Length), inputs, panel, PanelScales.F16));
        }

        Assert.Throws<ArgumentException>(() => NibblePanels.Repack(DType.Q4_K, Rows(DType.Q4_K, inputs, 1), inputs,
            new byte[NibblePanels.PanelBytes(DType.Q4_K, inputs, PanelScales.F16)], PanelScales.F16));

        var x = KernelData.Floats(inputs, 8, scale: 2f);
        (PanelScales Scales, long StepBytes, float[] Y) Upload(byte[] rows, KernelPath path, bool panels, bool halves)
        {
            using ThreadOverride<PanelDecode.Switch>.Scope decode = PanelDecode.Assume(panels);
            using ThreadOverride<PanelDecode.HalfScalesSwitch>.Scope half = PanelDecode.AssumeHalfScales(halves);
            using var backend = new CpuBackend(new CpuBackendOptions { Threads = 1, KernelPath = path });
            var pin = System.Runtime.InteropServices.GCHandle.Alloc(rows, System.Runtime.InteropServices.GCHandleType.Pinned);
            try
            {
                using var weight = (CpuWeight)backend.Upload(new TensorView("w", "test", DType.Q4_0, [outputs, inputs], pin.AddrOfPinnedObject()));
                float[] y = BackendConformanceTests.Run(backend, 1, outputs, [(x, inputs)], (a, o) => backend.Linear(a[0], weight, null, o));
                return (weight.PanelScales, weight.DecodeStepBytes, y);
            }
            finally
            {
                pin.Free();
            }
        }

        KernelPath vector = KernelPaths.Default;
        bool kernel = PanelDecode.HasKernel(vector);
        var f16 = Upload(finite, vector, panels: true, halves: true);
        var f32 = Upload(finite, vector, panels: true, halves: false);
        Assert.Equal(kernel ? PanelScales.F16 : PanelScales.F32, f16.Scales);
        Assert.Equal(PanelScales.F32, f32.Scales);
        Assert.Equal(kernel ? outputs * inputs / 32 * 18 : outputs * inputs / 32 * 20, f16.StepBytes);
        Assert.Equal(outputs * inputs / 32 * 20, f32.StepBytes);
        for (int i = 0; i < outputs; i++)
        {
            Assert.True(f16.Y[i].Equals(f32.Y[i]), $"row {i}: {f16.Y[i]} from f16 scales, {f32.Y[i]} from f32");
        }

        byte[] infinite = (byte[])finite.Clone();
        BitConverter.TryWriteBytes(infinite.AsSpan(18 * 100), (ushort)0x7C00);
        Assert.Equal(PanelScales.F32, Upload(infinite, vector, panels: true, halves: true).Scales);
        Assert.Equal(PanelScales.F32, Upload(finite, vector, panels: false, halves: true).Scales);
        Assert.Equal(PanelScales.F32, Upload(finite, KernelPath.Scalar, panels: true, halves: true).Scales);
    }

    [Theory]
    [InlineData(DType.Q4_0, 128, 96)]
    [InlineData(DType.Q4_K, 256, 0)]
    public void The_cpu_repacks_whole_panels_only(DType type, int cols, int unpairedCols)
    {
        using var backend = new CpuBackend(new CpuBackendOptions { Threads = 1 });
        using var off = new CpuBackend(new CpuBackendOptions { Threads = 1, RepackPanels = false });
        bool Repacks(CpuBackend b, int outputs, int inputs)
        {
            using var w = new StoredTensor("w", KernelData.Floats(outputs * inputs, outputs + inputs), type, [outputs, inputs]);
            using var weight = (CpuWeight)b.Upload(w.View);
            return weight.Repacked;
        }

        Assert.True(Repacks(backend, 32, cols));
        Assert.False(Repacks(off, 32, cols), "repacked with RepackPanels off");
        Assert.False(Repacks(backend, 40, cols), "40 rows are not whole panels of 16");
        if (unpairedCols > 0)
        {
            Assert.False(Repacks(backend, 32, unpairedCols), $"{unpairedCols} columns are not whole pairs of blocks");
        }
    }
}
