using System.Buffers.Binary;

namespace QwenSharp.Numerics;

/// <summary>
/// llama.cpp's quantizers to IQ3_XXS and IQ3_S (<c>quantize_row_iq3_xxs_impl</c>, <c>quantize_row_iq3_s_impl</c>, as
/// llama-quantize calls them): per 32 values the signs taken out (IQ3_XXS keeps an even count of them, flipping the least
/// important value's where it must), then over 31 (IQ3_S: 19) candidate scales around max / 15 each group of four
/// magnitudes rounded to 3-bit levels and, where those are not a point of the lattice (<see cref="IqGrids"/>), replaced by
/// the nearest of its precomputed neighbours in weighted distance; the scale that fits best in weighted least squares wins.
/// Weights x², or with an importance matrix importance × √(σ² + x²), σ² twice the super-block's mean square. The same
/// operations in the same order (tested byte for byte against ggml's quantizer, with and without importance).
/// </summary>
public static class Iq3Quantizer
{
    private const int SuperBlock = 256, Block = 32, MaxLevel = 8;

    private static readonly Lazy<Lattice> s_xxs = new(() => new Lattice(256, k => IqGrids.Iq3Xxs(k), [4, 12, 20, 28, 36, 44, 52, 62], neighbourDistances: 2));
    private static readonly Lazy<Lattice> s_s = new(() => new Lattice(512, k => IqGrids.Iq3S(k), [1, 3, 5, 7, 9, 11, 13, 15], neighbourDistances: 3));

    /// <summary>Bytes of an IQ3_XXS super-block: f16 d, 64 lattice indices, 8 words of 4 × 7 sign bits and a 4-bit scale.</summary>
    public const int Iq3XxsBlockBytes = 98;

    /// <summary>Bytes of an IQ3_S super-block: f16 d, 64 low index bytes, 8 bytes of ninth bits, 32 sign bytes, 4 scale bytes.</summary>
    public const int Iq3SBlockBytes = 110;

