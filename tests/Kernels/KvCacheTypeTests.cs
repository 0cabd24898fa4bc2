using System.Runtime.InteropServices;
using QwenSharp.Backend;
using QwenSharp.Cpu;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;

namespace QwenSharp.Tests.Kernels;

/// <summary>
/// Keys and values stored as f16, bf16, q8_0 or q4_0: narrowed by rounding to nearest even (bf16 checked against a
/// rounding written here by distance; f16 is the runtime's <see cref="Half"/> conversion), q8_0 and q4_0 a block of 32 at a
/// time (each value within half a step of the block's f16 scale, decoded here by hand), and read by attention as exactly
/// the f32 kernel reads the same numbers widened, on every kernel path.
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

            // q8_0 and q4_0 heads are whole blocks of 32.
            foreach (int d in new[] { 64, 32, 128 })
            {
                data.Add(path, d, DType.Q8_0);
                data.Add(path, d, DType.Q4_0);
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

    [Fact]
    public void NarrowQ8_0_StoresEachBlockAsCodesOfItsLargestMagnitudeOver127()
    {
        // Blocks over many scales, one of zeros, one holding a single value, and negative zeros.
        var random = new Random(12);
        var values = new List<float>();
        for (int b = 0; b < 64; b++)
        {
            float scale = MathF.Pow(2, random.Next(-20, 12));
            values.AddRange(Enumerable.Range(0, 32).Select(_ => (float)((random.NextDouble() * 2) - 1) * scale));
        }

        values.AddRange(new float[32]);
        values.AddRange(Enumerable.Range(0, 32).Select(i => i == 5 ? -3.5f : 0f));
        values.AddRange(Enumerable.Range(0, 32).Select(i => i % 2 == 0 ? -0f : 0.25f));
        float[] source = [.. values];
        byte[] stored = Narrow(DType.Q8_0, source);
        Assert.Equal(source.Length / 32 * 34, stored.Length);
        float[] read = Widen(DType.Q8_0, stored);
        for (int b = 0; b < source.Length / 32; b++)
        {
            float largest = source.Skip(b * 32).Take(32).Max(MathF.Abs);
            float step = (float)BitConverter.UInt16BitsToHalf(MemoryMarshal.Read<ushort>(stored.AsSpan(b * 34)));
            Assert.True(step == (float)(Half)(largest / 127), $"block {b}: scale {step:R}, not the f16 of {largest:R} / 127");
            sbyte[] codes = MemoryMarshal.Cast<byte, sbyte>(stored.AsSpan((b * 34) + 2, 32)).ToArray();
            Assert.True(largest == 0 || codes.Max(c => Math.Abs((int)c)) == 127, $"block {b}: no code reaches 127");
            for (int i = b * 32; i < (b + 1) * 32; i++)
            {
                // The nearest code on the exact step (as llama.cpp, the codes come from largest / 127, the stored scale is its
                // f16): within half that step, plus what rounding the step to f16 moves a code of at most 127.
                double exact = largest / 127.0, bound = (exact / 2 * 1.0001) + (127 * Math.Abs(step - exact));
                Assert.True(Math.Abs(read[i] - (double)source[i]) <= bound, $"value {i}: {source[i]:R} stored as {read[i]:R}, step {step:R}");
            }
        }
    }

    [Fact]
    public void NarrowQ4_0_StoresEachBlockAsCodesOfItsLargestMagnitudeOverMinus8()
    {
        // As llama.cpp's quantize_row_q4_0_ref: the first value of largest magnitude, sign kept, is code 0 (value -8 d), so
        // d = max / -8; every other value is the code nearest it, at most 15 (value 7 d). Blocks over many scales, one of
        // zeros (every code 8), one with its largest value twice with both signs (the first sets the sign), negative zeros.
        var random = new Random(13);
        var values = new List<float>();
        for (int b = 0; b < 64; b++)
        {
            float scale = MathF.Pow(2, random.Next(-20, 12));
            values.AddRange(Enumerable.Range(0, 32).Select(_ => (float)((random.NextDouble() * 2) - 1) * scale));
        }

        values.AddRange(new float[32]);
        values.AddRange(Enumerable.Range(0, 32).Select(i => i == 5 ? 3.5f : i == 9 ? -3.5f : 0.5f));
        values.AddRange(Enumerable.Range(0, 32).Select(i => i % 2 == 0 ? -0f : 0.25f));
        float[] source = [.. values];
        byte[] stored = Narrow(DType.Q4_0, source);
        Assert.Equal(source.Length / 32 * 18, stored.Length);
        float[] read = Widen(DType.Q4_0, stored);
        for (int b = 0; b < source.Length / 32; b++)
        {
            float[] block = [.. source.Skip(b * 32).Take(32)];
            float largest = block.Max(MathF.Abs), first = block.First(v => MathF.Abs(v) == largest);
            float step = (float)BitConverter.UInt16BitsToHalf(MemoryMarshal.Read<ushort>(stored.AsSpan(b * 18)));
            Assert.True(step == (float)(Half)(first / -8), $"block {b}: scale {step:R}, not the f16 of {first:R} / -8");
            int firstAt = Array.IndexOf(block, first);
            int firstCode = (stored[(b * 18) + 2 + (firstAt % 16)] >> (firstAt / 16 * 4)) & 0xF;
            Assert.True(largest == 0 ? firstCode == 8 : firstCode == 0, $"block {b}: its largest value has code {firstCode}");
            for (int i = 0; i < 32; i++)
            {
                // Within half the exact step (first / -8), plus what rounding the step to f16 moves a code of at most 8; a
                // value of the other sign past 7.5 steps is code 15, 7 steps.
                double exact = Math.Abs(first / -8.0), bound = (exact / 2 * 1.0001) + (8 * Math.Abs(Math.Abs(step) - exact));
                float value = read[(b * 32) + i];
                Assert.True(block[i] / (first / -8.0) > 7.5 ? value == 7 * step : Math.Abs(value - (double)block[i]) <= bound,
                    $"block {b}, value {i}: {block[i]:R} stored as {value:R}, step {step:R}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(PathsHeadSizesAndTypes))]
    public void Attention_OnANarrowCache_IsTheF32KernelOnTheStoredNumbers(KernelPath path, int d, DType type)
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
            switch (type)
            {
                case DType.F16:
                    AttentionKernel<F16Load>.Head(path, queries.AsSpan(0, d), keyBytes, valueBytes, kvDim, offset, length, scale, new float[length], head);
                    break;
                case DType.BF16:
                    AttentionKernel<Bf16Load>.Head(path, queries.AsSpan(0, d), keyBytes, valueBytes, kvDim, offset, length, scale, new float[length], head);
                    break;
                case DType.Q8_0:
                    AttentionKernel<Q8_0KvLoad>.Head(path, queries.AsSpan(0, d), keyBytes, valueBytes, kvDim, offset, length, scale, new float[length], head);
                    break;
                default:
                    AttentionKernel<Q4_0KvLoad>.Head(path, queries.AsSpan(0, d), keyBytes, valueBytes, kvDim, offset, length, scale, new float[length], head);
                    break;
            }

            AttentionKernel<F32Load>.Head(path, queries.AsSpan(0, d), MemoryMarshal.AsBytes(keysRead.AsSpan()), MemoryMarshal.AsBytes(valuesRead.AsSpan()),
                kvDim, offset, length, scale, new float[length], headExpected);
            AssertSameBits(headExpected, head, $"{type} head, {length} positions");
        }
    }

    [Theory]
    [InlineData(DType.F16, 24, 2.0)]
    [InlineData(DType.BF16, 24, 2.0)]
    [InlineData(DType.Q8_0, 64, 34.0 / 32)]
    [InlineData(DType.Q4_0, 96, 18.0 / 32)]
    public void CopySlot_CopiesEveryStoredByte(DType type, int kvDim, double bytesPerValue)
    {
        const int positions = 5;
        using var cache = new CpuKvCache(layers: 2, slots: 2, capacity: 8, kvDim, type);
        Assert.Equal((long)(2 * 2 * 2 * 8 * kvDim * bytesPerValue), cache.ByteSize);
        for (int layer = 0; layer < 2; layer++)
        {
            for (int p = 0; p < positions; p++)
            {
                cache.Store(layer, 0, p, KernelData.Floats(kvDim, (layer * 10) + p), KernelData.Floats(kvDim, 100 + (layer * 10) + p));
            }
        }

        cache.Lengths[0] = positions;
        cache.CopySlot(0, 1, positions);
        int bytes = (int)(positions * cache.PositionStride * bytesPerValue);
        for (int layer = 0; layer < 2; layer++)
        {
            Assert.True(cache.Keys(layer, 0)[..bytes].SequenceEqual(cache.Keys(layer, 1)[..bytes]), $"layer {layer}: keys differ after the copy");
            Assert.True(cache.Values(layer, 0)[..bytes].SequenceEqual(cache.Values(layer, 1)[..bytes]), $"layer {layer}: values differ after the copy");
        }
    }

    [Fact]
    public void KvCache_RefusesTypesItCannotHold()
    {
        var error = Assert.Throws<ArgumentException>(() => new CpuKvCache(1, 1, 4, 32, DType.Q4_K));
        Assert.Contains("f32, f16, bf16, q8_0, q4_0, not Q4_K", error.Message, StringComparison.Ordinal);
        error = Assert.Throws<ArgumentException>(() => new CpuKvCache(1, 1, 4, 48, DType.Q8_0));
        Assert.Contains("a q8_0 KV cache stores rows of whole blocks of 32 values, not 48", error.Message, StringComparison.Ordinal);
        error = Assert.Throws<ArgumentException>(() => new CpuKvCache(1, 1, 4, 80, DType.Q4_0));
        Assert.Contains("a q4_0 KV cache stores rows of whole blocks of 32 values, not 80", error.Message, StringComparison.Ordinal);
    }

    private static void Block(DType type, KernelPath path, float[] queries, int rowStride, int rows, byte[] keys, byte[] values, int kvDim, int offset,
        int firstLength, float scale, int heads, int d, float[] outputs)
    {
        var scores = new float[rows * heads * (firstLength + rows - 1)];
        switch (type)
        {
            case DType.F16:
                AttentionKernel<F16Load>.Block(path, queries, rowStride, rows, keys, values, kvDim, offset, firstLength, scale, heads, d, scores, outputs);
                break;
            case DType.BF16:
                AttentionKernel<Bf16Load>.Block(path, queries, rowStride, rows, keys, values, kvDim, offset, firstLength, scale, heads, d, scores, outputs);
                break;
            case DType.Q8_0:
                AttentionKernel<Q8_0KvLoad>.Block(path, queries, rowStride, rows, keys, values, kvDim, offset, firstLength, scale, heads, d, scores, outputs);
                break;
            default:
                AttentionKernel<Q4_0KvLoad>.Block(path, queries, rowStride, rows, keys, values, kvDim, offset, firstLength, scale, heads, d, scores, outputs);
                break;
        }
    }

    private static byte[] Narrow(DType type, float[] values)
    {
        var bytes = new byte[type switch { DType.Q8_0 => values.Length / 32 * 34, DType.Q4_0 => values.Length / 32 * 18, _ => values.Length * 2 }];
        KvNarrow.Run(type, values, bytes);
        return bytes;
    }

    /// <summary>
    /// The numbers the bytes hold, widened without our loaders: the runtime's Half, bf16 as an f32's top half, q8_0 as
    /// each block's f16 scale (the runtime's Half) times its signed codes, q4_0 as the scale times (nibble - 8), value j of a
    /// block in the low nibble of its byte j, value j + 16 in the high one.
    /// </summary>
    private static float[] Widen(DType type, byte[] bytes)
    {
        if (type == DType.Q4_0)
        {
            return [.. Enumerable.Range(0, bytes.Length / 18 * 32).Select(i =>
                (float)BitConverter.UInt16BitsToHalf(MemoryMarshal.Read<ushort>(bytes.AsSpan(i / 32 * 18))) * (((bytes[(i / 32 * 18) + 2 + (i % 16)] >> (i % 32 / 16 * 4)) & 0xF) - 8))];
        }

        if (type == DType.Q8_0)
        {
            return [.. Enumerable.Range(0, bytes.Length / 34 * 32).Select(i =>
                (float)BitConverter.UInt16BitsToHalf(MemoryMarshal.Read<ushort>(bytes.AsSpan(i / 32 * 34))) * (sbyte)bytes[(i / 32 * 34) + 2 + (i % 32)])];
        }

        return [.. MemoryMarshal.Cast<byte, ushort>(bytes).ToArray().Select(b => type == DType.F16 ? (float)BitConverter.UInt16BitsToHalf(b) : BitConverter.Int32BitsToSingle(b << 16))];
    }

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
