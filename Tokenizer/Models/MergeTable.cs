namespace QwenSharp.Tokenization.Models;

/// <summary>
/// Merge ranks by (left id, right id): an open-addressing hash table with Fibonacci hashing and linear
/// probing. A <see cref="Dictionary{TKey, TValue}"/> keyed by the packed pair hashes a long as
/// <c>low ^ high</c>, i.e. <c>left ^ right</c>, which piles BPE pairs into long collision chains.
/// </summary>
internal sealed class MergeTable
{
    private const long Empty = -1;
    private readonly long[] _keys;
    private readonly int[] _ranks;
    private readonly int _shift;

    public MergeTable(int capacity)
    {
        int bits = Math.Max(4, 64 - System.Numerics.BitOperations.LeadingZeroCount((ulong)Math.Max(1, capacity * 2 - 1)));
        _keys = new long[1 << bits];
        _ranks = new int[1 << bits];
        _shift = 64 - bits;
        Array.Fill(_keys, Empty);
    }

    public int Count { get; private set; }

    /// <summary>Adds a pair unless it is there already (the lowest rank wins, as it is added first).</summary>
    public bool TryAdd(int left, int right, int rank)
    {
        long key = Key(left, right);
        int mask = _keys.Length - 1;
        for (int slot = Slot(key); ; slot = (slot + 1) & mask)
        {
            if (_keys[slot] == key)
            {
                return false;
            }

            if (_keys[slot] == Empty)
            {
                _keys[slot] = key;
                _ranks[slot] = rank;
                Count++;
                return true;
            }
        }
    }

    public bool TryGetRank(int left, int right, out int rank)
    {
        long key = Key(left, right);
        int mask = _keys.Length - 1;
        for (int slot = Slot(key); ; slot = (slot + 1) & mask)
        {
            long found = _keys[slot];
            if (found == key)
            {
                rank = _ranks[slot];
                return true;
            }

            if (found == Empty)
            {
                rank = 0;
                return false;
            }
        }
    }

    private static long Key(int left, int right) => ((long)left << 32) | (uint)right;

    private int Slot(long key) => (int)((ulong)(key * unchecked((long)0x9E3779B97F4A7C15UL)) >> _shift);
}
