namespace QwenSharp.Sampling;

/// <summary>
/// One stack of a grammar's pushdown recognizer (<see cref="GbnfGrammar"/>): the element to match next at the top
/// (<see cref="Position"/>, a character set once the stack is expanded), what follows it below. Immutable and shared:
/// stacks that differ only at the top share the frames beneath. Equal by content, as the stacks of a state are a set.
/// </summary>
internal sealed class GrammarFrame(int position, GrammarFrame? below) : IEquatable<GrammarFrame>
{
    private readonly int _hash = HashCode.Combine(position, below?._hash ?? 0);

    /// <summary>The element's index in the grammar's elements.</summary>
    public int Position { get; } = position;

    public GrammarFrame? Below { get; } = below;

    public bool Equals(GrammarFrame? other)
    {
        GrammarFrame? a = this, b = other;
        while (a is not null && b is not null)
        {
            if (ReferenceEquals(a, b))
            {
                return true;
            }

            if (a._hash != b._hash || a.Position != b.Position)
            {
                return false;
            }

            (a, b) = (a.Below, b.Below);
        }

        return a is null && b is null;
    }

    public override bool Equals(object? obj) => obj is GrammarFrame other && Equals(other);

    public override int GetHashCode() => _hash;

    /// <summary>The positions from the top down, as a key.</summary>
    public override string ToString()
    {
        var text = new System.Text.StringBuilder();
        for (GrammarFrame? frame = this; frame is not null; frame = frame.Below)
        {
            text.Append(frame.Position).Append(',');
        }

        return text.ToString();
    }
}

/// <summary>
/// Where a text stands in a grammar: every way its parse may go on, each a stack whose top is the character set to
/// match next (<see cref="GrammarFrame"/>), or null, the empty stack, for a parse that is whole. One object per
/// <see cref="Key"/> (<see cref="GbnfGrammar"/> keeps them), so steps from it are kept once.
/// </summary>
internal sealed class GrammarStacks(GrammarFrame?[] stacks, string key)
{
    public GrammarFrame?[] Stacks { get; } = stacks;

    /// <summary>The stacks as a string: states with equal keys allow the same texts to follow.</summary>
    public string Key { get; } = key;

    /// <summary>Some parse is whole: the text may end here.</summary>
    public bool CanEnd { get; } = Array.IndexOf(stacks, null) >= 0;

    /// <summary>Every parse is whole: nothing may follow.</summary>
    public bool Complete => CanEnd && Stacks.Length == 1;

    /// <summary>
    /// The steps taken from here by ASCII characters, by character: null while not yet taken, <see cref="Refused"/> where
    /// none may come. (A token mask steps most of the vocabulary's bytes from a few states; an array is a third of the
    /// time a dictionary took.) Written by any thread: each entry is one reference, and equal steps give the same state.
    /// </summary>
    public GrammarStacks?[] AsciiSteps { get; } = new GrammarStacks?[128];

    /// <summary>
    /// The tokens its token tops take, once <see cref="GbnfGrammar.TokenTops"/> has worked them out (one reference, written by
    /// any thread whole: equal work gives equal sets).
    /// </summary>
    public TokenTopSets? TokenTops { get; set; }

    /// <summary>What <see cref="AsciiSteps"/> holds for a character no parse can take.</summary>
    public static GrammarStacks Refused { get; } = new([], "refused");
}

/// <summary>What a state's stacks whose top is a token take: the tokens <c>&lt;[id]&gt;</c> names, and those <c>!&lt;[id]&gt;</c> names, any other token passing it.</summary>
internal sealed record TokenTopSets(int[] Only, int[] AllBut);
