using System.Runtime.InteropServices;
using QwenSharp.Backend;
using QwenSharp.Formats;
using QwenSharp.Tests.Kernels;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Backend;

/// <summary>
/// Every operation of <see cref="IBackend"/> on every backend (each CPU kernel path and the GPU), on seeded
/// random data, against a float64 reference written here from the operation's definition (llama.cpp's
/// test-backend-ops idea). Outputs are filled with NaN before each operation, so an element it fails to
/// write fails the test.
/// </summary>
public sealed class BackendConformanceTests
{
    public static TheoryData<string> Backends() => TestBackends.AllData();

    public static TheoryData<string, DType> BackendsAndTypes() => EveryBackendWith(DType.BF16, DType.F16, DType.F32, DType.Q8_0, DType.Q4_0, DType.Q5_0, DType.Q4_1, DType.Q5_1);

    public static TheoryData<string, DType> BackendsAndKQuantTypes() => EveryBackendWith(DType.Q2_K, DType.Q3_K, DType.IQ4_XS, DType.Q4_K, DType.Q5_K, DType.Q6_K);

    /// <summary>Each backend with each of <paramref name="types"/>.</summary>
    private static TheoryData<string, DType> EveryBackendWith(params DType[] types)
    {
        var data = new TheoryData<string, DType>();
        foreach (string backend in TestBackends.All)
        {
            foreach (DType type in types)
            {
                data.Add(backend, type);
            }
        }

        return data;
    }

    [SkippableTheory]
    [MemberData(nameof(BackendsAndTypes))]
    public void Linear_EveryRowCountAndShape_MatchesReference(string backendName, DType type)
    {
        using IBackend backend = TestBackends.Create(backendName);
        // Row counts on both sides of the GPU's matrix-vector limit (8) and of its 64-row GEMM tiles; widths
        // that are and are not whole 16-byte chunks; with and without bias. 48 × 128 is whole panels of 16 rows and pairs of
        // blocks, which the CPU repacks for Q4_0 (NibblePanels).
        (int, int)[] shapes = DTypes.IsQuantized(type) ? [(5, 32), (37, 64), (3, 96), (130, 160), (48, 128)] : [(5, 16), (37, 24), (64, 10), (3, 1), (130, 136)];
        CheckLinear(backend, type, shapes, activationBlock: 32);
    }

    /// <summary>
    /// Linear at each shape (outputs, inputs), at 1, 2, 3, 8, 9 and 70 rows, with and without bias, against the product of the
    /// exact stored weights in double, give or take the activations' 8-bit rounding per <paramref name="activationBlock"/>
    /// for block-quantized weights.
    /// </summary>
    private static void CheckLinear(IBackend backend, DType type, (int, int)[] shapes, int activationBlock)
    {
        foreach ((int outputs, int inputs) in shapes)
        {
            foreach (int rows in new[] { 1, 2, 3, 8, 9, 70 })
            {
                foreach (bool withBias in new[] { false, true })
                {
                    int seed = (outputs * 31) + (inputs * 7) + rows;
                    using var w = new StoredTensor("w", KernelData.Floats(outputs * inputs, seed), type, [outputs, inputs]);
                    using var b = new StoredTensor("b", KernelData.Floats(outputs, seed + 1), DType.F32, [outputs]);
                    using DeviceWeight weight = backend.Upload(w.View);
                    using DeviceWeight bias = backend.Upload(b.View);
                    float[] x = KernelData.Floats(rows * inputs, seed + 2);

                    float[] y = Run(backend, rows, outputs, [(x, inputs)], (a, o) => backend.Linear(a[0], weight, withBias ? bias : null, o));

                    for (int r = 0; r < rows; r++)
                    {
                        for (int o = 0; o < outputs; o++)
                        {
                            double expected = KernelData.DotExact(x.AsSpan(r * inputs, inputs), w.Exact.AsSpan(o * inputs, inputs), out double magnitude)
                                + (withBias ? b.Exact[o] : 0);
                            double quantized = DTypes.IsQuantized(type) ? ActivationRounding(x.AsSpan(r * inputs, inputs), w.Exact.AsSpan(o * inputs, inputs), activationBlock) : 0;
                            AssertClose(expected, y[(r * outputs) + o], magnitude + 1, quantized, $"{type} [{outputs}x{inputs}] rows {rows} bias {withBias}: y[{r},{o}]");
                        }
                    }
                }
            }
        }
    }

    /// <summary>
    /// The k-quants (rows of whole 256-value super-blocks): on the CPU integer dot products per row at decode row counts and
    /// integer panels from 8 rows on (QuantPanel), a partial panel of rows and tokens past whole tiles of four; on the GPU
    /// the stored blocks widened per value in the shaders. With and without bias.
    /// </summary>
    [SkippableTheory]
    [MemberData(nameof(BackendsAndKQuantTypes))]
    public void Linear_KQuantTypes_DecodeAndPrefillRowCounts_MatchReference(string backendName, DType type)
    {
        using IBackend backend = TestBackends.Create(backendName);
        CheckLinear(backend, type, [(5, 256), (37, 512)], activationBlock: 256);
    }

    public static TheoryData<string, bool> BackendsMixedOrNot()
    {
        var data = new TheoryData<string, bool>();
        foreach (string backend in TestBackends.All)
        {
            data.Add(backend, true);
            data.Add(backend, false);
        }

        return data;
    }

