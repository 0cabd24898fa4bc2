using System.Runtime.InteropServices;
using QwenSharp.Backend;
using QwenSharp.Cpu;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;

namespace QwenSharp.Tests.Kernels;

/// <summary>
/// Keys and values stored as f16 or bf16: narrowed by rounding to nearest even (bf16 checked against a rounding written
/// here by distance; f16 is the runtime's <see cref="Half"/> conversion), and read by attention as exactly the f32 kernel
/// reads the same numbers widened, on every kernel path.
/// </summary>
public sealed class KvCacheTypeTests
{
    public static TheoryData<KernelPath, int, DType> PathsHeadSizesAndTypes()
    {
        var data = new TheoryData<KernelPath, int, DType>();
        foreach (KernelPath path in KernelPaths.All)
        {
            foreach (int d in new[] { 64, 24, 128 })
            {
                data.Add(path, d, DType.F16);
                data.Add(path, d, DType.BF16);
            }
        }

        return data;
    }

    [Fact]
    public void NarrowBf16_RoundsToTheNearestBf16_TiesToEven()
    {
        // Random values over many binades, the halfway points between neighbours (ties: to the even one), and the edges.
        var random = new Random(11);
        var values = new List<float>();
        for (int i = 0; i < 20000; i++)
        {
            values.Add(BitConverter.Int32BitsToSingle(random.Next(0x00800000, 0x7F000000)) * (random.Next(2) == 0 ? 1 : -1));
            uint even = (uint)random.Next(0x0080, 0x7F00) << 16;
            values.Add(BitConverter.UInt32BitsToSingle(even | 0x8000));           // halfway above an even or odd bf16
            values.Add(BitConverter.UInt32BitsToSingle((even | 0x10000) | 0x8000));
        }

        values.AddRange([0f, -0f, float.Epsilon, -float.Epsilon, 1e-40f, float.MaxValue, float.MinValue, float.PositiveInfinity, float.NegativeInfinity]);
        float[] source = [.. values];
        var stored = new byte[source.Length * 2];
        KvNarrow.Run(DType.BF16, source, stored);
        ushort[] bits = MemoryMarshal.Cast<byte, ushort>(stored).ToArray();
        for (int i = 0; i < source.Length; i++)
        {
            Assert.True(bits[i] == NearestBf16(source[i]), $"{source[i]:R}: stored 0x{bits[i]:X4}, nearest 0x{NearestBf16(source[i]):X4}");
        }
    }

    [Fact]
    public void NarrowBf16_KeepsNaN()
    {
        var stored = new byte[2];
        KvNarrow.Run(DType.BF16, [float.NaN], stored);
        Assert.True(float.IsNaN(BitConverter.Int32BitsToSingle(MemoryMarshal.Read<ushort>(stored) << 16)));
    }

    [Theory]
    [MemberData(nameof(PathsHeadSizesAndTypes))]
    public void Attention_OnAHalfWidthCache_IsTheF32KernelOnTheStoredNumbers(KernelPath path, int d, DType type)
    {
        // One sequence's cache of two key-value heads (the second read); lengths within a tile, over several tiles with a
        // tail past a multiple of four, and one position; three query heads share the key-value head, over two rows.
        foreach (int length in new[] { 1, 37, 300 })
        {
            const int heads = 3, rows = 2;
            int kvDim = 2 * d, offset = d, rowStride = heads * d, firstLength = length - rows + 1;
            float[] queries = KernelData.Floats(rows * rowStride, 21), keys = KernelData.Floats(length * kvDim, 22, 4f), values = KernelData.Floats(length * kvDim, 23, 4f);
            byte[] keyBytes = Narrow(type, keys), valueBytes = Narrow(type, values);
            float[] keysRead = Widen(type, keyBytes), valuesRead = Widen(type, valueBytes);
            float scale = 1f / MathF.Sqrt(d);

            if (firstLength >= 1)
            {
                float[] ours = new float[rows * rowStride], expected = new float[rows * rowStride];
                Block(type, path, queries, rowStride, rows, keyBytes, valueBytes, kvDim, offset, firstLength, scale, heads, d, ours);
                AttentionKernel<F32Load>.Block(path, queries, rowStride, rows, MemoryMarshal.AsBytes(keysRead.AsSpan()), MemoryMarshal.AsBytes(valuesRead.AsSpan()),
                    kvDim, offset, firstLength, scale, heads, d, new float[rows * heads * length], expected);
                AssertSameBits(expected, ours, $"{type} block, {length} positions");
            }

            float[] head = new float[d], headExpected = new float[d];
            if (type == DType.F16)
            {
                AttentionKernel<F16Load>.Head(path, queries.AsSpan(0, d), keyBytes, valueBytes, kvDim, offset, length, scale, new float[length], head);
            }
            else
            {
                AttentionKernel<Bf16Load>.Head(path, queries.AsSpan(0, d), keyBytes, valueBytes, kvDim, offset, length, scale, new float[length], head);
            }

            AttentionKernel<F32Load>.Head(path, queries.AsSpan(0, d), MemoryMarshal.AsBytes(keysRead.AsSpan()), MemoryMarshal.AsBytes(valuesRead.AsSpan()),
                kvDim, offset, length, scale, new float[length], headExpected);
            AssertSameBits(headExpected, head, $"{type} head, {length} positions");
        }
    }

