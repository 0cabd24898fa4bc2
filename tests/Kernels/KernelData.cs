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

    /// <summary>
    /// [rows, kvHeads × headDim] keys or values that a q8_0 or q4_0 KV cache holds exactly once each head is rotated in
    /// blocks of <paramref name="rotationBlock"/> (0: not rotated). Every block of 32 of the rotated head is a power-of-two
    /// scale s times integer codes that quantize back to themselves: q8_0 codes in [-127, 127] with one of them ±127 (s from
    /// 2^-7 to 2^-9); q4_0 numbers ±(code − 8) with codes in [1, 15] and one code 0, the block's only value of magnitude 8 s
    /// (s from 2^-4 to 2^-6; the sign flips the stored scale's). The values are H times that (H = Hᵀ, H·H = I:
    /// H_n[i][j] = (-1)^popcount(i &amp; j) / sqrt(n)), in float64 then rounded.
    /// </summary>
    public static float[] QuantizedExactHeads(DType type, int rows, int kvHeads, int headDim, int rotationBlock, int seed)
    {
        var random = new Random(seed);
        var values = new float[rows * kvHeads * headDim];
        var exact = new double[headDim];
        for (int head = 0; head < rows * kvHeads; head++)
        {
            for (int b = 0; b < headDim; b += 32)
            {
                int extreme = random.Next(32);
                if (type == DType.Q8_0)
                {
                    double scale = Math.ScaleB(1, -7 - random.Next(3));
                    for (int i = 0; i < 32; i++)
                    {
                        exact[b + i] = scale * (i == extreme ? (random.Next(2) == 0 ? 127 : -127) : random.Next(-127, 128));
                    }
                }
                else
                {
                    double scale = Math.ScaleB(1, -4 - random.Next(3)) * (random.Next(2) == 0 ? 1 : -1);
                    for (int i = 0; i < 32; i++)
                    {
                        exact[b + i] = scale * ((i == extreme ? 0 : random.Next(1, 16)) - 8);
                    }
                }
            }

            Span<float> target = values.AsSpan(head * headDim, headDim);
            for (int i = 0; i < headDim; i++)
            {
                if (rotationBlock == 0)
                {
                    target[i] = (float)exact[i];
                    continue;
                }

                int first = i / rotationBlock * rotationBlock;
                double sum = 0;
                for (int j = 0; j < rotationBlock; j++)
                {
                    sum += (int.PopCount((i - first) & j) % 2 == 0 ? 1 : -1) * exact[first + j];
                }

                target[i] = (float)(sum / Math.Sqrt(rotationBlock));
            }
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

            case DType.Q8_0 or DType.Q4_0 or DType.Q5_0 or DType.Q4_1 or DType.Q5_1 or DType.Q4_K or DType.Q5_K or DType.Q6_K:
                // llama.cpp's reference quantizer for the type (as qwensharp quantize writes it; tested byte for byte against
                // llama.cpp's), and the values the blocks hold as the format's dequantizer (tested against llama.cpp's) reads them.
                return Stored(TensorValues.FromSingle(values, type), type, values.Length);

            case DType.Q2_K or DType.Q3_K or DType.IQ4_XS:
            {
                // No quantizer (QwenSharp reads Q2_K, Q3_K and IQ4_XS, never writes them): random codes and scales (and Q2_K's
                // mins), and small f16 d (and dmin), drawn from the values' count so that each shape gets its own blocks.
                int blockBytes = DTypes.BlockBytes(type);
                int[] halves = type switch { DType.Q2_K => [80, 82], DType.Q3_K => [108], _ => [0] };
                float magnitude = type switch { DType.Q2_K => 0.004f, DType.Q3_K => 0.002f, _ => 0.0004f };    // Q3_K: d × (sc - 32) × -4..3; IQ4_XS: d × (ls - 32) × up to 127
                var blocks = new byte[DTypes.ByteLength(type, values.Length)];
                var random = new Random(values.Length);
                random.NextBytes(blocks);
                for (int b = 0; b < blocks.Length / blockBytes; b++)
                {
                    foreach (int at in halves)
                    {
                        BitConverter.TryWriteBytes(blocks.AsSpan((b * blockBytes) + at), HalfBits.FromSingle((float)((random.NextDouble() - 0.3) * magnitude)));
                    }
                }

                return Stored(blocks, type, values.Length);
            }

            case DType.F32:
                return (MemoryMarshal.AsBytes(values.AsSpan()).ToArray(), [.. values]);

            default:
                throw new ArgumentException($"no test storage for {type}");
        }
    }

    /// <summary>Block-quantized bytes with the values they hold (<see cref="TensorValues.ToSingle(TensorView)"/>).</summary>
    private static unsafe (byte[] Bytes, float[] Exact) Stored(byte[] blocks, DType type, int count)
    {
        fixed (byte* data = blocks)
        {
            return (blocks, TensorValues.ToSingle(new TensorView("w", "test data", type, [count], (nint)data)));
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
