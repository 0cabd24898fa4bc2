using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Text;

namespace QwenSharp.Tokenization.Models;

/// <summary>
/// The BPE model of tokenizer.json: a piece becomes initial symbols (UTF-8 bytes for byte-level BPE;
/// characters, with <c>&lt;0xXX&gt;</c> byte fallback or <c>unk</c>, otherwise), which are merged by rank.
/// </summary>
/// <remarks>
/// The merge loop is Hugging Face's: a heap of candidate pairs ordered by (rank, position) over a linked
/// list of symbols, so a piece of n symbols costs O(n log n), never a rescan per merge; a popped pair
/// that no longer exists is skipped. Results of pieces up to 256 characters are cached (lookups by span,
/// no allocation), which makes ordinary text a cache hit per word.
/// </remarks>
internal sealed class BpeModel
{
    private const int MaxCachedLength = 256;
    private const int CacheCapacity = 1 << 17;

    private readonly MergeTable _mergeRanks;
    private readonly int[] _mergeResults;
    private readonly int[] _byteSymbols;
    private readonly int[] _byteFallbackIds;
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _cacheBySpan;
    private int _cachedCount;

    public BpeModel(Vocabulary vocabulary, IReadOnlyList<Loading.MergeRule> merges, BpeOptions options, string source)
    {
        Vocabulary = vocabulary;
        Options = options;
        _cacheBySpan = _cache.GetAlternateLookup<ReadOnlySpan<char>>();
        _mergeRanks = new MergeTable(merges.Count);
        _mergeResults = new int[merges.Count];
        for (int rank = 0; rank < merges.Count; rank++)
        {
            // The first (lowest-rank) occurrence of a pair wins, as in Hugging Face.
            _mergeRanks.TryAdd(merges[rank].Left, merges[rank].Right, rank);
            _mergeResults[rank] = merges[rank].Merged;
        }

        _byteSymbols = new int[256];
        _byteFallbackIds = new int[256];
        for (int b = 0; b < 256; b++)
        {
            _byteSymbols[b] = vocabulary.TryGetId([ByteLevelAlphabet.CharOf((byte)b)], out int id) ? id : -1;
            _byteFallbackIds[b] = vocabulary.TryGetId($"<0x{b:X2}>", out int fallback) ? fallback : -1;
        }

        UnknownId = options.UnknownToken is null ? -1
            : vocabulary.TryGetId(options.UnknownToken, out int unk) ? unk
            : throw new InvalidDataException($"{source}: model.unk_token \"{options.UnknownToken}\" is not in model.vocab");

    }

    public Vocabulary Vocabulary { get; }

    public BpeOptions Options { get; }

    /// <summary>Id of <c>unk_token</c>, or -1.</summary>
    public int UnknownId { get; }

    /// <summary>Appends the ids of one pre-tokenized piece to <paramref name="output"/>.</summary>
    public void Encode(ReadOnlySpan<char> piece, bool byteLevel, List<int> output, EncodeScratch scratch)
    {
        if (piece.Length <= MaxCachedLength && _cacheBySpan.TryGetValue(piece, out int[]? cached))
        {
            output.AddRange(cached);
            return;
        }

        int first = output.Count;
        EncodeUncached(piece, byteLevel, output, scratch);
        // ConcurrentDictionary.Count takes every lock, so the size is counted here instead.
        if (piece.Length <= MaxCachedLength && _cachedCount < CacheCapacity
            && _cacheBySpan.TryAdd(piece, CollectionsMarshal.AsSpan(output)[first..].ToArray()))
        {
            Interlocked.Increment(ref _cachedCount);
        }
    }

    private void EncodeUncached(ReadOnlySpan<char> piece, bool byteLevel, List<int> output, EncodeScratch scratch)
    {
        if (Options.IgnoreMerges && TryWholePiece(piece, byteLevel, scratch, out int wholeId))
        {
            output.Add(wholeId);
            return;
        }

        int count = byteLevel ? ByteSymbols(piece, scratch) : CharSymbols(piece, scratch);
        MergeAll(count, scratch);
        int[] ids = scratch.SymbolIds;
        int[] next = scratch.Next;
        for (int i = count > 0 ? 0 : -1; i >= 0; i = next[i])
        {
            output.Add(ids[i]);
        }
    }

    private bool TryWholePiece(ReadOnlySpan<char> piece, bool byteLevel, EncodeScratch scratch, out int id)
    {
        if (!byteLevel)
        {
            return Vocabulary.TryGetId(piece, out id);
        }

        int byteCount = scratch.Utf8(piece);
        Span<char> mapped = scratch.Chars(byteCount);
        for (int i = 0; i < byteCount; i++)
        {
            mapped[i] = ByteLevelAlphabet.CharOf(scratch.Bytes[i]);
        }

        return Vocabulary.TryGetId(mapped[..byteCount], out id);
    }