    /// <summary>A row of IQ3_XXS super-blocks; <paramref name="importance"/> one weight per value of the row, or empty.</summary>
    public static void QuantizeIq3_XXS(ReadOnlySpan<float> values, Span<byte> blocks, ReadOnlySpan<float> importance = default)
    {
        Lattice lattice = s_xxs.Value;
        var state = new SearchState();
        Span<float> scales = stackalloc float[SuperBlock / Block];
        Span<byte> signs = stackalloc byte[4];
        for (int b = 0; b < values.Length / SuperBlock; b++)
        {
            ReadOnlySpan<float> x = values.Slice(b * SuperBlock, SuperBlock);
            Span<byte> block = blocks.Slice(b * Iq3XxsBlockBytes, Iq3XxsBlockBytes);
            block.Clear();
            Span<byte> indices = block.Slice(2, 64), words = block.Slice(66, 32);
            float sigma2 = 2 * ImportanceQuantizer.SumOfSquares(x) / SuperBlock;
            float maxScale = 0;
            for (int ib = 0; ib < SuperBlock / Block; ib++)
            {
                ReadOnlySpan<float> xb = x.Slice(ib * Block, Block);
                state.Weigh(xb, importance.IsEmpty ? default : importance.Slice((b * SuperBlock) + (ib * Block), Block), sigma2);
                for (int k = 0; k < 4; k++)
                {
                    signs[k] = state.EvenSigns(xb, k);
                }

                float max = state.MaxMagnitude();
                if (max < 1e-8f)
                {
                    scales[ib] = 0;
                    state.Codes.Clear();
                    continue;
                }

                float scale = state.Search(lattice, max, tries: 15, keepOnGrid: true);
                if (scale < 0)
                {
                    scale = -scale;
                    for (int k = 0; k < 4; k++)
                    {
                        signs[k] = (byte)(~signs[k] & 127);
                    }
                }

                for (int k = 0; k < 8; k++)
                {
                    indices[(8 * ib) + k] = (byte)lattice.IndexOf(state.Codes.Slice(4 * k, 4));
                }

                BinaryPrimitives.WriteUInt32LittleEndian(words[(4 * ib)..], (uint)(signs[0] | (signs[1] << 7) | (signs[2] << 14) | (signs[3] << 21)));
                scales[ib] = scale;
                maxScale = MathF.Max(maxScale, scale);
            }

            if (maxScale == 0)
            {
                block.Clear();
                continue;
            }

            float d = maxScale / 31;
            BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits.FromSingle(d * 1.0125f));    // ggml's fudge factor
            float id = 1 / d;
            for (int ib = 0; ib < SuperBlock / Block; ib++)
            {
                int l = Math.Clamp(KQuantQuantizer.NearestInt(0.5f * ((id * scales[ib]) - 1)), 0, 15);
                Span<byte> word = words[(4 * ib)..];
                BinaryPrimitives.WriteUInt32LittleEndian(word, BinaryPrimitives.ReadUInt32LittleEndian(word) | ((uint)l << 28));
            }
        }
    }

    /// <summary>A row of IQ3_S super-blocks; <paramref name="importance"/> one weight per value of the row, or empty.</summary>
    public static void QuantizeIq3_S(ReadOnlySpan<float> values, Span<byte> blocks, ReadOnlySpan<float> importance = default)
    {
        Lattice lattice = s_s.Value;
        var state = new SearchState();
        Span<float> scales = stackalloc float[SuperBlock / Block];
        Span<byte> signs = stackalloc byte[4];
        for (int b = 0; b < values.Length / SuperBlock; b++)
        {
            ReadOnlySpan<float> x = values.Slice(b * SuperBlock, SuperBlock);
            Span<byte> block = blocks.Slice(b * Iq3SBlockBytes, Iq3SBlockBytes);
            block.Clear();
            Span<byte> low = block.Slice(2, 64), high = block.Slice(66, 8), signBytes = block.Slice(74, 32), scaleBytes = block.Slice(106, 4);
            float sigma2 = 2 * ImportanceQuantizer.SumOfSquares(x) / SuperBlock;
            float maxScale = 0;
            for (int ib = 0; ib < SuperBlock / Block; ib++)
            {
                ReadOnlySpan<float> xb = x.Slice(ib * Block, Block);
                state.Weigh(xb, importance.IsEmpty ? default : importance.Slice((b * SuperBlock) + (ib * Block), Block), sigma2);
                for (int k = 0; k < 4; k++)
                {
                    signs[k] = state.AllSigns(xb, k);
                }

                // ggml skips an all-zero group without moving on its index and sign bytes, so the groups after it land one
                // place early under their own scales (values it does not mean); each group's bytes stay in its own place here.
                float max = state.MaxMagnitude();
                if (max == 0)
                {
                    scales[ib] = 0;
                    continue;
                }

                float scale = state.Search(lattice, max, tries: 9, keepOnGrid: false);
                if (scale < 0)
                {
                    scale = -scale;
                    for (int k = 0; k < 4; k++)
                    {
                        signs[k] = (byte)~signs[k];
                    }
                }

                for (int k = 0; k < 8; k++)
                {
                    int index = lattice.IndexOf(state.Codes.Slice(4 * k, 4));
                    low[(8 * ib) + k] = (byte)index;
                    high[((8 * ib) + k) / 8] |= (byte)((index >> 8) << (((8 * ib) + k) % 8));
                }

                signs.CopyTo(signBytes[(4 * ib)..]);
                scales[ib] = scale;
                maxScale = MathF.Max(maxScale, scale);
            }

            if (maxScale == 0)
            {
                continue;
            }

            float d = maxScale / 31;
            BinaryPrimitives.WriteUInt16LittleEndian(block, HalfBits.FromSingle(d * 1.033f));    // ggml's fudge factor
            float id = 1 / d;
            for (int ib = 0; ib < SuperBlock / Block; ib += 2)
            {
                int l1 = Math.Clamp(KQuantQuantizer.NearestInt(0.5f * ((id * scales[ib]) - 1)), 0, 15);
                int l2 = Math.Clamp(KQuantQuantizer.NearestInt(0.5f * ((id * scales[ib + 1]) - 1)), 0, 15);
                scaleBytes[ib / 2] = (byte)(l1 | (l2 << 4));
            }
        }
    }

    /// <summary>One group of 32's weights, magnitudes and 3-bit levels, and the scale search over them.</summary>
    private sealed class SearchState
    {
        private readonly float[] _weight = new float[Block], _magnitude = new float[Block], _rootWeight = new float[Block];
        private readonly sbyte[] _codes = new sbyte[Block], _trial = new sbyte[Block];
        private readonly bool[] _onGrid = new bool[8], _trialOnGrid = new bool[8];

        /// <summary>The chosen 3-bit levels (0..7) of the 32 magnitudes.</summary>
        public Span<sbyte> Codes => _codes;

        public void Weigh(ReadOnlySpan<float> xb, ReadOnlySpan<float> importance, float sigma2)
        {
            for (int i = 0; i < Block; i++)
            {
                _weight[i] = importance.IsEmpty ? xb[i] * xb[i] : importance[i] * MathF.Sqrt(sigma2 + (xb[i] * xb[i]));
            }

            for (int i = 0; i < Block; i++)
            {
                _rootWeight[i] = MathF.Sqrt(_weight[i]);
            }
        }

        /// <summary>IQ3_S: eight values' magnitudes, and their signs as bits.</summary>
        public byte AllSigns(ReadOnlySpan<float> xb, int k)
        {
            int s = 0;
            for (int i = 0; i < 8; i++)
            {
                float v = xb[(8 * k) + i];
                _magnitude[(8 * k) + i] = v >= 0 ? v : -v;
                s |= v >= 0 ? 0 : 1 << i;
            }

            return (byte)s;
        }

        /// <summary>
        /// IQ3_XXS: as <see cref="AllSigns"/>, but an odd count of minus signs is made even by flipping the value with the
        /// least weight × x² (its magnitude then stored negative), and only seven bits kept (the eighth follows from them).
        /// </summary>
        public byte EvenSigns(ReadOnlySpan<float> xb, int k)
        {
            int s = AllSigns(xb, k);
            if (int.PopCount(s) % 2 == 1)
            {
                int least = 0;
                float min = _weight[8 * k] * xb[8 * k] * xb[8 * k];
                for (int i = 1; i < 8; i++)
                {
                    float ax = _weight[(8 * k) + i] * xb[(8 * k) + i] * xb[(8 * k) + i];
                    if (ax < min)
                    {
                        min = ax;
                        least = i;
                    }
                }

                _magnitude[(8 * k) + least] = -_magnitude[(8 * k) + least];
                s ^= 1 << least;
            }

            return (byte)(s & 127);
        }

        public float MaxMagnitude()
        {
            float max = _magnitude[0];
            for (int i = 1; i < Block; i++)
            {
                max = MathF.Max(max, _magnitude[i]);
            }

            return max;
        }

        /// <summary>
        /// The best scale over candidates (15 + t / 5) / max for t in ±<paramref name="tries"/>, then the groups off the
        /// lattice (IQ3_XXS: only those; IQ3_S: every group) rounded again against it, and the scale fitted once more.
        /// </summary>
        public float Search(Lattice lattice, float max, int tries, bool keepOnGrid)
        {
            // Where no candidate fits at all (every weight zero), the levels stay 0 and (IQ3_XXS) count as lattice points.
            float best = 0, scale = max / ((2 * MaxLevel) - 1);
            Array.Clear(_codes);
            Array.Fill(_onGrid, keepOnGrid);

            for (int t = -tries; t <= tries; t++)
            {
                float id = (((2 * MaxLevel) - 1) + (t * 0.2f)) / max;
                float trialScale = 1 / id;
                for (int k = 0; k < 8; k++)
                {
                    Span<sbyte> group = _trial.AsSpan(4 * k, 4);
                    for (int i = 0; i < 4; i++)
                    {
                        group[i] = (sbyte)Math.Clamp(KQuantQuantizer.NearestInt(0.5f * ((id * _magnitude[(4 * k) + i]) - 1)), 0, MaxLevel - 1);
                    }

                    _trialOnGrid[k] = lattice.IndexOf(group) >= 0;
                    if (!_trialOnGrid[k])
                    {
                        lattice.NearestNeighbour(group, _magnitude.AsSpan(4 * k, 4), _rootWeight.AsSpan(4 * k, 4), trialScale);
                    }
                }

                (float sumqx, float sumq2) = Fit(_trial);
                if (sumq2 > 0 && sumqx * sumqx > best * sumq2)
                {
                    scale = sumqx / sumq2;
                    best = scale * sumqx;
                    _trial.CopyTo(_codes, 0);
                    _trialOnGrid.CopyTo(_onGrid, 0);
                }
            }

            if (Array.IndexOf(_onGrid, false) >= 0 && scale > 0)
            {
                float id = 1 / scale;
                for (int k = 0; k < 8; k++)
                {
                    if (keepOnGrid && _onGrid[k])
                    {
                        continue;
                    }

                    Span<sbyte> group = _codes.AsSpan(4 * k, 4);
                    for (int i = 0; i < 4; i++)
                    {
                        group[i] = (sbyte)Math.Clamp(KQuantQuantizer.NearestInt(0.5f * ((id * _magnitude[(4 * k) + i]) - 1)), 0, MaxLevel - 1);
                    }

                    if (lattice.IndexOf(group) < 0)
                    {
                        lattice.NearestNeighbour(group, _magnitude.AsSpan(4 * k, 4), _rootWeight.AsSpan(4 * k, 4), scale);
                    }
                }

                (float sumqx, float sumq2) = Fit(_codes);
                if (sumq2 > 0)
                {
                    scale = sumqx / sumq2;
                }
            }

            return scale;
        }

        private (float SumQx, float SumQ2) Fit(ReadOnlySpan<sbyte> codes)
        {
            float sumqx = 0, sumq2 = 0;
            for (int i = 0; i < Block; i++)
            {
                float w = _weight[i], q = (2 * codes[i]) + 1;
                sumqx += w * _magnitude[i] * q;
                sumq2 += w * q * q;
            }

            return (sumqx, sumq2);
        }
    }

    /// <summary>
    /// A lattice of groups of four 3-bit levels as ggml's <c>iq3xs_init_impl</c> prepares it: each point's levels, the
    /// point of each of the 4096 level combinations (or -1), and for each combination off the lattice its neighbours,
    /// the points at the nearest <c>neighbourDistances</c> squared distances (in 2l + 1 units), nearest first, ties by index.
    /// </summary>
    internal sealed class Lattice
    {
        private readonly sbyte[] _points;
        private readonly int[] _map = new int[4096];
        private readonly ushort[][] _neighbours = new ushort[4096][];

        public Lattice(int size, Func<int, ReadOnlySpan<byte>> point, byte[] magnitudes, int neighbourDistances)
        {
            _points = new sbyte[size * 4];
            Array.Fill(_map, -1);
            for (int p = 0; p < size; p++)
            {
                ReadOnlySpan<byte> bytes = point(p);
                for (int i = 0; i < 4; i++)
                {
                    _points[(4 * p) + i] = (sbyte)((2 * Array.IndexOf(magnitudes, bytes[i])) + 1);
                }

                _map[Key(_points.AsSpan(4 * p, 4), odd: true)] = p;
            }

            var byDistance = new (int Distance, int Point)[size];
            for (int key = 0; key < _map.Length; key++)
            {
                if (_map[key] >= 0)
                {
                    continue;
                }

                for (int p = 0; p < size; p++)
                {
                    int d2 = 0;
                    for (int i = 0; i < 4; i++)
                    {
                        int diff = _points[(4 * p) + i] - ((2 * ((key >> (3 * i)) & 7)) + 1);
                        d2 += diff * diff;
                    }

                    byDistance[p] = (d2, p);
                }

                Array.Sort(byDistance);
                int taken = 0, distances = 1;
                for (; taken < size; taken++)
                {
                    if (byDistance[taken].Distance > byDistance[taken == 0 ? 0 : taken - 1].Distance && ++distances > neighbourDistances)
                    {
                        break;
                    }
                }

                _neighbours[key] = [.. byDistance.Take(taken).Select(n => (ushort)n.Point)];
            }
        }

        /// <summary>The lattice point of four levels (0..7), or -1 where they are not one.</summary>
        public int IndexOf(ReadOnlySpan<sbyte> levels) => _map[Key(levels, odd: false)];

        /// <summary>
        /// Replaces four levels that are not a lattice point by the neighbour whose values × <paramref name="scale"/> are
        /// nearest <paramref name="magnitudes"/> in distance weighted by <paramref name="rootWeights"/> (the first such on ties).
        /// </summary>
        public void NearestNeighbour(Span<sbyte> levels, ReadOnlySpan<float> magnitudes, ReadOnlySpan<float> rootWeights, float scale)
        {
            float bestD2 = float.MaxValue;
            int best = -1;
            foreach (ushort p in _neighbours[Key(levels, odd: false)])
            {
                float d2 = 0;
                for (int i = 0; i < 4; i++)
                {
                    float diff = (scale * _points[(4 * p) + i]) - magnitudes[i];
                    d2 += rootWeights[i] * diff * diff;
                }

                if (d2 < bestD2)
                {
                    bestD2 = d2;
                    best = p;
                }
            }

            for (int i = 0; i < 4; i++)
            {
                levels[i] = (sbyte)((_points[(4 * best) + i] - 1) / 2);
            }
        }

        private static int Key(ReadOnlySpan<sbyte> values, bool odd)
        {
            int key = 0;
            for (int i = 0; i < 4; i++)
            {
                key |= (odd ? (values[i] - 1) / 2 : values[i]) << (3 * i);
            }

            return key;
        }
    }
}
