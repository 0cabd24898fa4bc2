namespace QwenSharp.Numerics;

/// <summary>
/// The lattice an i-quant's groups of values round to, as ggml's <c>iq3xs_init_impl</c> and <c>iq2xs_init_impl</c>
/// prepare it for quantizing: each point's levels (stored 2l + 1), the point of every combination of levels (or -1), and
/// for each combination off the lattice its neighbours: the points at the nearest <c>neighbourDistances</c> squared
/// distances (in 2l + 1 units), nearest first, ties by index. IQ3: groups of four 3-bit levels; IQ2: eight 2-bit levels.
/// </summary>
internal sealed class IqLattice
{
    private readonly int _dims, _bits;
    private readonly sbyte[] _points;
    private readonly int[] _map;
    private readonly ushort[][] _neighbours;

    /// <param name="size">Points in the lattice.</param>
    /// <param name="dims">Values a point has.</param>
    /// <param name="bits">Bits a level takes in a combination's key.</param>
    /// <param name="point">The format's point k as its magnitudes (<see cref="IqGrids"/>).</param>
    /// <param name="magnitudes">The magnitudes in level order: level l is <c>magnitudes[l]</c>.</param>
    /// <param name="neighbourDistances">How many of the nearest distances a combination off the lattice keeps the points of.</param>
    /// <param name="keys">Combinations of levels to map: every key a search can form.</param>
    /// <remarks>
    /// Neighbours are listed only for combinations of the levels <paramref name="magnitudes"/> names (IQ2 and IQ1 use three
    /// of their 2-bit levels): no search forms the others, and a 2048-point lattice is then built in a sixth of the time.
    /// </remarks>
    public IqLattice(int size, int dims, int bits, Func<int, ReadOnlySpan<byte>> point, byte[] magnitudes, int neighbourDistances, int keys = -1)
    {
        (_dims, _bits) = (dims, bits);
        keys = keys < 0 ? 1 << (dims * bits) : keys;
        _points = new sbyte[size * dims];
        _map = new int[keys];
        _neighbours = new ushort[keys][];
        Array.Fill(_map, -1);
        Span<sbyte> levels = stackalloc sbyte[dims];
        for (int p = 0; p < size; p++)
        {
            ReadOnlySpan<byte> bytes = point(p);
            for (int i = 0; i < dims; i++)
            {
                levels[i] = (sbyte)Array.IndexOf(magnitudes, bytes[i]);
                _points[(dims * p) + i] = (sbyte)((2 * levels[i]) + 1);
            }

            _map[Key(levels)] = p;
        }

        int mask = (1 << bits) - 1;
        var distance = new int[size];
        Span<int> nearest = stackalloc int[neighbourDistances];
        Span<sbyte> position = stackalloc sbyte[dims];
        var kept = new List<(int Distance, int Point)>();
        for (int key = 0; key < keys; key++)
        {
            if (_map[key] >= 0 || !Formable(key, magnitudes.Length))
            {
                continue;
            }

            // The nearest few distinct distances in one pass, then the points at them, nearest first and by index.
            nearest.Fill(int.MaxValue);
            for (int i = 0; i < dims; i++)
            {
                position[i] = (sbyte)((2 * ((key >> (bits * i)) & mask)) + 1);
            }

            for (int p = 0; p < size; p++)
            {
                int d2 = 0;
                ReadOnlySpan<sbyte> q = _points.AsSpan(dims * p, dims);
                for (int i = 0; i < dims; i++)
                {
                    int diff = q[i] - position[i];
                    d2 += diff * diff;
                }

                distance[p] = d2;
                if (d2 < nearest[^1] && nearest.BinarySearch(d2) is int found && found < 0)
                {
                    int at = ~found;
                    nearest[at..^1].CopyTo(nearest[(at + 1)..]);
                    nearest[at] = d2;
                }
            }

            kept.Clear();
            for (int p = 0; p < size; p++)
            {
                if (distance[p] <= nearest[^1])
                {
                    kept.Add((distance[p], p));
                }
            }

            kept.Sort();
            _neighbours[key] = [.. kept.Select(n => (ushort)n.Point)];
        }
    }

    /// <summary>The lattice point of a group's levels, or -1 where they are not one.</summary>
    public int IndexOf(ReadOnlySpan<sbyte> levels) => _map[Key(levels)];

    /// <summary>
    /// Replaces levels that are not a lattice point by the neighbour whose values × <paramref name="scale"/> are nearest
    /// <paramref name="magnitudes"/> in distance weighted by <paramref name="rootWeights"/> (the first such on ties). With
    /// <paramref name="levelValues"/> a level l stands for levelValues[l] rather than 2l + 1 (IQ1_S's shifted -1, 0, 1).
    /// Returns the point's index.
    /// </summary>
    public int NearestNeighbour(Span<sbyte> levels, ReadOnlySpan<float> magnitudes, ReadOnlySpan<float> rootWeights, float scale, ReadOnlySpan<float> levelValues = default)
    {
        float bestD2 = float.MaxValue;
        int best = -1;
        foreach (ushort p in _neighbours[Key(levels)])
        {
            float d2 = 0;
            for (int i = 0; i < _dims; i++)
            {
                int point = _points[(_dims * p) + i];
                float diff = (scale * (levelValues.IsEmpty ? point : levelValues[(point - 1) / 2])) - magnitudes[i];
                d2 += rootWeights[i] * diff * diff;
            }

            if (d2 < bestD2)
            {
                bestD2 = d2;
                best = p;
            }
        }

        for (int i = 0; i < _dims; i++)
        {
            levels[i] = (sbyte)((_points[(_dims * best) + i] - 1) / 2);
        }

        return best;
    }

    /// <summary>Whether every level of <paramref name="key"/> is below <paramref name="levels"/>.</summary>
    private bool Formable(int key, int levels)
    {
        for (int i = 0; i < _dims; i++)
        {
            if (((key >> (_bits * i)) & ((1 << _bits) - 1)) >= levels)
            {
                return false;
            }
        }

        return true;
    }

    private int Key(ReadOnlySpan<sbyte> levels)
    {
        int key = 0;
        for (int i = 0; i < _dims; i++)
        {
            key |= levels[i] << (_bits * i);
        }

        return key;
    }
}
