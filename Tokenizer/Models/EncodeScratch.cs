using System.Text;
using QwenSharp.Tokenization.PreTokenizers;

namespace QwenSharp.Tokenization.Models;

/// <summary>Per-thread buffers for encoding, grown as needed and reused, so encoding allocates no per-token memory.</summary>
internal sealed class EncodeScratch
{
    [ThreadStatic]
    private static EncodeScratch? t_current;

    private char[] _chars = new char[256];

    public static EncodeScratch Current => t_current ??= new EncodeScratch();

    private byte[] _bytes = new byte[1024];

    /// <summary>The UTF-8 of the last <see cref="Utf8"/> call.</summary>
    public byte[] Bytes => _bytes;

    public int[] SymbolIds { get; private set; } = new int[1024];

    public int[] Prev { get; private set; } = new int[1024];

    public int[] Next { get; private set; } = new int[1024];

    public MinHeap Heap { get; } = new();

    public PieceList Pieces { get; } = new();

    public PieceList SparePieces { get; } = new();

    /// <summary>Where a pre-tokenizer that rewrites text (Metaspace) writes it.</summary>
    public char[] RewriteBuffer = new char[256];

    /// <summary>Encodes <paramref name="text"/> as UTF-8 into <see cref="Bytes"/>; returns the byte count.</summary>
    public int Utf8(ReadOnlySpan<char> text)
    {
        return Encoding.UTF8.GetBytes(text, Buffers.Grow(ref _bytes, Encoding.UTF8.GetMaxByteCount(text.Length)));
    }

    public Span<char> Chars(int length) => Buffers.Grow(ref _chars, length);

    public void EnsureSymbols(int count)
    {
        if (SymbolIds.Length < count)
        {
            int size = Math.Max(count, SymbolIds.Length * 2);
            SymbolIds = new int[size];
            Prev = new int[size];
            Next = new int[size];
        }
    }
}

/// <summary>A binary min-heap of 64-bit keys (merge rank in the high half, position in the low half).</summary>
internal sealed class MinHeap
{
    private long[] _items = new long[256];
    private int _count;

    public void Clear() => _count = 0;

    public void Push(long item)
    {
        if (_count == _items.Length)
        {
            Array.Resize(ref _items, _count * 2);
        }

        int i = _count++;
        while (i > 0)
        {
            int parent = (i - 1) >> 1;
            if (_items[parent] <= item)
            {
                break;
            }

            _items[i] = _items[parent];
            i = parent;
        }

        _items[i] = item;
    }

    public bool TryPop(out long item)
    {
        if (_count == 0)
        {
            item = 0;
            return false;
        }

        item = _items[0];
        long last = _items[--_count];
        int i = 0;
        while (true)
        {
            int child = 2 * i + 1;
            if (child >= _count)
            {
                break;
            }

            if (child + 1 < _count && _items[child + 1] < _items[child])
            {
                child++;
            }

            if (last <= _items[child])
            {
                break;
            }

            _items[i] = _items[child];
            i = child;
        }

        _items[i] = last;
        return true;
    }
}