    [SkippableTheory]
    [MemberData(nameof(BackendsMixedOrNot))]
    public void QkvProjection_MixedOrOneType_EachOutputMatchesReferenceAndItsOwnLinear(string backendName, bool mixed)
    {
        // Three weights of one input, one without bias, at decode and prefill row counts: each output must equal the
        // reference and, bit for bit, the same product run alone. Mixed types (a Q4_K_M file mixes them) run as three
        // products; one type may run as one pass (the GPU's single dispatch), here with odd row counts so the
        // boundaries between the three weights fall inside a workgroup's rows.
        using IBackend backend = TestBackends.Create(backendName);
        const int Inputs = 256;
        (string Name, DType Type, int Outputs, bool Bias)[] products = mixed
            ? [("q", DType.Q8_0, 96, true), ("k", DType.BF16, 32, false), ("v", DType.Q4_0, 32, true)]
            : [("q", DType.Q4_0, 95, true), ("k", DType.Q4_0, 33, false), ("v", DType.Q4_0, 31, true)];
        var stored = products.Select((p, i) => new StoredTensor(p.Name, KernelData.Floats(p.Outputs * Inputs, 40 + i), p.Type, [p.Outputs, Inputs])).ToArray();
        var biases = products.Select((p, i) => new StoredTensor(p.Name + ".bias", KernelData.Floats(p.Outputs, 50 + i), DType.F32, [p.Outputs])).ToArray();
        var weights = stored.Select(t => backend.Upload(t.View)).ToArray();
        var biasWeights = biases.Select(t => backend.Upload(t.View)).ToArray();
        try
        {
            foreach (int rows in new[] { 1, 3, 9 })
            {
                float[] x = KernelData.Floats(rows * Inputs, 60 + rows);
                using DeviceBuffer xb = backend.Allocate(rows, Inputs);
                backend.Write(x, xb.Rows(rows));
                var outputs = products.Select(p => backend.Allocate(rows, p.Outputs)).ToArray();
                try
                {
                    for (int i = 0; i < 3; i++)
                    {
                        backend.Write(Enumerable.Repeat(float.NaN, rows * products[i].Outputs).ToArray(), outputs[i].Rows(rows));
                    }

                    DeviceWeight? Bias(int i) => products[i].Bias ? biasWeights[i] : null;
                    backend.QkvProjection(xb.Rows(rows), weights[0], Bias(0), outputs[0].Rows(rows), weights[1], Bias(1), outputs[1].Rows(rows),
                        weights[2], Bias(2), outputs[2].Rows(rows));

                    for (int i = 0; i < 3; i++)
                    {
                        var (name, type, n, withBias) = products[i];
                        var y = new float[rows * n];
                        backend.Download(outputs[i].Rows(rows), y);
                        float[] alone = Run(backend, rows, n, [(x, Inputs)], (a, o) => backend.Linear(a[0], weights[i], Bias(i), o));
                        Assert.Equal(alone, y);
                        for (int r = 0; r < rows; r++)
                        {
                            for (int o = 0; o < n; o++)
                            {
                                double expected = KernelData.DotExact(x.AsSpan(r * Inputs, Inputs), stored[i].Exact.AsSpan(o * Inputs, Inputs), out double magnitude)
                                    + (withBias ? biases[i].Exact[o] : 0);
                                double quantized = DTypes.IsQuantized(type) ? ActivationRounding(x.AsSpan(r * Inputs, Inputs), stored[i].Exact.AsSpan(o * Inputs, Inputs), block: 32) : 0;
                                AssertClose(expected, y[(r * n) + o], magnitude + 1, quantized, $"{name} ({type}) rows {rows}: y[{r},{o}]");
                            }
                        }
                    }
                }
                finally
                {
                    foreach (DeviceBuffer output in outputs)
                    {
                        output.Dispose();
                    }
                }
            }
        }
        finally
        {
            foreach (IDisposable d in weights.Concat(biasWeights).Concat<IDisposable>(stored).Concat(biases))
            {
                d.Dispose();
            }
        }
    }

    public static TheoryData<string, DType> BackendsAndFusedTypes() => EveryBackendWith(DType.BF16, DType.Q4_0, DType.Q4_K);

