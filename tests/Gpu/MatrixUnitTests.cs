using QwenSharp.Backend;
using QwenSharp.Formats;
using QwenSharp.Gpu;
using QwenSharp.Tests.Backend;
using QwenSharp.Tests.Kernels;
using QwenSharp.Tests.Support;

namespace QwenSharp.Tests.Gpu;

/// <summary>
/// Prefill products on the device's matrix units (VK_KHR_cooperative_matrix: split_rows.comp and gemm_coop.comp). They run
/// where the Vulkan device has f16 matrix units: Mesa 26.1's lavapipe (Debian 13), which .ci/run fetches for a second pass over
/// the GPU tests with QWENSHARP_REQUIRE_MATRIX_UNITS=1 (then a device without them fails these tests instead of skipping).
/// </summary>
public sealed class MatrixUnitTests
{
    private static VulkanBackend OpenWithMatrixUnits()
    {
        TestBackends.RequireGpu();
        var backend = new VulkanBackend(new VulkanBackendOptions { MatrixUnits = true });
        if (!backend.UsesMatrixUnits)
        {
            string why = $"{backend.Device.Name} has no f16 matrix units (VK_KHR_cooperative_matrix) that pass the backend's check";
            backend.Dispose();
            Assert.False(Environment.GetEnvironmentVariable("QWENSHARP_REQUIRE_MATRIX_UNITS") == "1", why);
            Skip.If(true, why);
        }

        return backend;
    }

    [SkippableTheory]
    [InlineData(DType.BF16)]
    [InlineData(DType.F16)]
    [InlineData(DType.F32)]
    [InlineData(DType.Q8_0)]
    [InlineData(DType.Q4_0)]
    [InlineData(DType.Q4_1)]
    [InlineData(DType.Q5_1)]
    [InlineData(DType.Q2_K)]
    [InlineData(DType.Q3_K)]
    [InlineData(DType.IQ4_XS)]
    [InlineData(DType.Q4_K)]
    [InlineData(DType.Q5_K)]
    [InlineData(DType.Q6_K)]
    public void Linear_PrefillRows_RunOnMatrixUnitsWithinF32Accuracy(DType type)
    {
        using VulkanBackend backend = OpenWithMatrixUnits();
        IBackend b = backend;
        // Partial 64-row and 64-output tiles, K not a whole number of 32-wide steps (for the types that allow it); rows of
        // very different sizes, from 1e-6 to 1e6 (f16 alone holds neither end: each row is scaled by its own power of two).
        // The weights are the product's exact stored values (dequantized in double), so no type gets an allowance.
        (int, int, int)[] shapes = type switch
        {
            DType.Q2_K or DType.Q3_K or DType.IQ4_XS or DType.Q4_K or DType.Q5_K or DType.Q6_K => [(9, 5, 256), (70, 130, 512)],
            DType.Q8_0 or DType.Q4_0 or DType.Q4_1 or DType.Q5_1 => [(9, 5, 32), (70, 130, 160), (130, 72, 256)],
            _ => [(9, 5, 16), (70, 130, 136), (130, 72, 250)],
        };
        foreach ((int rows, int outputs, int inputs) in shapes)
        {
            using var w = new BackendConformanceTests.StoredTensor("w", KernelData.Floats(outputs * inputs, inputs), type, [outputs, inputs]);
            using var bias = new BackendConformanceTests.StoredTensor("b", KernelData.Floats(outputs, 3), DType.F32, [outputs]);
            using DeviceWeight weight = b.Upload(w.View), biasWeight = b.Upload(bias.View);
            float[] x = KernelData.Floats(rows * inputs, rows);
            for (int r = 0; r < rows; r++)
            {
                float size = MathF.Pow(10, (r % 13) - 6);
                for (int i = 0; i < inputs; i++)
                {
                    x[(r * inputs) + i] *= size;
                }
            }

            long before = backend.MatrixUnitProducts;
            float[] y = BackendConformanceTests.Run(b, rows, outputs, [(x, inputs)], (a, o) => b.Linear(a[0], weight, biasWeight, o));

            Assert.Equal(before + 1, backend.MatrixUnitProducts);
            for (int r = 0; r < rows; r++)
            {
                for (int o = 0; o < outputs; o++)
                {
                    double expected = KernelData.DotExact(x.AsSpan(r * inputs, inputs), w.Exact.AsSpan(o * inputs, inputs), out double magnitude) + bias.Exact[o];
                    double actual = y[(r * outputs) + o];
                    Assert.True(Math.Abs(actual - expected) <= 2e-6 * (magnitude + Math.Abs(bias.Exact[o])),
                        $"{type} [{outputs}x{inputs}] rows {rows}: y[{r},{o}] = {actual}, expected {expected} (sum of |products| {magnitude:E2})");
                }
            }
        }
    }

    [SkippableFact]
    public void Linear_OddWidthOrDecodeRows_StayOffTheMatrixUnits()
    {
        using VulkanBackend backend = OpenWithMatrixUnits();
        IBackend b = backend;
        foreach ((DType type, int rows, int inputs) in new[] { (DType.BF16, 70, 15), (DType.F32, 70, 15), (DType.Q8_0, 8, 32), (DType.BF16, 8, 16) })
        {
            using var w = new BackendConformanceTests.StoredTensor("w", KernelData.Floats(24 * inputs, 5), type, [24, inputs]);
            using DeviceWeight weight = b.Upload(w.View);
            long before = backend.MatrixUnitProducts;
            BackendConformanceTests.Run(b, rows, 24, [(KernelData.Floats(rows * inputs, 6), inputs)], (a, o) => b.Linear(a[0], weight, null, o));
            Assert.Equal(before, backend.MatrixUnitProducts);
        }
    }

    [SkippableFact]
    public void Options_FalseOrByDefaultOnACpuDevice_KeepTheF32Gemm()
    {
        bool cpu;
        using (VulkanBackend on = OpenWithMatrixUnits())
        {
            Assert.Contains("f16 matrix units", on.Description, StringComparison.Ordinal);
            cpu = on.Device.Type == "cpu";
        }

        using var off = new VulkanBackend(new VulkanBackendOptions { MatrixUnits = false });
        Assert.False(off.UsesMatrixUnits);
        Assert.DoesNotContain("matrix units", off.Description, StringComparison.Ordinal);
        using var byDefault = new VulkanBackend();
        Assert.Equal(!cpu, byDefault.UsesMatrixUnits);
    }
}
