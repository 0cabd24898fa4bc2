namespace QwenSharp.Sampling;

/// <summary>A set of UTF-16 code units as sorted, disjoint, inclusive ranges (a regular expression's character class).</summary>
internal sealed class CharacterSet
{
    public const int MaxUnit = 0xFFFF;

    private readonly int[] _ranges;   // first, last, first, last, ...

    private CharacterSet(int[] ranges) => _ranges = ranges;

    public bool IsEmpty => _ranges.Length == 0;

    /// <summary>The set's one code unit, or null when it holds none or several.</summary>
    public int? OnlyMember => _ranges.Length == 2 && _ranges[0] == _ranges[1] ? _ranges[0] : null;

    public static CharacterSet Of(params (int First, int Last)[] ranges)
    {
        var merged = new List<int>();
        foreach ((int first, int last) in ranges.Where(r => r.First <= r.Last).OrderBy(r => r.First))
        {
            if (merged.Count > 0 && first <= merged[^1] + 1)
            {
                merged[^1] = Math.Max(merged[^1], last);
            }
            else
            {
                merged.Add(first);
                merged.Add(last);
            }
        }

        return new CharacterSet([.. merged]);
    }

    public static CharacterSet Single(int codePoint) => Of((codePoint, codePoint));

    public CharacterSet Union(CharacterSet other) => Of([.. Ranges(), .. other.Ranges()]);

    /// <summary>Every code unit not in this set.</summary>
    public CharacterSet Complement()
    {
        var ranges = new List<(int, int)>();
        int next = 0;
        foreach ((int first, int last) in Ranges())
        {
            ranges.Add((next, first - 1));
            next = last + 1;
        }

        ranges.Add((next, MaxUnit));
        return Of([.. ranges]);
    }

    public bool Contains(int codePoint)
    {
        for (int i = 0; i < _ranges.Length && _ranges[i] <= codePoint; i += 2)
        {
            if (codePoint <= _ranges[i + 1])
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Whether some code unit from <paramref name="first"/> to <paramref name="last"/> is in the set.</summary>
    public bool Meets(int first, int last)
    {
        for (int i = 0; i < _ranges.Length; i += 2)
        {
            if (_ranges[i] <= last && _ranges[i + 1] >= first)
            {
                return true;
            }
        }

        return false;
    }

    private IEnumerable<(int First, int Last)> Ranges()
    {
        for (int i = 0; i < _ranges.Length; i += 2)
        {
            yield return (_ranges[i], _ranges[i + 1]);
        }
    }
}
