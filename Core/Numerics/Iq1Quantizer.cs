using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace QwenSharp.Numerics;

/// <summary>
/// llama.cpp's quantizers to IQ1_S and IQ1_M (<c>quantize_row_iq1_s_impl</c>, <c>_iq1_m_impl</c>, as llama-quantize calls
/// them). IQ1_S: per 32 values, weights
/// importance × √(σ² + x²); the values sorted, every split into three runs (-1, 0, 1, shifted by ±1/8 as the block's
/// shift bit says) scored by weighted least squares in one pass over prefix sums, the best split and shift kept; each group
/// of eight codes that is not a point of the 2048-point lattice (<see cref="IqGrids.Iq1S"/>) replaced by its nearest
/// neighbour and the scale fitted again. A 3-bit scale and the shift a block under an f16 d. The same operations in the
/// same order (tested byte for byte against ggml's quantizer); an importance matrix is required, as ggml and
/// llama-quantize require it. IQ1_M: per 16 values, each group of eight with its own shift's sign (four combinations
/// scored per split), a 3-bit scale per 16, and the super-block's f16 d refitted over all of them and spread over the
/// scale words' top nibbles.
/// </summary>
public static class Iq1Quantizer
{
    private const int SuperBlock = 256, Block = 32;
    private const float Delta = 0.125f;

    /// <summary>The values of levels 0, 1, 2 (-1, 0, 1) under a positive and under a negative shift.</summary>
    private static readonly float[] s_plus = [-1 + Delta, Delta, 1 + Delta], s_minus = [-1 - Delta, -Delta, 1 - Delta];

    private static readonly Lazy<IqLattice> s_lattice = new(() => new IqLattice(2048, dims: 8, bits: 2,
        k => MemoryMarshal.Cast<sbyte, byte>(IqGrids.Iq1S(k)), [255, 0, 1], neighbourDistances: 3, keys: 43692));

    /// <summary>Bytes of an IQ1_S super-block: f16 d, 32 low index bytes, 8 words of 3 × 3 high index bits, a 3-bit scale and the shift's sign.</summary>
    public const int Iq1SBlockBytes = 50;

    /// <summary>Bytes of an IQ1_M super-block: 32 low index bytes, 16 bytes of two 3-bit high index parts and shift signs, 4 words of four 3-bit scales and a nibble of the f16 d.</summary>
    public const int Iq1MBlockBytes = 56;

