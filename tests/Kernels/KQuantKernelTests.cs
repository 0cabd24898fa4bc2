using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;
using QwenSharp.Numerics;

namespace QwenSharp.Tests.Kernels;

/// <summary>The Q4_K and Q6_K integer dot products on every kernel path against the format's dequantization (KQuantBlocks,
/// tested bit for bit against llama.cpp in GgmlDequantizeTests) and the Q8_K activations, dotted in double.</summary>
public sealed class KQuantKernelTests
{
    public static TheoryData<KernelPath, DType> PathsAndTypes()
    {
        var data = new TheoryData<KernelPath, DType>();
        foreach (KernelPath path in KernelPaths.All)
        {
            data.Add(path, DType.Q4_K);
            data.Add(path, DType.Q6_K);
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
            if (type == DType.Q4_K)
            {
                BitConverter.TryWriteBytes(block, Scale());
                BitConverter.TryWriteBytes(block[2..], Scale());
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
            (ReadOnlyMemory<sbyte> codes, ReadOnlyMemory<float> scales, ReadOnlyMemory<int> sums) = q8.Row(0);

            float actual = KQuantIntegerKernel.Dot(path, type, row, codes.Span, scales.Span, sums.Span);

            // The definition: the weights dequantized, the activations as d × code, dotted in double.
            var w = new float[x.Length];
            KQuantKernel.Dequantize(type, row, w);
            double expected = 0, magnitude = 0;
            for (int i = 0; i < x.Length; i++)
            {
                double a = (double)scales.Span[i / 256] * codes.Span[i];
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

    [Fact]
    public void Q8_k_quantization_follows_ggml()
    {
        // The largest magnitude maps to -127 (ggml divides by the signed maximum), ties round to even, and the sums of 16 add the codes.
        var x = new float[256];
        x[0] = 2.54f;     // the maximum: code -127, d = 2.54 / -127 = -0.02
        x[1] = -1.27f;    // -1.27 / -0.02 = 63.5 -> 64 (ties to even)
        x[2] = 0.01f;     // 0.01 / -0.02 = -0.5 -> -0 (ties to even)
        x[17] = -0.03f;   // 1.5 -> 2
        var q8 = new Q8KActivations();
        q8.Quantize(x, 1, 256);
        (ReadOnlyMemory<sbyte> codes, ReadOnlyMemory<float> scales, ReadOnlyMemory<int> sums) = q8.Row(0);
        Assert.Equal(-0.02f, scales.Span[0], 1e-7f);
        Assert.Equal(new sbyte[] { -127, 64, 0 }, codes.Span[..3].ToArray());
        Assert.Equal(2, codes.Span[17]);
        Assert.Equal(-127 + 64, sums.Span[0]);
        Assert.Equal(2, sums.Span[1]);
    }
}
