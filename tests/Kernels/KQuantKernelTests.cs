using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;
using QwenSharp.Numerics;

namespace QwenSharp.Tests.Kernels;

/// <summary>The Q4_K and Q6_K dot products on every kernel path against the format's dequantization (KQuantBlocks, tested
/// bit for bit against llama.cpp in GgmlDequantizeTests), dotted in double.</summary>
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
    public void Dot_matches_the_dequantized_row_on_every_path(KernelPath path, DType type)
    {
        foreach (int blocks in new[] { 1, 2, 7 })
        {
            byte[] row = RandomRow(type, blocks, (blocks * 31) + (int)type);
            float[] x = KernelData.Floats(blocks * 256, blocks);
            var w = new float[x.Length];
            KQuantKernel.Dequantize(type, row, w);
            double expected = 0, magnitude = 0;
            for (int i = 0; i < x.Length; i++)
            {
                expected += (double)w[i] * x[i];
                magnitude += Math.Abs((double)w[i] * x[i]);
            }

            float actual = KQuantKernel.Dot(path, type, row, x);
            Assert.True(Math.Abs(actual - expected) <= 1e-5 * magnitude, $"{type} {path}, {blocks} blocks: {actual}, expected {expected} (magnitude {magnitude})");
        }
    }
}
