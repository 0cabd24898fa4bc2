namespace QwenSharp.Generation;

/// <summary>
/// Prompt lookup decoding (transformers' <c>prompt_lookup_num_tokens</c>, vLLM's <c>ngram</c> speculation): the text's
/// last few tokens are looked up earlier in the prompt and the answer, and the tokens that followed them there are
/// guessed to come next. One forward step then reads the newest token and the guesses together, and each of its rows is
/// chosen from in turn exactly as a step of its own would be, while the chosen token equals the guess its next row was
/// fed. The tokens are those of plain decoding (the backends give each row of such a step the bits it gets alone); a
/// step of k + 1 rows reads the weights once, so where answers repeat what came before (code edits, quotes, JSON
/// keys, lists) more than one token comes out of a step.
/// </summary>
/// <param name="DraftTokens">The most tokens guessed per step (1 to <see cref="MaxDraftTokens"/>).</param>
/// <param name="MaxNgram">The longest run of last tokens looked up; longer runs are tried first.</param>
/// <param name="MinNgram">The shortest run looked up; a shorter match guesses nothing.</param>
public sealed record PromptLookup(int DraftTokens, int MaxNgram = 3, int MinNgram = 2)
{
    /// <summary>
    /// The most guesses a step takes: with the newest token, 7 rows, as many as the CPU's matrix products give each
    /// row its own sum alone (<c>MatMul.RowDotTokens</c>) and the GPU's matrix-vector shader takes.
    /// </summary>
    public const int MaxDraftTokens = 6;

    /// <summary>The most rows a decode step with guesses has, over all its sequences.</summary>
    public const int MaxStepRows = MaxDraftTokens + 1;

    /// <summary>
    /// Refuses a setting of the most guesses a step (the Engine's and the server's options, named <paramref name="name"/>)
    /// outside 1 to <see cref="MaxDraftTokens"/>, or 0 to it where 0 switches lookup off.
    /// </summary>
    public static void CheckSetting(int? draftTokens, string name, bool allowOff)
    {
        if (draftTokens is int value && (value < (allowOff ? 0 : 1) || value > MaxDraftTokens))
        {
            throw new ArgumentOutOfRangeException(name, value,
                $"{name} is the most guessed tokens a step: {(allowOff ? "0 (off)" : "1")} to {MaxDraftTokens}");
        }
    }

    /// <summary>Throws when a field is out of range, naming it.</summary>
    public void Validate()
    {
        if (DraftTokens is < 1 or > MaxDraftTokens)
        {
            throw new ArgumentOutOfRangeException(nameof(DraftTokens), DraftTokens,
                $"prompt lookup guesses 1 to {MaxDraftTokens} tokens a step (a step of more rows would not give each row the bits it gets alone)");
        }

        if (MinNgram < 1 || MaxNgram < MinNgram)
        {
            throw new ArgumentOutOfRangeException(nameof(MinNgram), $"prompt lookup needs 1 <= MinNgram <= MaxNgram, not {MinNgram} and {MaxNgram}");
        }
    }

    /// <summary>
    /// Fills <paramref name="draft"/> with the tokens that followed the latest earlier place where the text's last n
    /// tokens also stand, for the largest n from <see cref="MaxNgram"/> down to <see cref="MinNgram"/> that has one,
    /// and returns its length; 0 when there is no match. The text is the prompt and then the generated tokens. The
    /// latest place is taken, as the answer's own recent repeats predict it best; where the tokens after it run out
    /// (they reach the text's end), the guess repeats them, as the text would if it went on repeating.
    /// </summary>
    public int Draft(IReadOnlyList<int> prompt, IReadOnlyList<int> generated, Span<int> draft)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(generated);
        int length = prompt.Count + generated.Count;
        for (int n = Math.Min(MaxNgram, length - 1); n >= MinNgram; n--)
        {
            // A match ends at end < length - 1 (the text's own end is the n-gram itself), latest first.
            for (int end = length - 2; end >= n - 1; end--)
            {
                if (!EndsWith(prompt, generated, end, length - 1, n))
                {
                    continue;
                }

                // Past the text's end the guess goes on as the text repeats itself with the match's period.
                int period = length - 1 - end;
                for (int i = 0; i < draft.Length; i++)
                {
                    draft[i] = i < period ? At(prompt, generated, end + 1 + i) : draft[i - period];
                }

                return draft.Length;
            }
        }

        return 0;
    }

    /// <summary>Whether the n tokens ending at <paramref name="end"/> equal the n ending at <paramref name="last"/>.</summary>
    private static bool EndsWith(IReadOnlyList<int> prompt, IReadOnlyList<int> generated, int end, int last, int n)
    {
        for (int i = 0; i < n; i++)
        {
            if (At(prompt, generated, end - i) != At(prompt, generated, last - i))
            {
                return false;
            }
        }

        return true;
    }

    private static int At(IReadOnlyList<int> prompt, IReadOnlyList<int> generated, int i) =>
        i < prompt.Count ? prompt[i] : generated[i - prompt.Count];
}
