namespace QwenSharp.Sampling;

/// <summary>
/// DRY's sequence breakers as token ids: for each token a breaker can begin with, the tokens that complete it after it
/// (none for a breaker that one token holds whole). A repetition is not counted back past a breaker.
/// </summary>
public sealed class DryBreakers
{
    private readonly Dictionary<int, List<int[]>> _tails = [];

    public static DryBreakers None { get; } = new();

    /// <summary>How many (head, tail) sequences there are.</summary>
    public int Count { get; private set; }

    /// <summary>Adds the breaker <paramref name="head"/> then <paramref name="tail"/>, unless it is there already.</summary>
    public void Add(int head, int[] tail)
    {
        ArgumentNullException.ThrowIfNull(tail);
        if (!_tails.TryGetValue(head, out List<int[]>? tails))
        {
            _tails[head] = tails = [];
        }

        if (!tails.Exists(t => t.AsSpan().SequenceEqual(tail)))
        {
            tails.Add(tail);
            Count++;
        }
    }

    /// <summary>The tails of the breakers that begin with <paramref name="head"/> (empty when none does).</summary>
    public IReadOnlyList<int[]> TailsOf(int head) => _tails.TryGetValue(head, out List<int[]>? tails) ? tails : [];

    /// <summary>Whether <paramref name="token"/> holds a breaker whole (DRY never penalises it).</summary>
    public bool HoldsOne(int token) => _tails.TryGetValue(token, out List<int[]>? tails) && tails.Exists(t => t.Length == 0);
}
