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
    private readonly int[] _ropeT, _ropeH, _ropeW;
    private readonly float[]?[] _embeddingArrays;
    private readonly int[] _embeddingOffsets;
    private readonly float[]?[] _adapterScales;

    public TokenBatch(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        _tokens = new int[capacity];
        _positions = new int[capacity];
        _slots = new int[capacity];
        _logitRows = new int[capacity];
        _ropeT = new int[capacity];
        _ropeH = new int[capacity];
        _ropeW = new int[capacity];
        _embeddingArrays = new float[]?[capacity];
        _embeddingOffsets = new int[capacity];
        _adapterScales = new float[]?[capacity];
    }

    public int Capacity => _tokens.Length;

    public int Count { get; private set; }

    public int LogitCount { get; private set; }

    public ReadOnlySpan<int> Tokens => _tokens.AsSpan(0, Count);

    public ReadOnlySpan<int> Positions => _positions.AsSpan(0, Count);

    public ReadOnlySpan<int> Slots => _slots.AsSpan(0, Count);

    /// <summary>Rows (indexes into this batch) whose logits the step computes, in this order.</summary>
    public ReadOnlySpan<int> LogitRows => _logitRows.AsSpan(0, LogitCount);

    /// <summary>Some row has 3-D rotary positions other than (position, position, position) (Qwen2-VL).</summary>
    public bool HasRopePositions { get; private set; }

    /// <summary>Some row's embedding is given (a picture's features) instead of looked up from its token.</summary>
    public bool HasEmbeddings { get; private set; }

    /// <summary>The temporal, height and width rotary positions of each row (M-RoPE); each equals the position for plain rows.</summary>
    public ReadOnlySpan<int> RopeT => _ropeT.AsSpan(0, Count);

    public ReadOnlySpan<int> RopeH => _ropeH.AsSpan(0, Count);

    public ReadOnlySpan<int> RopeW => _ropeW.AsSpan(0, Count);

    /// <summary>The embedding given for <paramref name="row"/>: an array and the offset of its row of hidden_size values, or null.</summary>
    public (float[]? Values, int Offset) EmbeddingOf(int row) => (_embeddingArrays[row], _embeddingOffsets[row]);

    /// <summary>Some row gives its own LoRA adapter scales (<see cref="AdapterScalesOf"/>).</summary>
    public bool HasAdapterScales { get; private set; }

    /// <summary>
    /// The scale of each of the model's LoRA adapters (in <see cref="Qwen2Model.Adapters"/>' order) for <paramref name="row"/>'s
    /// sequence, or null for the adapters' own scales.
    /// </summary>
    public float[]? AdapterScalesOf(int row) => _adapterScales[row];

    /// <summary>
    /// Whether two sequences' adapter scales (as <see cref="AdapterScalesOf"/> gives them) are the same, so that keys and
    /// values one computed serve the other.
    /// </summary>
    public static bool SameAdapterScales(float[]? a, float[]? b) => a == b || (a is not null && b is not null && a.AsSpan().SequenceEqual(b));

    public void Clear()
    {
        Count = 0;
        if (HasAdapterScales)
        {
            Array.Clear(_adapterScales);
            HasAdapterScales = false;
        }

        LogitCount = 0;
        HasRopePositions = false;
        if (HasEmbeddings)
        {
            Array.Clear(_embeddingArrays);
            HasEmbeddings = false;
        }
    }

    /// <summary>Adds the token at <paramref name="position"/> of sequence <paramref name="slot"/>.</summary>
    public void Add(int token, int position, int slot, bool wantLogits) =>
        Add(token, position, slot, wantLogits, position, position, position, null, 0);

    /// <summary>
    /// Adds a token whose sequence runs with its own LoRA adapter scales (<paramref name="adapterScales"/>: one per adapter of the
    /// model, in order; null: the adapters' own). The array is kept, not copied: it must not change while the batch holds it.
    /// </summary>
    public void Add(int token, int position, int slot, bool wantLogits, float[]? adapterScales)
    {
        Add(token, position, slot, wantLogits);
        SetAdapterScales(Count - 1, adapterScales);
    }

    /// <summary>Gives <paramref name="row"/> its sequence's own LoRA adapter scales (see <see cref="Add(int, int, int, bool, float[])"/>).</summary>
    public void SetAdapterScales(int row, float[]? adapterScales)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)row, (uint)Count, nameof(row));
        _adapterScales[row] = adapterScales;
        HasAdapterScales |= adapterScales is not null;
    }

    /// <summary>
    /// Adds a token with its 3-D rotary position (<paramref name="t"/>, <paramref name="h"/>, <paramref name="w"/>) and,
    /// for a picture's pad, the <paramref name="embedding"/> row at <paramref name="embeddingOffset"/> that replaces its
    /// token's embedding (Qwen2-VL).
    /// </summary>
    public void Add(int token, int position, int slot, bool wantLogits, int t, int h, int w, float[]? embedding = null, int embeddingOffset = 0)
    {
        if (Count == Capacity)
        {
            throw new InvalidOperationException($"the batch is full ({Capacity} tokens)");
        }

        _tokens[Count] = token;
        _positions[Count] = position;
        _slots[Count] = slot;
        _ropeT[Count] = t;
        _ropeH[Count] = h;
        _ropeW[Count] = w;
        HasRopePositions |= t != position || h != position || w != position;
        _embeddingArrays[Count] = embedding;
        _embeddingOffsets[Count] = embeddingOffset;
        HasEmbeddings |= embedding is not null;
        if (wantLogits)
        {
            _logitRows[LogitCount++] = Count;
        }

        Count++;
    }
}
