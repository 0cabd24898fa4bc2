using System.Runtime.InteropServices;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;

namespace QwenSharp.Tests.Kernels;

/// <summary>
/// One-token decode with and without its weight prefetch (<see cref="Prefetch.InDecode"/>, which Zen 5 answers no for
/// BF16, F16 and Q4_0, other CPUs yes, and <c>QWENSHARP_DECODE_PREFETCH</c> may turn either way for those and F32 and
/// Q8_0; F16's are in <see cref="F16ExactGroupMapTests"/>): on every path the same sums bit for bit, each within rounding
/// of the exact product, so that any machine runs both instantiations of each kernel the switch chooses between.
/// </summary>
public sealed class DecodePrefetchTests
{
    public static TheoryData<KernelPath> Paths() => [.. KernelPaths.All];

    [Theory]
    [MemberData(nameof(Paths))]
    public void Bf16_and_f32_rows_give_the_same_sums_with_and_without_prefetch(KernelPath path)
    {
        // Rows narrower than RowsApart.FloatMinimumWidth go one by one; wider ones in fours apart where RowsApart pays,
        // so both settings of that switch run too. Widths with a vector and a scalar tail; 2 to 3 rows left over.
        int wide = RowsApart.FloatMinimumWidth;
        foreach (var (rows, cols) in new[] { (9, 896), (7, 200), (38, wide + 35), (13, wide + 1003) })
        {
            (byte[] bf16, float[] exact) = KernelData.Store(KernelData.Floats(rows * cols, 41, 0.05f), DType.BF16);
            byte[] f32 = MemoryMarshal.AsBytes(exact.AsSpan()).ToArray();
            float[] x = KernelData.Floats(cols, 42);
            foreach (bool apart in new[] { false, true })
            {
                foreach (DType type in new[] { DType.BF16, DType.F32 })
                {
                    byte[] weights = type == DType.BF16 ? bf16 : f32;
                    float[] with = Decode(type, weights, cols, rows, x, path, apart, prefetch: true);
                    float[] without = Decode(type, weights, cols, rows, x, path, apart, prefetch: false);
                    for (int r = 0; r < rows; r++)
                    {
                        double expected = KernelData.DotExact(exact.AsSpan(r * cols, cols), x, out double magnitude);
                        Assert.True(BitConverter.SingleToInt32Bits(with[r]) == BitConverter.SingleToInt32Bits(without[r]),
                            $"{type} {path} {rows} x {cols}, rows apart {apart}, row {r}: {with[r]} with prefetch, {without[r]} without");
                        Assert.True(Math.Abs(with[r] - expected) <= 1e-5 * (magnitude + 1e-9), $"{type} {path} {rows} x {cols}, rows apart {apart}, row {r}: {with[r]}, exact {expected}");
                    }
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void Q4_0_and_q8_0_rows_give_the_same_sums_with_and_without_prefetch(KernelPath path)
    {
        // Q4_0 reads four rows a quarter apart and the last ones alone; Q8_0 (which keeps its prefetch unless told
        // otherwise) pairs or goes row by row. Odd and even block counts; 1 to 3 rows left over.
        foreach (DType type in new[] { DType.Q4_0, DType.Q8_0 })
        {
            foreach (var (rows, blocks) in new[] { (9, 3), (14, 28), (7, 4), (1, 5) })
            {
                byte[] matrix = Q8IntegerKernelTests.RandomRows(type, rows * blocks, 43 + rows);
                float[] x = KernelData.Floats(blocks * 32, 44, scale: 2f);
                var q8 = new Q8Activations();
                q8.Quantize(x, 1, x.Length, path);
                var with = new float[rows];
                var without = new float[rows];
                with.AsSpan().Fill(float.NaN);
                without.AsSpan().Fill(float.NaN);
                using (Prefetch.Assume(true))
                {
                    Q8IntegerKernel.DotRows(path, type, matrix, rows, q8.Row(0), with);
                }

                using (Prefetch.Assume(false))
                {
                    Q8IntegerKernel.DotRows(path, type, matrix, rows, q8.Row(0), without);
                }

                int rowBytes = blocks * DTypes.BlockBytes(type);
                for (int r = 0; r < rows; r++)
                {
                    float scalar = Q8IntegerKernel.Dot(KernelPath.Scalar, type, matrix.AsSpan(r * rowBytes, rowBytes), q8.Row(0));
                    Assert.True(BitConverter.SingleToInt32Bits(with[r]) == BitConverter.SingleToInt32Bits(without[r]),
                        $"{type} {path} {rows} x {blocks} blocks, row {r}: {with[r]} with prefetch, {without[r]} without");
                    Assert.True(Math.Abs(with[r] - scalar) <= 1e-5f * Math.Max(1f, Math.Abs(scalar)), $"{type} {path} {rows} x {blocks} blocks, row {r}: {with[r]}, scalar {scalar}");
                }
            }
        }
    }

    private static float[] Decode(DType type, byte[] weights, int cols, int rows, float[] x, KernelPath path, bool apart, bool prefetch)
    {
        var y = new float[rows];
        y.AsSpan().Fill(float.NaN);
        using (RowsApart.Assume(apart))
        using (Prefetch.Assume(prefetch))
        {
            if (type == DType.BF16)
            {
                MatMul.Rows<Bf16Load>(path, weights, cols, rows, x, default, 1, default, y, 0, rows, []);
            }
            else
            {
                MatMul.Rows<F32Load>(path, weights, cols, rows, x, default, 1, default, y, 0, rows, []);
            }
        }

        return y;
    }
}
