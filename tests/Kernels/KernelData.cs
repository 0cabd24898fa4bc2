using System.Runtime.InteropServices;
using QwenSharp.Formats;
using QwenSharp.Numerics;

namespace QwenSharp.Tests.Kernels;

/// <summary>Seeded random kernel inputs, and weights stored as each dtype with their exact f32 values.</summary>
internal static class KernelData
{
    /// <summary>Every length 0..257 (so every tail path runs) and the real Qwen2.5-0.5B sizes.</summary>
    public static IEnumerable<int> Lengths => Enumerable.Range(0, 258).Concat([896, 4864, 151936]);

    public static float[] Floats(int length, int seed, float scale = 1f)
    {
        var random = new Random(seed);
        var values = new float[length];
        for (int i = 0; i < length; i++)
        {
            values[i] = (float)((random.NextDouble() * 2) - 1) * scale;
        }

        return values;
    }

    /// <summary>Stores <paramref name="values"/> as <paramref name="type"/>; returns the bytes and the exact values they hold.</summary>
    public static (byte[] Bytes, float[] Exact) Store(float[] values, DType type)
    {
        switch (type)
        {
            case DType.BF16:
            {
                ushort[] bits = [.. values.Select(BFloat16Bits.FromSingle)];
                return (MemoryMarshal.AsBytes(bits.AsSpan()).ToArray(), [.. bits.Select(b => BitConverter.Int32BitsToSingle(b << 16))]);
            }

            case DType.F16:
            {
                Half[] halves = [.. values.Select(v => (Half)v)];
                return (MemoryMarshal.AsBytes(halves.AsSpan()).ToArray(), [.. halves.Select(h => (float)h)]);
            }

            case DType.Q8_0:
            {
                var blocks = new byte[DTypes.ByteLength(DType.Q8_0, values.Length)];
                Q8_0Blocks.Quantize(values, blocks);
                var exact = new float[values.Length];
                Q8_0Blocks.Dequantize(blocks, exact);
                return (blocks, exact);
            }

            case DType.Q4_0:
            {
                var blocks = new byte[DTypes.ByteLength(DType.Q4_0, values.Length)];
                LegacyQuantBlocks.QuantizeQ4_0(values, blocks);
                var exact = new float[values.Length];
                LegacyQuantBlocks.DequantizeQ4_0(blocks, exact);
                return (blocks, exact);
            }

            case DType.Q4_K or DType.Q5_K or DType.Q6_K:
            {
                var blocks = new byte[DTypes.ByteLength(type, values.Length)];
                var exact = new float[values.Length];
                if (type == DType.Q4_K)
                {
                    KQuantQuantizer.QuantizeQ4_K(values, blocks);
                    KQuantBlocks.DequantizeQ4_K(blocks, exact);
                }
                else if (type == DType.Q5_K)
                {
                    KQuantQuantizer.QuantizeQ5_K(values, blocks);
                    KQuantBlocks.DequantizeQ5_K(blocks, exact);
                }
                else
                {
                    KQuantQuantizer.QuantizeQ6_K(values, blocks);
                    KQuantBlocks.DequantizeQ6_K(blocks, exact);
                }

                return (blocks, exact);
            }

            case DType.F32:
                return (MemoryMarshal.AsBytes(values.AsSpan()).ToArray(), [.. values]);

            default:
                throw new ArgumentException($"no test storage for {type}");
        }
    }

    public static double DotExact(ReadOnlySpan<float> a, ReadOnlySpan<float> b, out double magnitude)
    {
        double sum = 0;
        magnitude = 0;
        for (int i = 0; i < a.Length; i++)
        {
            sum += (double)a[i] * b[i];
            magnitude += Math.Abs((double)a[i] * b[i]);
        }

        return sum;
    }
}
