using System.Runtime.InteropServices;
using QwenSharp.Cpu.Kernels;

namespace QwenSharp.Tests.Kernels;

/// <summary>
/// The map of F16 groups that decode reads exactly. Which groups take the exact read does not change a sum (both reads
/// give the same products), only the speed on cores that slow down on subnormals, so the map is checked here against
/// its definition: a bit per 32 weights, set where one of them has a zero exponent field.
/// </summary>
public class F16ExactGroupMapTests
{
    [Fact]
    public void MapRow_MarksExactlyTheGroupsHoldingAZeroOrSubnormal_AndTheKernelsTestsReadThem()
    {
        // 70 groups of 32 (a second word) and a partial group of 17 that has no bit; one in five groups gets a zero
        // exponent at a random place: +0, -0, the smallest and largest subnormals of both signs.
        const int Cols = (70 * 32) + 17;
        ushort[] small = [0x0000, 0x8000, 0x0001, 0x03FF, 0x8001, 0x83FF];
        var random = new Random(5);
        var halves = new ushort[Cols];
        for (int i = 0; i < Cols; i++)
        {
            halves[i] = (ushort)(random.Next(0x0400, 0x7C00) | (random.Next(2) << 15));
        }

        for (int g = 0; g <= 70; g++)
        {
            if (random.Next(5) == 0 || g == 63 || g == 64 || g == 70)
            {
                halves[Math.Min(Cols - 1, (g * 32) + random.Next(32))] = small[random.Next(small.Length)];
            }
        }

        var map = Enumerable.Repeat(ulong.MaxValue, 3).ToArray();
        F16ExactGroups.MapRow(MemoryMarshal.AsBytes(halves.AsSpan()), Cols, map);
        Assert.Equal(2, F16ExactGroups.MapWords(Cols));
        Assert.Equal(ulong.MaxValue, map[2]);
        ref byte weights = ref MemoryMarshal.GetReference(MemoryMarshal.AsBytes(halves.AsSpan()));
        for (int g = 0; g < 70; g++)
        {
            bool expected = halves.Skip(g * 32).Take(32).Any(h => (h & 0x7C00) == 0);
            Assert.True(expected == (((map[g / 64] >> (g % 64)) & 1) != 0), $"group {g}: expected {(expected ? "marked" : "unmarked")}");
            Assert.Equal(expected, MapTest.Exact32(ref weights, ref map[0], g * 32));
            Assert.Equal(expected, ExponentTest.Exact32(ref weights, ref map[0], g * 32));
            if (g % 2 == 0)
            {
                bool either = expected || halves.Skip((g + 1) * 32).Take(32).Any(h => (h & 0x7C00) == 0);
                Assert.Equal(either, MapTest.Exact64(ref weights, ref map[0], g * 32));
                Assert.Equal(either, ExponentTest.Exact64(ref weights, ref map[0], g * 32));
            }
        }

        Assert.Equal(0UL, map[1] >> 6);
    }

    public static TheoryData<KernelPath> Paths() => [.. KernelPaths.All];

    [Theory]
    [MemberData(nameof(Paths))]
    public void Decode_reads_the_same_sums_by_the_maps_and_placed_throughout(KernelPath path)
    {
        // Rows of f16 weights in ±0.035 (as the random models'), about one group in ten holding a subnormal, and some whole
        // zero and subnormal groups: one-token decode by the rows' maps (where subnormal FMAs are slow) and placed
        // throughout (where they are not, SubnormalOperands), also rows apart (RowsApart: on the 512-bit path four for wide
        // rows and two for narrow, on the 256-bit path two), against the finite loader with unscaled activations; each with and without the weight
        // prefetch (Prefetch.InDecode), so every CPU runs both instantiations of each read.
        foreach (int cols in new[] { RowsApart.FloatMinimumWidth + 35, 931 })
        {
            foreach (bool prefetch in new[] { true, false })
            {
                using (Prefetch.Assume(prefetch))
                {
                    DecodeByMapsAndPlaced(path, cols, prefetch);
                }
            }
        }
    }

    private static void DecodeByMapsAndPlaced(KernelPath path, int cols, bool prefetch)
    {
        const int Rows = 37;
        var random = new Random(21);
        var halves = new ushort[Rows * cols];
        for (int i = 0; i < halves.Length; i++)
        {
            halves[i] = BitConverter.HalfToUInt16Bits((Half)((random.NextDouble() - 0.5) * 0.07));
        }

        halves.AsSpan(5 * cols, 64).Fill(0x0001);
        halves.AsSpan((9 * cols) + 128, 64).Fill(0x8000);
        Assert.Contains(halves, h => h != 0 && (h & 0x7C00) == 0);
        ReadOnlySpan<byte> weights = MemoryMarshal.AsBytes(halves.AsSpan());
        int words = F16ExactGroups.MapWords(cols);
        var maps = new ulong[Rows * words];
        for (int r = 0; r < Rows; r++)
        {
            F16ExactGroups.MapRow(weights.Slice(r * cols * 2, cols * 2), cols, maps.AsSpan(r * words, words));
        }

        float[] x = [.. Enumerable.Range(0, cols).Select(_ => (float)((random.NextDouble() - 0.5) * 8))];
        var scaled = new float[cols];
        Assert.True(F16Scaling.TryScale(x, scaled));
        var panel = new float[MatMul.PanelScratchFloats(cols)];
        var byMaps = new float[Rows];
        var placed = new float[Rows];
        var apart = new float[Rows];
        using (SubnormalOperands.Assume(false))
        {
            MatMul.Rows<F16ScaledLoad>(path, weights, cols, Rows, scaled, default, 1, default, byMaps, 0, Rows, panel, maps);
        }

        using (SubnormalOperands.Assume(true))
        {
            using (RowsApart.Assume(false))
            {
                MatMul.Rows<F16ScaledLoad>(path, weights, cols, Rows, scaled, default, 1, default, placed, 0, Rows, panel, maps);
            }

            using (RowsApart.Assume(true))
            {
                MatMul.Rows<F16ScaledLoad>(path, weights, cols, Rows, scaled, default, 1, default, apart, 0, Rows, panel, maps);
            }
        }

        for (int r = 0; r < Rows; r++)
        {
            float expected = Dot<F16FiniteLoad>.Run(path, weights.Slice(r * cols * 2, cols * 2), x);
            Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(byMaps[r]), $"{path}, {cols} wide, prefetch {prefetch}, row {r} by its map: {byMaps[r]}, the finite loader's {expected}");
            Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(placed[r]), $"{path}, {cols} wide, prefetch {prefetch}, row {r} placed: {placed[r]}, the finite loader's {expected}");
            Assert.True(BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(apart[r]), $"{path}, {cols} wide, prefetch {prefetch}, row {r} placed, rows apart: {apart[r]}, the finite loader's {expected}");
        }
    }

    [Fact]
    public void A_map_too_short_for_the_row_is_refused()
    {
        var row = new byte[128 * 2];
        var x = new float[128];
        ArgumentException e = Assert.Throws<ArgumentException>(() => Dot<F16ScaledLoad>.Run(KernelPath.Vector512, row, x, ReadOnlySpan<ulong>.Empty));
        Assert.Contains("4 groups", e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => F16ExactGroups.MapRow(row, 128, Span<ulong>.Empty));
    }
}
