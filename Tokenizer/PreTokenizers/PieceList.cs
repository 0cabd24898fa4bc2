namespace QwenSharp.Tokenization.PreTokenizers;

/// <summary>A reusable list of (start, length) pieces of one text; no allocation once grown.</summary>
internal sealed class PieceList
{
    private int[] _starts = new int[64];
    private int[] _lengths = new int[64];

    public int Count { get; private set; }

    public int StartOf(int index) => _starts[index];

    public int LengthOf(int index) => _lengths[index];

    public void Clear() => Count = 0;

    public void Add(int start, int length)
    {
        if (length <= 0)
        {
            return;
        }

        if (Count == _starts.Length)
        {
            Array.Resize(ref _starts, Count * 2);
            Array.Resize(ref _lengths, Count * 2);
        }

        _starts[Count] = start;
        _lengths[Count] = length;
        Count++;
    }

    public void CopyFrom(PieceList other)
    {
        Clear();
        for (int i = 0; i < other.Count; i++)
        {
            Add(other.StartOf(i), other.LengthOf(i));
        }
    }
}