    /// <summary>A row of IQ1_S super-blocks, weighted by <paramref name="importance"/> (one per value of the row).</summary>
    public static void QuantizeIq1_S(ReadOnlySpan<float> values, Span<byte> blocks, ReadOnlySpan<float> importance)
    {
        if (importance.IsEmpty)
        {
            throw new NotSupportedException("IQ1_S is quantized with an importance matrix only (llama-quantize requires one): give --imatrix F");
        }

        IqLattice lattice = s_lattice.Value;
        Span<float> scales = stackalloc float[SuperBlock / Block], weight = stackalloc float[Block];
        Span<float> sumX = stackalloc float[Block + 1], sumW = stackalloc float[Block + 1];
        Span<sbyte> codes = stackalloc sbyte[Block];
        Span<int> shifts = stackalloc int[SuperBlock / Block], index = stackalloc int[Block / 8];
        var order = new (float Value, int Index)[Block];
        for (int b = 0; b < values.Length / SuperBlock; b++)
        {
            ReadOnlySpan<float> x = values.Slice(b * SuperBlock, SuperBlock);
            Span<byte> block = blocks.Slice(b * Iq1SBlockBytes, Iq1SBlockBytes);
            block.Clear();
            Span<byte> low = block.Slice(2, 32), high = block.Slice(34, 16);
            float sigma2 = 2 * ImportanceQuantizer.SumOfSquares(x) / SuperBlock;
            float maxScale = 0;
            for (int ib = 0; ib < SuperBlock / Block; ib++)
            {
                ReadOnlySpan<float> xb = x.Slice(ib * Block, Block);
                Weigh(xb, importance.Slice((b * SuperBlock) + (ib * Block), Block), sigma2, weight);
                float max = MaxAbs(xb);

                (scales[ib], shifts[ib]) = (0, 1);
                if (max < 1e-12f)
                {
                    continue;
                }

                // The values in ascending order, prefix sums over them.
                SortAscending(xb, order);
                sumX[0] = sumW[0] = 0;
                for (int j = 0; j < Block; j++)
                {
                    int i = order[j].Index;
                    sumX[j + 1] = sumX[j] + (weight[i] * xb[i]);
                    sumW[j + 1] = sumW[j] + weight[i];
                }

                float bestScore = -float.MaxValue, scale = max;
                int best1 = -1, best2 = -1, bestShift = 0;
                for (int i1 = 0; i1 <= Block; i1++)
                {
                    for (int i2 = i1; i2 <= Block; i2++)
                    {
                        for (int shift = 1; shift >= -1; shift -= 2)
                        {
                            ReadOnlySpan<float> q = shift == 1 ? s_plus : s_minus;
                            float sumqx = ((sumX[i1] - sumX[0]) * q[0]) + ((sumX[i2] - sumX[i1]) * q[1]) + ((sumX[Block] - sumX[i2]) * q[2]);
                            float sumq2 = ((sumW[i1] - sumW[0]) * q[0] * q[0]) + ((sumW[i2] - sumW[i1]) * q[1] * q[1]) + ((sumW[Block] - sumW[i2]) * q[2] * q[2]);
                            if (sumq2 > 0 && sumqx * sumqx > bestScore * sumq2)
                            {
                                scale = sumqx / sumq2;
                                bestScore = scale * sumqx;
                                (best1, best2, bestShift) = (i1, i2, shift);
                            }
                        }
                    }
                }

                if (best1 < 0 || best2 < 0 || bestShift == 0)
                {
                    continue;
                }

                if (SplitCodes(order, best1, best2, codes, ref scale))
                {
                    bestShift = -bestShift;
                }

                float[] levelValues = bestShift == 1 ? s_plus : s_minus;
                scale = Snap(lattice, codes, xb, weight, scale, levelValues, levelValues, index);

                int h = 0;
                for (int k = 0; k < Block / 8; k++)
                {
                    low[(4 * ib) + k] = (byte)index[k];
                    h |= (index[k] >> 8) << (3 * k);
                }

                BinaryPrimitives.WriteUInt16LittleEndian(high[(2 * ib)..], (ushort)h);
                (scales[ib], shifts[ib]) = (scale, bestShift);
                maxScale = MathF.Max(maxScale, scale);
            }

            if (maxScale == 0)
            {
                continue;
            }

            float d = maxScale / 15;
            BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits.FromSingle(d * 1.125f));    // ggml's fudge factor
            float inverse = 1 / d;
            for (int ib = 0; ib < SuperBlock / Block; ib++)
            {
                int l = Math.Clamp(KQuantQuantizer.NearestInt(0.5f * ((inverse * scales[ib]) - 1)), 0, 7) | (shifts[ib] == -1 ? 8 : 0);
                Span<byte> word = high[(2 * ib)..];
                BinaryPrimitives.WriteUInt16LittleEndian(word, (ushort)(BinaryPrimitives.ReadUInt16LittleEndian(word) | (l << 12)));
            }
        }
    }

    /// <summary>A row of IQ1_M super-blocks, weighted by <paramref name="importance"/> (one per value of the row; llama-quantize requires it).</summary>
    public static void QuantizeIq1_M(ReadOnlySpan<float> values, Span<byte> blocks, ReadOnlySpan<float> importance)
    {
        const int block16 = 16;
        if (importance.IsEmpty)
        {
            throw new NotSupportedException("IQ1_M is quantized with an importance matrix only (llama-quantize requires one): give --imatrix F");
        }

        IqLattice lattice = s_lattice.Value;
        ReadOnlySpan<byte> masks = [0x00, 0x80, 0x08, 0x88];
        Span<float> scales = stackalloc float[SuperBlock / block16], weight = stackalloc float[block16];
        Span<float> sumqx = stackalloc float[4], sumq2 = stackalloc float[4];
        Span<sbyte> codes = stackalloc sbyte[block16];
        Span<int> shifts = stackalloc int[SuperBlock / block16], index = stackalloc int[2];
        var order = new (float Value, int Index)[block16];

        for (int b = 0; b < values.Length / SuperBlock; b++)
        {
            ReadOnlySpan<float> x = values.Slice(b * SuperBlock, SuperBlock);
            Span<byte> block = blocks.Slice(b * Iq1MBlockBytes, Iq1MBlockBytes);
            block.Clear();
            Span<byte> low = block[..32], high = block.Slice(32, 16), scaleWords = block.Slice(48, 8);
            float sigma2 = 2 * ImportanceQuantizer.SumOfSquares(x) / SuperBlock;
            float maxScale = 0;
            for (int ib = 0; ib < SuperBlock / block16; ib++)
            {
                ReadOnlySpan<float> xb = x.Slice(ib * block16, block16);
                Weigh(xb, importance.Slice((b * SuperBlock) + (ib * block16), block16), sigma2, weight);
                float max = MaxAbs(xb);

                (scales[ib], shifts[ib]) = (0, 0);
                if (max < 1e-7f)
                {
                    continue;
                }

                SortAscending(xb, order);
                float bestScore = -float.MaxValue, scale = max;
                int best1 = -1, best2 = -1, bestK = -1;
                for (int i1 = 0; i1 <= block16; i1++)
                {
                    for (int i2 = i1; i2 <= block16; i2++)
                    {
                        sumqx.Clear();
                        sumq2.Clear();
                        for (int j = 0; j < block16; j++)
                        {
                            int i = order[j].Index, level = j < i1 ? 0 : j < i2 ? 1 : 2;
                            for (int k = 0; k < 4; k++)
                            {
                                float q = Shifted(k, i < block16 / 2 ? 0 : 1)[level];
                                sumqx[k] += weight[i] * q * xb[i];
                                sumq2[k] += weight[i] * q * q;
                            }
                        }

                        for (int k = 0; k < 4; k++)
                        {
                            if (sumq2[k] > 0 && sumqx[k] * sumqx[k] > bestScore * sumq2[k])
                            {
                                scale = sumqx[k] / sumq2[k];
                                bestScore = scale * sumqx[k];
                                (best1, best2, bestK) = (i1, i2, k);
                            }
                        }
                    }
                }

                if (best1 < 0 || best2 < 0 || bestK < 0)
                {
                    continue;
                }

                if (SplitCodes(order, best1, best2, codes, ref scale))
                {
                    bestK = 3 - bestK;
                }

                scale = Snap(lattice, codes, xb, weight, scale, Shifted(bestK, 0), Shifted(bestK, 1), index);

                low[2 * ib] = (byte)index[0];
                low[(2 * ib) + 1] = (byte)index[1];
                high[ib] = (byte)((index[0] >> 8) | ((index[1] >> 8) << 4));
                (scales[ib], shifts[ib]) = (scale, bestK);
                maxScale = MathF.Max(maxScale, scale);
            }

            if (maxScale == 0)
            {
                continue;
            }

            // The 3-bit scales under d = max / 15, then d refitted over every value through the codes as stored.
            float d = maxScale / 15, inverse = 1 / d, allX = 0, allQ = 0;
            for (int ib = 0; ib < SuperBlock / block16; ib++)
            {
                int l = Math.Clamp(KQuantQuantizer.NearestInt(0.5f * ((inverse * scales[ib]) - 1)), 0, 7);
                Span<byte> word = scaleWords[(2 * (ib / 4))..];
                BinaryPrimitives.WriteUInt16LittleEndian(word, (ushort)(BinaryPrimitives.ReadUInt16LittleEndian(word) | (l << (3 * (ib % 4)))));
                high[ib] |= masks[shifts[ib]];
                ReadOnlySpan<float> xb = x.Slice(ib * block16, block16);
                Weigh(xb, importance.Slice((b * SuperBlock) + (ib * block16), block16), sigma2, weight);
                for (int k = 0; k < 2; k++)
                {
                    int point = low[(2 * ib) + k] + ((high[ib] << (8 - (4 * k))) & 0x700);
                    ReadOnlySpan<sbyte> grid = IqGrids.Iq1S(point);
                    ReadOnlySpan<float> shifted = Shifted(shifts[ib], k);
                    for (int j = 0; j < 8; j++)
                    {
                        float w = weight[(8 * k) + j], q = shifted[grid[j] + 1] * ((2 * l) + 1);
                        allX += w * q * xb[(8 * k) + j];
                        allQ += w * q * q;
                    }
                }
            }

            if (allQ > 0)
            {
                d = allX / allQ;
            }

            ushort half = HalfBits.FromSingle(d * 1.1125f);    // ggml's fudge factor
            for (int w = 0; w < 4; w++)
            {
                Span<byte> word = scaleWords[(2 * w)..];
                BinaryPrimitives.WriteUInt16LittleEndian(word, (ushort)(BinaryPrimitives.ReadUInt16LittleEndian(word) | (((half >> (4 * w)) & 0xF) << 12)));
            }
        }
    }

    /// <summary>A block's largest magnitude.</summary>
    private static float MaxAbs(ReadOnlySpan<float> xb)
    {
        float max = MathF.Abs(xb[0]);
        for (int i = 1; i < xb.Length; i++)
        {
            max = MathF.Max(max, MathF.Abs(xb[i]));
        }

        return max;
    }

    /// <summary>The values with their indices in ascending order, ties by index (glibc's qsort is a merge sort at this size).</summary>
    private static void SortAscending(ReadOnlySpan<float> xb, (float Value, int Index)[] order)
    {
        for (int j = 0; j < order.Length; j++)
        {
            order[j] = (xb[j], j);
        }

        Array.Sort(order, (l, r) => l.Value != r.Value ? l.Value.CompareTo(r.Value) : l.Index.CompareTo(r.Index));
    }

    /// <summary>
    /// The codes of the best split (levels 0, 1, 2 for the sorted values before <paramref name="best1"/>, before
    /// <paramref name="best2"/>, after), turned over with the scale where it came out negative; whether they were (the
    /// caller then turns its shift over too).
    /// </summary>
    private static bool SplitCodes((float Value, int Index)[] order, int best1, int best2, Span<sbyte> codes, ref float scale)
    {
        for (int j = 0; j < order.Length; j++)
        {
            codes[order[j].Index] = (sbyte)(j < best1 ? 0 : j < best2 ? 1 : 2);
        }

        if (scale >= 0)
        {
            return false;
        }

        for (int j = 0; j < order.Length; j++)
        {
            codes[j] = (sbyte)(2 - codes[j]);
        }

        scale = -scale;
        return true;
    }

    /// <summary>
    /// Each group of eight codes that is not a lattice point moved to its nearest neighbour (the points' indices into
    /// <paramref name="index"/>), and where one was moved the scale fitted again; the first group's levels stand for
    /// <paramref name="firstValues"/>, the others' for <paramref name="restValues"/> (IQ1_M shifts its two groups apart).
    /// </summary>
    private static float Snap(IqLattice lattice, Span<sbyte> codes, ReadOnlySpan<float> xb, ReadOnlySpan<float> weight, float scale,
        float[] firstValues, float[] restValues, Span<int> index)
    {
        bool allOnGrid = true;
        for (int k = 0; k < codes.Length / 8; k++)
        {
            Span<sbyte> group = codes.Slice(8 * k, 8);
            index[k] = lattice.IndexOf(group);
            if (index[k] < 0)
            {
                allOnGrid = false;
                index[k] = lattice.NearestNeighbour(group, xb.Slice(8 * k, 8), weight.Slice(8 * k, 8), scale, k == 0 ? firstValues : restValues);
            }
        }

        if (!allOnGrid)
        {
            float sumqx = 0, sumq2 = 0;
            for (int i = 0; i < codes.Length; i++)
            {
                float w = weight[i], q = (i < 8 ? firstValues : restValues)[codes[i]];
                sumqx += w * q * xb[i];
                sumq2 += w * q * q;
            }

            if (sumqx > 0 && sumq2 > 0)
            {
                scale = sumqx / sumq2;
            }
        }

        return scale;
    }

    /// <summary>IQ1_M's combination k of shifts: the first group's + (k &lt; 2) or -, the second's + (k even) or -.</summary>
    private static float[] Shifted(int k, int group) => (group == 0 ? k < 2 : k % 2 == 0) ? s_plus : s_minus;

    private static void Weigh(ReadOnlySpan<float> xb, ReadOnlySpan<float> importance, float sigma2, Span<float> weight)
    {
        for (int i = 0; i < xb.Length; i++)
        {
            weight[i] = importance[i] * MathF.Sqrt(sigma2 + (xb[i] * xb[i]));
        }
    }
}