    /// <summary>
    /// The decode sequences a GPU runs as fewer dispatches (matvec.comp): RmsNorm then Linear then Add onto a residual, and
    /// RmsNorm then QkvProjection. Every output of every step must be as the steps alone define it, the norm's output
    /// included though the fused product reads x itself; at 9 rows (a GEMM on the GPU) nothing is fused.
    /// </summary>
    [SkippableTheory]
    [MemberData(nameof(BackendsAndFusedTypes))]
    public void NormLinearAdd_AndNormQkv_EveryOutputMatchesReference(string backendName, DType type)
    {
        using IBackend backend = TestBackends.Create(backendName);
        const int Inputs = 256, Outputs = 95;
        const float Eps = 1e-6f;
        using var norm = new StoredTensor("norm", KernelData.Floats(Inputs, 70), DType.BF16, [Inputs]);
        using var w = new StoredTensor("w", KernelData.Floats(Outputs * Inputs, 71), type, [Outputs, Inputs]);
        using var k = new StoredTensor("k", KernelData.Floats(33 * Inputs, 72), type, [33, Inputs]);
        using var b = new StoredTensor("b", KernelData.Floats(Outputs, 73), DType.F32, [Outputs]);
        using DeviceWeight normWeight = backend.Upload(norm.View), weight = backend.Upload(w.View), kWeight = backend.Upload(k.View), bias = backend.Upload(b.View);
        int block = type == DType.Q4_K ? 256 : 32;
        foreach (int rows in new[] { 1, 3, 9 })
        {
            float[] x = KernelData.Floats(rows * Inputs, 74 + rows, scale: 3), residual = KernelData.Floats(rows * Outputs, 80 + rows);
            using DeviceBuffer xb = backend.Allocate(rows, Inputs), normed = backend.Allocate(rows, Inputs), y = backend.Allocate(rows, Outputs);
            using DeviceBuffer sum = backend.Allocate(rows, Outputs), normed2 = backend.Allocate(rows, Inputs), q = backend.Allocate(rows, Outputs);
            using DeviceBuffer kOut = backend.Allocate(rows, 33), vOut = backend.Allocate(rows, 33);
            backend.Write(x, xb.Rows(rows));
            backend.Write(residual, sum.Rows(rows));
            foreach (DeviceBuffer poisoned in new[] { normed, y, normed2, q })
            {
                backend.Write(Enumerable.Repeat(float.NaN, rows * poisoned.Cols).ToArray(), poisoned.Rows(rows));
            }

            backend.RmsNorm(xb.Rows(rows), normWeight, Eps, normed.Rows(rows));
            backend.Linear(normed.Rows(rows), weight, bias, y.Rows(rows));
            backend.Add(sum.Rows(rows), y.Rows(rows));
            backend.RmsNorm(xb.Rows(rows), normWeight, Eps, normed2.Rows(rows));
            backend.QkvProjection(normed2.Rows(rows), weight, bias, q.Rows(rows), kWeight, null, kOut.Rows(rows), kWeight, null, vOut.Rows(rows));

            float[] Read(DeviceBuffer buffer)
            {
                var values = new float[rows * buffer.Cols];
                backend.Download(buffer.Rows(rows), values);
                return values;
            }

            float[] normedOut = Read(normed), yOut = Read(y), sumOut = Read(sum), normed2Out = Read(normed2), qOut = Read(q);
            for (int r = 0; r < rows; r++)
            {
                double meanSquare = x.AsSpan(r * Inputs, Inputs).ToArray().Sum(v => (double)v * v) / Inputs;
                var expectedNorm = new float[Inputs];
                for (int c = 0; c < Inputs; c++)
                {
                    double expected = x[(r * Inputs) + c] / Math.Sqrt(meanSquare + Eps) * norm.Exact[c];
                    expectedNorm[c] = (float)expected;
                    AssertClose(expected, normedOut[(r * Inputs) + c], Math.Abs(expected) + 1, $"{type} rows {rows}: norm before Linear [{r},{c}]");
                    AssertClose(expected, normed2Out[(r * Inputs) + c], Math.Abs(expected) + 1, $"{type} rows {rows}: norm before q/k/v [{r},{c}]");
                }

                for (int o = 0; o < Outputs; o++)
                {
                    double expected = KernelData.DotExact(expectedNorm, w.Exact.AsSpan(o * Inputs, Inputs), out double magnitude) + b.Exact[o];
                    double quantized = DTypes.IsQuantized(type) ? ActivationRounding(expectedNorm, w.Exact.AsSpan(o * Inputs, Inputs), block) : 0;
                    // The norm's output is rounded to f32 before the product when it runs alone, not when fused: 1e-7 relative per value.
                    double normRounding = 1e-7 * magnitude;
                    AssertClose(expected, yOut[(r * Outputs) + o], magnitude + 1, quantized + normRounding, $"{type} rows {rows}: Linear y[{r},{o}]");
                    AssertClose(expected, qOut[(r * Outputs) + o], magnitude + 1, quantized + normRounding, $"{type} rows {rows}: q[{r},{o}]");
                    AssertClose(residual[(r * Outputs) + o] + expected, sumOut[(r * Outputs) + o], magnitude + Math.Abs(residual[(r * Outputs) + o]) + 1,
                        quantized + normRounding, $"{type} rows {rows}: residual + y [{r},{o}]");
                }
            }
        }
    }