    [Theory]
    [InlineData(DType.F16)]
    [InlineData(DType.BF16)]
    public void CopySlot_CopiesEveryStoredByte(DType type)
    {
        const int kvDim = 24, positions = 5;
        using var cache = new CpuKvCache(layers: 2, slots: 2, capacity: 8, kvDim, type);
        Assert.Equal(2L * 2 * 2 * 8 * kvDim * 2, cache.ByteSize);
        for (int layer = 0; layer < 2; layer++)
        {
            for (int p = 0; p < positions; p++)
            {
                cache.Store(layer, 0, p, KernelData.Floats(kvDim, (layer * 10) + p), KernelData.Floats(kvDim, 100 + (layer * 10) + p));
            }
        }

        cache.Lengths[0] = positions;
        cache.CopySlot(0, 1, positions);
        int bytes = positions * cache.PositionStride * 2;
        for (int layer = 0; layer < 2; layer++)
        {
            Assert.True(cache.Keys(layer, 0)[..bytes].SequenceEqual(cache.Keys(layer, 1)[..bytes]), $"layer {layer}: keys differ after the copy");
            Assert.True(cache.Values(layer, 0)[..bytes].SequenceEqual(cache.Values(layer, 1)[..bytes]), $"layer {layer}: values differ after the copy");
        }
    }

    [Fact]
    public void KvCache_RefusesTypesItCannotHold()
    {
        var error = Assert.Throws<ArgumentException>(() => new CpuKvCache(1, 1, 4, 8, DType.Q8_0));
        Assert.Contains("f32, f16, bf16, not Q8_0", error.Message, StringComparison.Ordinal);
    }

    private static void Block(DType type, KernelPath path, float[] queries, int rowStride, int rows, byte[] keys, byte[] values, int kvDim, int offset,
        int firstLength, float scale, int heads, int d, float[] outputs)
    {
        var scores = new float[rows * heads * (firstLength + rows - 1)];
        if (type == DType.F16)
        {
            AttentionKernel<F16Load>.Block(path, queries, rowStride, rows, keys, values, kvDim, offset, firstLength, scale, heads, d, scores, outputs);
        }
        else
        {
            AttentionKernel<Bf16Load>.Block(path, queries, rowStride, rows, keys, values, kvDim, offset, firstLength, scale, heads, d, scores, outputs);
        }
    }

    private static byte[] Narrow(DType type, float[] values)
    {
        var bytes = new byte[values.Length * 2];
        KvNarrow.Run(type, values, bytes);
        return bytes;
    }

    /// <summary>The numbers the bytes hold, widened without our loaders: the runtime's Half, and bf16 as an f32's top half.</summary>
    private static float[] Widen(DType type, byte[] bytes) =>
        [.. MemoryMarshal.Cast<byte, ushort>(bytes).ToArray().Select(b => type == DType.F16 ? (float)BitConverter.UInt16BitsToHalf(b) : BitConverter.Int32BitsToSingle(b << 16))];

    /// <summary>The bf16 nearest to <paramref name="value"/> by exact distance (ties to the even code), infinities beyond the largest.</summary>
    private static ushort NearestBf16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        ushort down = (ushort)(bits >> 16);
        if (float.IsInfinity(value) || (bits & 0xFFFF) == 0)
        {
            return down;
        }

        // Away from zero; past the largest finite bf16 the next one up is infinity, which rounding treats as 2^128.
        ushort up = (ushort)(down + 1);
        double upValue = (up & 0x7FFF) == 0x7F80 ? Math.CopySign(Math.Pow(2, 128), value) : BitConverter.Int32BitsToSingle(up << 16);
        double below = Math.Abs(value - (double)BitConverter.Int32BitsToSingle(down << 16));
        double above = Math.Abs(upValue - value);

        return below < above ? down : above < below ? up : (down & 1) == 0 ? down : up;
    }

    private static void AssertSameBits(float[] expected, float[] actual, string what)
    {
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]),
                $"{what}, element {i}: {actual[i]:R}, the f32 kernel on the stored numbers {expected[i]:R}");
        }
    }
}
