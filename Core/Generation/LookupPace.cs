namespace QwenSharp.Generation;

/// <summary>
/// How many guesses one sequence's next step takes under prompt lookup or a draft model, and those guesses (<see cref="Draft"/>). On the CPU a
/// guessed row through the rows' kernels (float weights, or a batch-invariant backend) costs from half a step to most of one
/// (the decode kernels for a few tokens are bound by arithmetic, not by reading the weights), so guesses the model does not
/// take make decoding slower than without lookup. After a step took all its guesses the next may take two more
/// (up to <see cref="PromptLookup.DraftTokens"/>); after one took some, one more than were taken (as transformers'
/// assistant schedule); after one took none, the sequence waits 1, 2, then 4 steps before it guesses again, one token,
/// until a guess is taken. Only the shape of the steps changes, never the tokens.
/// </summary>
/// <remarks>
/// stories260K's 200 greedy tokens, 6 guesses a step: 42 of 139 guesses taken without this, 25 of 56 waiting up to 16
/// steps, 34 of 74 waiting up to 4. At half a step a guess, that is 228, 203 and 203 steps' worth against 200 without
/// lookup; with 3 guesses a step, 203, 195 and 194. Waiting up to 4 takes most of the guesses that pay for the fewest rows.
/// </remarks>
public sealed class LookupPace(PromptLookup lookup, LookupPace.Drafter? drafter = null)
{
    /// <summary>Guesses of the tokens after prompt + generated, up to the span's length; returns how many (a draft model's).</summary>
    public delegate int Drafter(IReadOnlyList<int> prompt, IReadOnlyList<int> generated, Span<int> draft);

    private const int LongestWait = 4;

    private int _limit = lookup.DraftTokens;
    private int _misses;
    private int _wait;

    /// <summary>
    /// This step's guesses of the next tokens into <paramref name="draft"/> (at least <see cref="PromptLookup.DraftTokens"/>
    /// long): at most <paramref name="most"/> and what the pace allows (<see cref="Next"/>, not asked when
    /// <paramref name="most"/> is 0), looked up in <paramref name="text"/> and <paramref name="generated"/>; returns how many.
    /// </summary>
    public int Draft(IReadOnlyList<int> text, IReadOnlyList<int> generated, int most, Span<int> draft)
    {
        int allowed = most <= 0 ? 0 : Math.Min(most, Next());
        return allowed <= 0 ? 0 : drafter is null ? lookup.Draft(text, generated, draft[..allowed]) : drafter(text, generated, draft[..allowed]);
    }

    /// <summary>The most guesses this step may take (0 while waiting); call once per step, then <see cref="Taken"/>.</summary>
    public int Next()
    {
        if (_wait > 0)
        {
            _wait--;
            return 0;
        }

        return _limit;
    }

    /// <summary>What the step made of its <paramref name="guessed"/> guesses: <paramref name="taken"/> were chosen.</summary>
    public void Taken(int guessed, int taken)
    {
        if (guessed == 0)
        {
            return;
        }

        if (taken == 0)
        {
            _misses++;
            _wait = Math.Min(LongestWait, 1 << Math.Min(_misses - 1, 8));
            _limit = 1;
            return;
        }

        _misses = 0;
        _limit = taken == guessed ? Math.Min(lookup.DraftTokens, guessed + 2) : taken + 1;
    }
}