    /// <summary>
    /// RmsNorm of x, then a product written back over x: the product must use the x the norm read (a fused dispatch,
    /// whose every workgroup reads x for the norm, must not run here).
    /// </summary>
    [SkippableTheory]
    [MemberData(nameof(Backends))]
    public void NormThenLinearIntoTheNormsInput_UsesTheOriginalInput(string backendName)
    {
        using IBackend backend = TestBackends.Create(backendName);
        const int Width = 64;
        const float Eps = 1e-6f;
        using var norm = new StoredTensor("norm", KernelData.Floats(Width, 90), DType.BF16, [Width]);
        using var w = new StoredTensor("w", KernelData.Floats(Width * Width, 91), DType.BF16, [Width, Width]);
        using DeviceWeight normWeight = backend.Upload(norm.View), weight = backend.Upload(w.View);
        foreach (int rows in new[] { 1, 3 })
        {
            float[] x = KernelData.Floats(rows * Width, 92 + rows, scale: 3);
            using DeviceBuffer xb = backend.Allocate(rows, Width), normed = backend.Allocate(rows, Width);
            backend.Write(x, xb.Rows(rows));
            backend.RmsNorm(xb.Rows(rows), normWeight, Eps, normed.Rows(rows));
            backend.Linear(normed.Rows(rows), weight, null, xb.Rows(rows));
            var y = new float[rows * Width];
            backend.Download(xb.Rows(rows), y);
            for (int r = 0; r < rows; r++)
            {
                double meanSquare = x.AsSpan(r * Width, Width).ToArray().Sum(v => (double)v * v) / Width;
                float[] expectedNorm = [.. Enumerable.Range(0, Width).Select(c => (float)(x[(r * Width) + c] / Math.Sqrt(meanSquare + Eps) * norm.Exact[c]))];
                for (int o = 0; o < Width; o++)
                {
                    double expected = KernelData.DotExact(expectedNorm, w.Exact.AsSpan(o * Width, Width), out double magnitude);
                    AssertClose(expected, y[(r * Width) + o], magnitude + 1, 1e-7 * magnitude, $"rows {rows}: y[{r},{o}]");
                }
            }
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends))]
    public void Linear_MoreOutputRowsThanOneGridDimension_WritesEveryRow(string backendName)
    {
        // 140,000 outputs: past 65,535 workgroups in x, so the GPU spills its grid into y (as a vocabulary-sized head does).
        using IBackend backend = TestBackends.Create(backendName);
        const int Outputs = 140_000, Inputs = 8;
        using var w = new StoredTensor("head", KernelData.Floats(Outputs * Inputs, 5), DType.BF16, [Outputs, Inputs]);
        using DeviceWeight weight = backend.Upload(w.View);
        float[] x = KernelData.Floats(2 * Inputs, 6);

        float[] y = Run(backend, 2, Outputs, [(x, Inputs)], (a, o) => backend.Linear(a[0], weight, null, o));

        for (int r = 0; r < 2; r++)
        {
            for (int o = 0; o < Outputs; o += 997)
            {
                double expected = KernelData.DotExact(x.AsSpan(r * Inputs, Inputs), w.Exact.AsSpan(o * Inputs, Inputs), out double magnitude);
                AssertClose(expected, y[(r * Outputs) + o], magnitude + 1, $"y[{r},{o}]");
            }

            Assert.DoesNotContain(y.AsSpan(r * Outputs, Outputs).ToArray(), float.IsNaN);
        }
    }

    [SkippableTheory]
    [MemberData(nameof(BackendsAndTypes))]
    public void Embed_Tokens_CopiesTheirRowsWidened(string backendName, DType type)
    {
        using IBackend backend = TestBackends.Create(backendName);
        const int Vocab = 50;
        int cols = DTypes.IsQuantized(type) ? 64 : 12;
        using var table = new StoredTensor("embed", KernelData.Floats(Vocab * cols, 9), type, [Vocab, cols]);
        using DeviceWeight weight = backend.Upload(table.View);
        int[] tokens = [3, 49, 0, 3, 17];

        float[] x = Run(backend, tokens.Length, cols, [], (_, o) => backend.Embed(weight, tokens, o));

        for (int i = 0; i < tokens.Length; i++)
        {
            Assert.Equal(table.Exact.AsSpan(tokens[i] * cols, cols).ToArray(), x.AsSpan(i * cols, cols).ToArray());
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends))]
    public void RmsNorm_Rows_MatchReference(string backendName)
    {
        using IBackend backend = TestBackends.Create(backendName);
        foreach (int cols in new[] { 1, 7, 64, 896, 1000 })
        {
            const int Rows = 3;
            using var w = new StoredTensor("norm", KernelData.Floats(cols, cols), DType.BF16, [cols]);
            using DeviceWeight weight = backend.Upload(w.View);
            float[] x = KernelData.Floats(Rows * cols, cols + 1, scale: 3);

            float[] y = Run(backend, Rows, cols, [(x, cols)], (a, o) => backend.RmsNorm(a[0], weight, 1e-6f, o));

            for (int r = 0; r < Rows; r++)
            {
                double meanSquare = x.AsSpan(r * cols, cols).ToArray().Sum(v => (double)v * v) / cols;
                for (int c = 0; c < cols; c++)
                {
                    double expected = x[(r * cols) + c] / Math.Sqrt(meanSquare + 1e-6) * w.Exact[c];
                    AssertClose(expected, y[(r * cols) + c], Math.Abs(expected) + 1, $"cols {cols}: y[{r},{c}]");
                }
            }
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends))]
    public void Rope_LargePositions_MatchReference(string backendName)
    {
        using IBackend backend = TestBackends.Create(backendName);
        foreach (int headDim in new[] { 8, 64 })
        {
            var shape = new AttentionShape(4, 2, headDim, 1e6);
            int[] positions = [0, 1, 17, 30_000, 131_071];
            int rows = positions.Length, qDim = 4 * headDim, kDim = 2 * headDim;
            float[] q = KernelData.Floats(rows * qDim, headDim), k = KernelData.Floats(rows * kDim, headDim + 1);
            using DeviceBuffer qBuffer = backend.Allocate(rows, qDim), kBuffer = backend.Allocate(rows, kDim);
            Activation qa = qBuffer.Rows(rows), ka = kBuffer.Rows(rows);
            backend.Write(q, qa);
            backend.Write(k, ka);

            backend.Rope(qa, ka, positions, shape);

            float[] qOut = new float[rows * qDim], kOut = new float[rows * kDim];
            backend.Download(qa, qOut);
            backend.Download(ka, kOut);
            for (int r = 0; r < rows; r++)
            {
                CheckRotated(q.AsSpan(r * qDim, qDim), qOut.AsSpan(r * qDim, qDim), positions[r], shape, $"q row {r}, head_dim {headDim}");
                CheckRotated(k.AsSpan(r * kDim, kDim), kOut.AsSpan(r * kDim, kDim), positions[r], shape, $"k row {r}, head_dim {headDim}");
            }
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends))]
    public void Attention_PrefillThenDecode_MatchesCausalReference(string backendName)
    {
        using IBackend backend = TestBackends.Create(backendName);
        // Three slots: a prompt in slot 2 in one pass (prefill), then one decode row each in slots 2 and 0;
        // 600 and 1,100 positions, so a decode row attends over more than the GPU's split threshold (512). Query heads per
        // kv head: 2, 1 (no GQA), 7 (Qwen2.5: the GPU's workgroup takes all seven) and 9 (three workgroups of three).
        foreach ((int length, int headDim, int heads, int kvHeads) in new[] { (9, 8, 4, 2), (1100, 64, 4, 2), (9, 8, 4, 4), (40, 64, 14, 2), (600, 32, 18, 2) })
        {
            var shape = new AttentionShape(heads, kvHeads, headDim, 1e4);
            int kvDim = kvHeads * headDim;
            PrefillThenDecode(backend, DType.F32, length, shape, (rows, seed) => KernelData.Floats(rows * kvDim, seed), (rows, seed) => KernelData.Floats(rows * kvDim, seed));
        }
    }

    [SkippableTheory]
    [InlineData("cpu", 1)]
    [InlineData("cpu", 2)]
    [InlineData("cpu", 3)]
    [InlineData(TestBackends.Gpu, 1)]
    [InlineData(TestBackends.Gpu, 2)]
    [InlineData(TestBackends.Gpu, 3)]
    public void ForEachOnHost_RunsEveryItemOnceBeforeItReturns(string backendName, int threads)
    {
        // Items that take uneven time (so threads that finish early steal), each counted: every one runs exactly once,
        // and all have run when the call returns; then again with the same delegate (the CPU backend's job is reused).
        using IBackend backend = TestBackends.Create(backendName, threads);
        foreach (int count in new[] { 0, 1, 2, 3, 17, 64 })
        {
            var runs = new int[count];
            var finished = new bool[count];
            void Item(int i)
            {
                Interlocked.Increment(ref runs[i]);
                Thread.SpinWait(200 * (i % 7));
                Volatile.Write(ref finished[i], true);
            }

            backend.ForEachOnHost(count, Item);
            Assert.All(runs, (r, i) => Assert.True(r == 1, $"{count} items: item {i} ran {r} times"));
            Assert.All(finished, (f, i) => Assert.True(f, $"{count} items: item {i} had not finished when the call returned"));
            backend.ForEachOnHost(count, Item);
            Assert.All(runs, (r, i) => Assert.True(r == 2, $"{count} items, second call: item {i} ran {r} times in all"));
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Backends))]
    public void Attention_QuantizedCache_OfExactBlocks_MatchesCausalReference(string backendName)
    {
        // Keys and values that a q8_0 or q4_0 cache holds exactly once rotated as llama.cpp's (KvCacheRotation): each block
        // of 32 of a rotated head is an f16 scale (a power of two) times codes that its quantization gives back, so attention
        // over the cache is attention over the inputs, as exact as the f32 cache's. Stored unrotated, or with the queries or
        // outputs not rotated as the keys and values were, the outputs are far off. Heads of 64 (keys and values in blocks
        // of 64, the GPU's split decode past 512 positions), 128 (keys in blocks of 128, seven query heads a group), 192
        // (keys in blocks of 64), and 32 and 96 (no rotation; an odd number of blocks a head, so two heads' scales share a
        // word).
        using IBackend backend = TestBackends.Create(backendName);
        foreach (DType type in new[] { DType.Q8_0, DType.Q4_0 })
        {
            foreach ((int length, int headDim, int heads, int kvHeads) in new[] { (600, 64, 4, 2), (40, 128, 14, 2), (30, 192, 4, 2), (600, 32, 18, 2), (20, 96, 6, 3) })
            {
                var shape = new AttentionShape(heads, kvHeads, headDim, 1e4);
                bool rotates = headDim % 64 == 0;
                int keyBlock = rotates ? headDim & -headDim : 0, valueBlock = rotates ? 64 : 0;
                PrefillThenDecode(backend, type, length, shape,
                    (rows, seed) => KernelData.QuantizedExactHeads(type, rows, kvHeads, headDim, keyBlock, seed),
                    (rows, seed) => KernelData.QuantizedExactHeads(type, rows, kvHeads, headDim, valueBlock, seed));
            }
        }
    }

    /// <summary>
    /// Attention through a cache of <paramref name="type"/> with three slots: a prompt of <paramref name="length"/> in slot 2
    /// in one pass, then slot 0's first position, then one decode row each in slots 2 and 0 in one step, then slot 2 copied to
    /// 1 and decoded there; each against the causal reference over the keys and values given (rows, seed).
    /// </summary>
    private static void PrefillThenDecode(IBackend backend, DType type, int length, AttentionShape shape,
        Func<int, int, float[]> keysOf, Func<int, int, float[]> valuesOf)
    {
        int qDim = shape.NumHeads * shape.HeadDim, kvDim = shape.NumKvHeads * shape.HeadDim;
        using KvCache cache = backend.CreateKvCache(1, 3, length + 1, kvDim, type);
        var allKeys = new float[3][];
        var allValues = new float[3][];
        for (int s = 0; s < 3; s++)
        {
            allKeys[s] = keysOf(length + 1, (s * 10) + 1);
            allValues[s] = valuesOf(length + 1, (s * 10) + 2);
        }

        // Prefill slot 2 with positions 0..length-1, then slot 0 with position 0 only.
        float[] q = KernelData.Floats(length * qDim, 3);
        int[] slots = [.. Enumerable.Repeat(2, length)], positions = [.. Enumerable.Range(0, length)];
        float[] output = RunAttention(backend, cache, q, allKeys[2].AsSpan(0, length * kvDim), allValues[2].AsSpan(0, length * kvDim), slots, positions, shape);
        for (int r = 0; r < length; r += Math.Max(1, length / 40))
        {
            CheckAttention(q.AsSpan(r * qDim, qDim), allKeys[2], allValues[2], r + 1, output.AsSpan(r * qDim, qDim), shape, $"prefill row {r} of {length}");
        }

        float[] q0 = KernelData.Floats(qDim, 4);
        RunAttention(backend, cache, q0, allKeys[0].AsSpan(0, kvDim), allValues[0].AsSpan(0, kvDim), [0], [0], shape);

        // Decode: slot 2 at position `length` and slot 0 at position 1, in one step.
        float[] qd = KernelData.Floats(2 * qDim, 5);
        float[] kd = [.. allKeys[2].AsSpan(length * kvDim, kvDim), .. allKeys[0].AsSpan(kvDim, kvDim)];
        float[] vd = [.. allValues[2].AsSpan(length * kvDim, kvDim), .. allValues[0].AsSpan(kvDim, kvDim)];
        float[] decoded = RunAttention(backend, cache, qd, kd, vd, [2, 0], [length, 1], shape);
        CheckAttention(qd.AsSpan(0, qDim), allKeys[2], allValues[2], length + 1, decoded.AsSpan(0, qDim), shape, $"decode slot 2 at {length}");
        CheckAttention(qd.AsSpan(qDim, qDim), allKeys[0], allValues[0], 2, decoded.AsSpan(qDim, qDim), shape, "decode slot 0 at 1");

        // A copied slot attends exactly as its source.
        cache.CopySlot(2, 1, length + 1);
        float[] copied = RunAttentionOverCache(backend, cache, qd.AsSpan(0, qDim), 1, length, allKeys[2], allValues[2], shape);
        CheckAttention(qd.AsSpan(0, qDim), allKeys[2], allValues[2], length + 1, copied, shape, $"slot copied from 2, at {length}");
    }

    [SkippableTheory]
    [MemberData(nameof(Backends))]
    public void SwiGluAddMultiplyGather_MatchReference(string backendName)
    {
        foreach (int rows in new[] { 1, 3, 9 })
        {
            SwiGlu_MatchesReference(backendName, rows);
        }

        AddMultiplyAndGather_MatchReference(backendName);
    }

    /// <summary>
    /// The MLP at a decode row count (the GPU's gate, up and silu(gate) * up in one dispatch) or a prefill one, with an
    /// odd intermediate size so the last workgroup's rows run past the end.
    /// </summary>
    private static void SwiGlu_MatchesReference(string backendName, int rows)
    {
        using IBackend backend = TestBackends.Create(backendName);
        const int Hidden = 16, Intermediate = 41;
        using var gate = new StoredTensor("gate", KernelData.Floats(Intermediate * Hidden, 11), DType.BF16, [Intermediate, Hidden]);
        using var up = new StoredTensor("up", KernelData.Floats(Intermediate * Hidden, 12), DType.BF16, [Intermediate, Hidden]);
        using var down = new StoredTensor("down", KernelData.Floats(Hidden * Intermediate, 13), DType.BF16, [Hidden, Intermediate]);
        using DeviceWeight g = backend.Upload(gate.View), u = backend.Upload(up.View), d = backend.Upload(down.View);
        float[] x = KernelData.Floats(rows * Hidden, 14, scale: 4);
        using DeviceBuffer gateScratch = backend.Allocate(rows, Intermediate), upScratch = backend.Allocate(rows, Intermediate);

        float[] y = Run(backend, rows, Hidden, [(x, Hidden)], (a, o) => backend.SwiGlu(a[0], g, u, d, gateScratch.Rows(rows), upScratch.Rows(rows), o));

        for (int r = 0; r < rows; r++)
        {
            var hidden = new double[Intermediate];
            for (int i = 0; i < Intermediate; i++)
            {
                double gv = KernelData.DotExact(x.AsSpan(r * Hidden, Hidden), gate.Exact.AsSpan(i * Hidden, Hidden), out _);
                double uv = KernelData.DotExact(x.AsSpan(r * Hidden, Hidden), up.Exact.AsSpan(i * Hidden, Hidden), out _);
                hidden[i] = gv / (1 + Math.Exp(-gv)) * uv;
            }

            for (int o = 0; o < Hidden; o++)
            {
                double expected = 0, magnitude = 0;
                for (int i = 0; i < Intermediate; i++)
                {
                    expected += hidden[i] * down.Exact[(o * Intermediate) + i];
                    magnitude += Math.Abs(hidden[i] * down.Exact[(o * Intermediate) + i]);
                }

                AssertClose(expected, y[(r * Hidden) + o], magnitude + 1, $"swiglu y[{r},{o}]");
            }
        }

    }

    private static void AddMultiplyAndGather_MatchReference(string backendName)
    {
        using IBackend backend = TestBackends.Create(backendName);
        const int Rows = 3, Hidden = 16;
        float[] a = KernelData.Floats(Rows * Hidden, 15), b = KernelData.Floats(Rows * Hidden, 16);
        float[] sum = Run(backend, Rows, Hidden, [(a, Hidden), (b, Hidden)], (inputs, o) =>
        {
            backend.GatherRows(inputs[0], [0, 1, 2], o);
            backend.Add(o, inputs[1]);
        });
        for (int i = 0; i < a.Length; i++)
        {
            Assert.Equal(a[i] + b[i], sum[i]);
        }

        // 37 × 300 is more than one 256-wide workgroup of the GPU's elementwise shaders, and not a whole number of them.
        float[] x = KernelData.Floats(37 * 300, 17), factors = KernelData.Floats(37 * 300, 18);
        float[] product = Run(backend, 37, 300, [(x, 300), (factors, 300)], (inputs, o) =>
        {
            backend.GatherRows(inputs[0], [.. Enumerable.Range(0, 37)], o);
            backend.Multiply(o, inputs[1]);
        });
        for (int i = 0; i < x.Length; i++)
        {
            Assert.Equal(x[i] * factors[i], product[i]);
        }

        // Operands of two shapes (even of as many elements) are refused, naming both, before anything runs.
        using (DeviceBuffer wide = backend.Allocate(2, 8), tall = backend.Allocate(8, 2))
        {
            Activation w = wide.Rows(2), t = tall.Rows(8);
            Assert.Contains("x is [2, 8] and y [8, 2]", Assert.Throws<ArgumentException>(() => backend.Add(w, t)).Message, StringComparison.Ordinal);
            Assert.Contains("x is [2, 8] and factors [8, 2]", Assert.Throws<ArgumentException>(() => backend.Multiply(w, t)).Message, StringComparison.Ordinal);
            Assert.Contains("gate is [2, 8] and up [8, 2]", Assert.Throws<ArgumentException>(() => backend.SiluMultiply(w, t)).Message, StringComparison.Ordinal);
        }

        float[] gathered = Run(backend, 4, Hidden, [(a, Hidden)], (inputs, o) => backend.GatherRows(inputs[0], [2, 0, 2, 1], o));
        int[] order = [2, 0, 2, 1];
        for (int i = 0; i < order.Length; i++)
        {
            Assert.Equal(a.AsSpan(order[i] * Hidden, Hidden).ToArray(), gathered.AsSpan(i * Hidden, Hidden).ToArray());
        }
    }

    /// <summary>Writes the inputs, fills the output with NaN, runs <paramref name="op"/> and reads the output back.</summary>
    internal static float[] Run(IBackend backend, int rows, int cols, (float[] Values, int Cols)[] inputs, Action<Activation[], Activation> op)
    {
        var buffers = new List<DeviceBuffer>();
        try
        {
            var activations = new Activation[inputs.Length];
            for (int i = 0; i < inputs.Length; i++)
            {
                DeviceBuffer buffer = backend.Allocate(inputs[i].Values.Length / inputs[i].Cols, inputs[i].Cols);
                buffers.Add(buffer);
                activations[i] = buffer.Rows(buffer.CapacityRows);
                backend.Write(inputs[i].Values, activations[i]);
            }

            DeviceBuffer output = backend.Allocate(rows, cols);
            buffers.Add(output);
            Activation outputRows = output.Rows(rows);
            backend.Write(Enumerable.Repeat(float.NaN, rows * cols).ToArray(), outputRows);
            op(activations, outputRows);
            var result = new float[rows * cols];
            backend.Download(outputRows, result);
            return result;
        }
        finally
        {
            foreach (DeviceBuffer buffer in buffers)
            {
                buffer.Dispose();
            }
        }
    }

    private static float[] RunAttention(IBackend backend, KvCache cache, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        int[] slots, int[] positions, AttentionShape shape)
    {
        int rows = slots.Length, qDim = shape.NumHeads * shape.HeadDim, kvDim = shape.NumKvHeads * shape.HeadDim;
        using DeviceBuffer qb = backend.Allocate(rows, qDim), kb = backend.Allocate(rows, kvDim), vb = backend.Allocate(rows, kvDim), ob = backend.Allocate(rows, qDim);
        backend.Write(q, qb.Rows(rows));
        backend.Write(k, kb.Rows(rows));
        backend.Write(v, vb.Rows(rows));
        backend.Write(Enumerable.Repeat(float.NaN, rows * qDim).ToArray(), ob.Rows(rows));
        backend.Attention(qb.Rows(rows), kb.Rows(rows), vb.Rows(rows), cache, 0, slots, positions, shape, ob.Rows(rows));
        for (int i = 0; i < rows; i++)
        {
            cache.Lengths[slots[i]] = Math.Max(cache.Lengths[slots[i]], positions[i] + 1);   // as Qwen2Model.Forward keeps them
        }

        var output = new float[rows * qDim];
        backend.Download(ob.Rows(rows), output);
        return output;
    }

    /// <summary>Attention of one query at <paramref name="position"/> of a slot whose earlier positions are already cached (the row's own k/v rewritten).</summary>
    private static float[] RunAttentionOverCache(IBackend backend, KvCache cache, ReadOnlySpan<float> q, int slot, int position,
        float[] keys, float[] values, AttentionShape shape)
    {
        int kvDim = shape.NumKvHeads * shape.HeadDim;
        return RunAttention(backend, cache, q, keys.AsSpan(position * kvDim, kvDim), values.AsSpan(position * kvDim, kvDim), [slot], [position], shape);
    }

    private static void CheckAttention(ReadOnlySpan<float> q, float[] keys, float[] values, int length, ReadOnlySpan<float> actual, AttentionShape shape, string what)
    {
        int d = shape.HeadDim, kvDim = shape.NumKvHeads * d;
        double scale = 1 / Math.Sqrt(d);
        for (int h = 0; h < shape.NumHeads; h++)
        {
            int kvHead = h / shape.GroupSize;
            var scores = new double[length];
            for (int j = 0; j < length; j++)
            {
                double s = 0;
                for (int i = 0; i < d; i++)
                {
                    s += (double)q[(h * d) + i] * keys[(j * kvDim) + (kvHead * d) + i];
                }

                scores[j] = s * scale;
            }

            double max = scores.Max(), sum = scores.Sum(s => Math.Exp(s - max));
            for (int i = 0; i < d; i++)
            {
                double expected = 0;
                for (int j = 0; j < length; j++)
                {
                    expected += Math.Exp(scores[j] - max) / sum * values[(j * kvDim) + (kvHead * d) + i];
                }

                AssertClose(expected, actual[(h * d) + i], 1, $"{what}, head {h}, element {i}");
            }
        }
    }

    private static void CheckRotated(ReadOnlySpan<float> x, ReadOnlySpan<float> actual, int position, AttentionShape shape, string what)
    {
        int d = shape.HeadDim, half = d / 2;
        for (int h = 0; h < x.Length / d; h++)
        {
            for (int i = 0; i < half; i++)
            {
                double angle = position / Math.Pow(shape.RopeTheta, 2.0 * i / d);
                double a = x[(h * d) + i], b = x[(h * d) + half + i];
                AssertClose((a * Math.Cos(angle)) - (b * Math.Sin(angle)), actual[(h * d) + i], 2, $"{what}, head {h}, pair {i}");
                AssertClose((b * Math.Cos(angle)) + (a * Math.Sin(angle)), actual[(h * d) + half + i], 2, $"{what}, head {h}, pair {i}");
            }
        }
    }

    /// <summary>Within f32 rounding of a sum whose terms add up to <paramref name="magnitude"/> in absolute value.</summary>
    private static void AssertClose(double expected, float actual, double magnitude, string what) =>
        AssertClose(expected, actual, magnitude, 0, what);

    /// <summary>As above, give or take <paramref name="allowance"/> more (what a kernel may round by design).</summary>
    private static void AssertClose(double expected, float actual, double magnitude, double allowance, string what) =>
        Assert.True(Math.Abs(actual - expected) <= (2e-6 * magnitude) + allowance, $"{what}: {actual}, expected {expected}");

    /// <summary>
    /// The most that rounding the activations to 8 bits per <paramref name="block"/> (32 as llama.cpp's Q8_0 dot products do,
    /// and the CPU's decode for block-quantized weights; 256 as its Q8_K for the k-quants) can move a dot product: each value moves by at most half its block's step
    /// max|x| / 127, times its weight.
    /// </summary>
    private static double ActivationRounding(ReadOnlySpan<float> x, ReadOnlySpan<float> w, int block)
    {
        double bound = 0;
        for (int b = 0; b < x.Length; b += block)
        {
            double step = 0;
            for (int j = b; j < b + block; j++)
            {
                step = Math.Max(step, Math.Abs(x[j]) / 127);
            }

            for (int j = b; j < b + block; j++)
            {
                bound += Math.Abs(w[j]) * step / 2;
            }
        }

        return bound * 1.0001;
    }

    /// <summary>A weight stored in memory as a dtype, with the exact values it holds, and a view of it.</summary>
    internal sealed class StoredTensor : IDisposable
    {
        private GCHandle _pin;

        public StoredTensor(string name, float[] values, DType type, long[] shape)
        {
            (byte[] bytes, float[] exact) = KernelData.Store(values, type);
            Exact = exact;
            _pin = GCHandle.Alloc(bytes, GCHandleType.Pinned);
            View = new TensorView(name, "test", type, shape, _pin.AddrOfPinnedObject());
        }

        public float[] Exact { get; }

        public TensorView View { get; }

        public void Dispose() => _pin.Free();
    }
}
