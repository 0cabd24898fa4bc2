using System.Runtime.InteropServices;
using QwenSharp.Cpu.Kernels;

namespace QwenSharp.Tests.Kernels;

/// <summary>Weight conversion to f32: every one of the 65536 bit patterns, on every path, against .NET's own Half and the bf16 bit layout.</summary>
public sealed class WidenTests
{
    public static TheoryData<KernelPath> Paths() => [.. KernelPaths.All];

    private static ushort[] AllBitPatterns => [.. Enumerable.Range(0, 65536).Select(i => (ushort)i)];

    [Theory]
    [MemberData(nameof(Paths))]
    public void WidenF16_AllBitPatterns_EqualSystemHalf(KernelPath path)
    {
        ushort[] bits = AllBitPatterns;
        var actual = new float[bits.Length];
        Widen<F16Load>.Run(path, MemoryMarshal.AsBytes(bits.AsSpan()), actual);

        for (int i = 0; i < bits.Length; i++)
        {
            float expected = (float)BitConverter.UInt16BitsToHalf(bits[i]);
            Assert.True(float.IsNaN(expected) ? float.IsNaN(actual[i]) : BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(actual[i]),
                $"{path}: f16 0x{bits[i]:X4} gave {actual[i]}, expected {expected}");
        }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void WidenF16Finite_EveryFiniteBitPattern_EqualsSystemHalf(KernelPath path)
    {
        // The loader for F16 matrices checked at load to hold no infinity or NaN: every other pattern (zeros of both
        // signs, subnormals, the largest normals) exact.
        ushort[] bits = [.. AllBitPatterns.Where(b => (b & 0x7C00) != 0x7C00)];
        var actual = new float[bits.Length];
        Widen<F16FiniteLoad>.Run(path, MemoryMarshal.AsBytes(bits.AsSpan()), actual);

        for (int i = 0; i < bits.Length; i++)
        {
            float expected = (float)BitConverter.UInt16BitsToHalf(bits[i]);
            Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(actual[i]), $"{path}: f16 0x{bits[i]:X4} gave {actual[i]}, expected {expected}");
        }

        Assert.True(F16Values.AllFinite(MemoryMarshal.AsBytes(bits.AsSpan())));
        foreach (ushort special in new ushort[] { 0x7C00, 0xFC00, 0x7E00, 0x7C01 })
        {
            ushort[] withOne = [.. bits.Take(100), special, .. bits.Take(7)];
            Assert.False(F16Values.AllFinite(MemoryMarshal.AsBytes(withOne.AsSpan())), $"0x{special:X4} is not finite");
        }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void F16Scaled_DotWithScaledActivations_EqualsTheFiniteLoadersBitForBit(KernelPath path)
    {
        // Every finite pattern as weights (subnormals, zeros of both signs, the largest normals) in rows of a length that
        // leaves a scalar tail, against activations up to ±30000 (just under the scaling's limit): the scaled weights
        // times the activations × 2^112 are the same products, so the same sums, on every path, alone and in a batch, with
        // the groups that hold zeros or subnormals read exactly (by exponent test or map) or placed like the rest.
        ushort[] finite = [.. AllBitPatterns.Where(b => (b & 0x7C00) != 0x7C00)];
        const int Cols = 1003, Tokens = 7;    // a group of four and a pair (512-bit), pairs (256-bit), and one alone
        var random = new Random(11);
        float[] x = [.. Enumerable.Range(0, Tokens * Cols).Select(i => (float)((random.NextDouble() - 0.5) * (i % 97 == 0 ? 60000 : 4)))];
        var scaled = new float[x.Length];
        Assert.True(F16Scaling.TryScale(x, scaled));
        var alone = new float[Tokens];
        var batch = new float[Tokens];
        var map = new ulong[F16ExactGroups.MapWords(Cols)];
        // The patterns in order (whole groups of zeros and subnormals), then shuffled, so that groups of 64 mix normals
        // with zeros or subnormals (the kernels read such a group exactly instead of by placement).
        ushort[] shuffled = [.. finite];
        new Random(12).Shuffle(shuffled);
        foreach ((ushort[] patterns, int start) in new[] { finite, shuffled }.SelectMany(p => Enumerable.Range(0, p.Length / (7 * Cols)).Select(i => (p, i * 7 * Cols))))
        {
            ReadOnlySpan<byte> row = MemoryMarshal.AsBytes(patterns.AsSpan(start, Cols));
            DotTokens<F16ScaledLoad>.Run(path, row, scaled, Cols, Tokens, batch);
            F16ExactGroups.MapRow(row, Cols, map);
            for (int t = 0; t < Tokens; t++)
            {
                float expected = Dot<F16FiniteLoad>.Run(path, row, x.AsSpan(t * Cols, Cols));
                alone[t] = Dot<F16ScaledLoad>.Run(path, row, scaled.AsSpan(t * Cols, Cols));
                float mapped = Dot<F16ScaledLoad>.Run(path, row, scaled.AsSpan(t * Cols, Cols), map);
                float placed = Dot<F16ScaledLoad>.RunPlaced(path, row, scaled.AsSpan(t * Cols, Cols));
                Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(alone[t]), $"{path}: row at {start}, token {t}: {alone[t]}, the finite loader's {expected}");
                Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(batch[t]), $"{path}: row at {start}, token {t} in a batch: {batch[t]}, the finite loader's {expected}");
                Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(mapped), $"{path}: row at {start}, token {t} by the row's map: {mapped}, the finite loader's {expected}");
                Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(placed), $"{path}: row at {start}, token {t} placed throughout: {placed}, the finite loader's {expected}");
            }
        }

        // Activations too large to scale, or NaN, are refused (the job then reads the weights with the finite loader).
        Assert.False(F16Scaling.TryScale([1f, 40000f], new float[2]));
        Assert.False(F16Scaling.TryScale([1f, float.NaN], new float[2]));
    }

    [Fact]
    public void F16MatrixWithAnInfinity_TakesTheExactLoader()
    {
        // One +inf weight: its row's product is +inf (the exact loader), the others the finite products.
        const int Rows = 4, Cols = 64;
        var halves = new ushort[Rows * Cols];
        for (int i = 0; i < halves.Length; i++)
        {
            halves[i] = BitConverter.HalfToUInt16Bits((Half)(((i % 7) - 3) * 0.25f));
        }

        halves[(1 * Cols) + 5] = 0x7C00;
        var x = Enumerable.Repeat(1f, Cols).ToArray();
        using var backend = new QwenSharp.Cpu.CpuBackend(new QwenSharp.Cpu.CpuBackendOptions { Threads = 1 });
        GCHandle pin = GCHandle.Alloc(halves, GCHandleType.Pinned);
        try
        {
            using QwenSharp.Backend.DeviceWeight weight = backend.Upload(new QwenSharp.Formats.TensorView("w", "test", QwenSharp.Formats.DType.F16, [Rows, Cols], pin.AddrOfPinnedObject()));
            using QwenSharp.Backend.DeviceBuffer xb = backend.Allocate(1, Cols), yb = backend.Allocate(1, Rows);
            backend.Write(x, xb.Rows(1));
            backend.Linear(xb.Rows(1), weight, null, yb.Rows(1));
            var y = new float[Rows];
            backend.Download(yb.Rows(1), y);
            Assert.Equal(float.PositiveInfinity, y[1]);
            foreach (int r in new[] { 0, 2, 3 })
            {
                double expected = 0;
                for (int c = 0; c < Cols; c++)
                {
                    expected += (float)BitConverter.UInt16BitsToHalf(halves[(r * Cols) + c]);
                }

                Assert.Equal(expected, y[r], 1e-4);
            }
        }
        finally
        {
            pin.Free();
        }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void WidenBf16_AllBitPatterns_AreTheTopHalfOfTheF32(KernelPath path)
    {
        ushort[] bits = AllBitPatterns;
        var actual = new float[bits.Length];
        Widen<Bf16Load>.Run(path, MemoryMarshal.AsBytes(bits.AsSpan()), actual);

        for (int i = 0; i < bits.Length; i++)
        {
            Assert.Equal((uint)bits[i] << 16, BitConverter.SingleToUInt32Bits(actual[i]));
        }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void WidenF32_EveryLength_CopiesExactly(KernelPath path)
    {
        foreach (int length in KernelData.Lengths)
        {
            float[] source = KernelData.Floats(length, length);
            var actual = new float[length];
            Widen<F32Load>.Run(path, MemoryMarshal.AsBytes(source.AsSpan()), actual);
            Assert.Equal(source, actual);
        }
    }
}