    private int ByteSymbols(ReadOnlySpan<char> piece, EncodeScratch scratch)
    {
        int byteCount = scratch.Utf8(piece);
        scratch.EnsureSymbols(byteCount);
        int count = 0;
        for (int i = 0; i < byteCount; i++)
        {
            int id = _byteSymbols[scratch.Bytes[i]];
            if (id >= 0)
            {
                scratch.SymbolIds[count++] = id;
            }
            else if (UnknownId >= 0)
            {
                count = AddUnknown(scratch.SymbolIds, count);
            }
        }

        return count;
    }

    private int CharSymbols(ReadOnlySpan<char> piece, EncodeScratch scratch)
    {
        scratch.EnsureSymbols(piece.Length * 4);
        int[] ids = scratch.SymbolIds;
        int count = 0;
        Span<byte> utf8 = stackalloc byte[4];
        int i = 0;
        while (i < piece.Length)
        {
            int width = char.IsHighSurrogate(piece[i]) && i + 1 < piece.Length && char.IsLowSurrogate(piece[i + 1]) ? 2 : 1;
            ReadOnlySpan<char> character = piece.Slice(i, width);
            i += width;
            if (Vocabulary.TryGetId(character, out int id))
            {
                ids[count++] = id;
                continue;
            }

            if (Options.ByteFallback && TryByteFallback(character, utf8, ids, ref count))
            {
                continue;
            }

            if (UnknownId >= 0)
            {
                count = AddUnknown(ids, count);
            }
        }

        return count;
    }

    private bool TryByteFallback(ReadOnlySpan<char> character, Span<byte> utf8, int[] ids, ref int count)
    {
        int length = Encoding.UTF8.GetBytes(character, utf8);
        for (int b = 0; b < length; b++)
        {
            if (_byteFallbackIds[utf8[b]] < 0)
            {
                return false;
            }
        }

        for (int b = 0; b < length; b++)
        {
            ids[count++] = _byteFallbackIds[utf8[b]];
        }

        return true;
    }

    /// <summary>Adds <c>unk</c>, fused with an <c>unk</c> just before it when <c>fuse_unk</c> is set.</summary>
    private int AddUnknown(int[] ids, int count)
    {
        if (Options.FuseUnknown && count > 0 && ids[count - 1] == UnknownId)
        {
            return count;
        }

        ids[count] = UnknownId;
        return count + 1;
    }

    private bool TryRank(int left, int right, out int rank) => _mergeRanks.TryGetRank(left, right, out rank);

    /// <summary>Applies merges lowest rank first (leftmost first among equal ranks) until none applies.</summary>
    private void MergeAll(int count, EncodeScratch scratch)
    {
        int[] ids = scratch.SymbolIds;
        int[] prev = scratch.Prev;
        int[] next = scratch.Next;
        MinHeap heap = scratch.Heap;
        heap.Clear();
        for (int i = 0; i < count; i++)
        {
            prev[i] = i - 1;
            next[i] = i + 1 < count ? i + 1 : -1;
            if (i + 1 < count && TryRank(ids[i], ids[i + 1], out int rank))
            {
                heap.Push(Candidate(rank, i));
            }
        }

        while (heap.TryPop(out long candidate))
        {
            int rank = (int)(candidate >> 32);
            int pos = (int)candidate;
            int right = next[pos];
            // Skip candidates made stale by an earlier merge: the symbol is gone, or the pair changed.
            if (ids[pos] < 0 || right < 0 || !TryRank(ids[pos], ids[right], out int currentRank)
                || _mergeResults[currentRank] != _mergeResults[rank])
            {
                continue;
            }

            ids[pos] = _mergeResults[rank];
            ids[right] = -1;
            next[pos] = next[right];
            if (next[pos] >= 0)
            {
                prev[next[pos]] = pos;
            }

            if (prev[pos] >= 0 && TryRank(ids[prev[pos]], ids[pos], out int leftRank))
            {
                heap.Push(Candidate(leftRank, prev[pos]));
            }

            if (next[pos] >= 0 && TryRank(ids[pos], ids[next[pos]], out int rightRank))
            {
                heap.Push(Candidate(rightRank, pos));
            }
        }
    }

    private static long Candidate(int rank, int position) => ((long)rank << 32) | (uint)position;
}

/// <summary>The BPE settings of tokenizer.json's model section.</summary>
internal sealed record BpeOptions(string? UnknownToken, bool FuseUnknown, bool ByteFallback, bool IgnoreMerges);
