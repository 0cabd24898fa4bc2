namespace QwenSharp.Qwen2;

/// <summary>
/// The tokens of one forward step: any mix of sequences (slots) and positions, e.g. a whole prompt for
/// prefill, or one new token for each of several sequences during decode. Rows whose logits are wanted are
/// listed in <see cref="LogitRows"/>. Arrays are sized once; <see cref="Clear"/> and <see cref="Add"/> reuse them.
/// </summary>
public sealed class TokenBatch
{
    private readonly int[] _tokens;
    private readonly int[] _positions;
    private readonly int[] _slots;
    private readonly int[] _logitRows;

    public TokenBatch(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        _tokens = new int[capacity];
        _positions = new int[capacity];
        _slots = new int[capacity];
        _logitRows = new int[capacity];
    }

    public int Capacity => _tokens.Length;

    public int Count { get; private set; }

    public int LogitCount { get; private set; }

    public ReadOnlySpan<int> Tokens => _tokens.AsSpan(0, Count);

    public ReadOnlySpan<int> Positions => _positions.AsSpan(0, Count);

    public ReadOnlySpan<int> Slots => _slots.AsSpan(0, Count);

    /// <summary>Rows (indexes into this batch) whose logits the step computes, in this order.</summary>
    public ReadOnlySpan<int> LogitRows => _logitRows.AsSpan(0, LogitCount);

    public void Clear()
    {
        Count = 0;
        LogitCount = 0;
    }

    /// <summary>Adds the token at <paramref name="position"/> of sequence <paramref name="slot"/>.</summary>
    public void Add(int token, int position, int slot, bool wantLogits)
    {
        if (Count == Capacity)
        {
            throw new InvalidOperationException($"the batch is full ({Capacity} tokens)");
        }

        _tokens[Count] = token;
        _positions[Count] = position;
        _slots[Count] = slot;
        if (wantLogits)
        {
            _logitRows[LogitCount++] = Count;
        }

        Count++;
    }
}
