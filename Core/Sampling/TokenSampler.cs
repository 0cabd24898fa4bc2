namespace QwenSharp.Sampling;

/// <summary>
/// Chooses the next token of one sequence from the model's logits: penalties, then (when sampling)
/// temperature, top-k, top-p and min-p as transformers orders them, then one draw from its own seeded
/// random stream, so a sequence gives the same tokens alone or in a batch. Buffers are sized once.
/// </summary>
public sealed class TokenSampler
{
    private readonly SamplingOptions _options;
    private readonly int _vocabularySize;
    private readonly SeededRandom _random;
    private float[]? _work;
    private TokenMarks? _marks;

    public TokenSampler(SamplingOptions options, int vocabularySize, ulong seed)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _vocabularySize = vocabularySize;
        _random = new SeededRandom(seed);
        Seed = seed;
    }

    public ulong Seed { get; }

    private bool HasPenalties => _options.RepetitionPenalty != 1 || _options.PresencePenalty != 0 || _options.FrequencyPenalty != 0;

    /// <summary>The next token after <paramref name="prompt"/> and <paramref name="generated"/>, given the model's raw logits.</summary>
    public int Next(ReadOnlySpan<float> logits, IReadOnlyList<int> prompt, IReadOnlyList<int> generated)
    {
        if (_options.IsGreedy && !HasPenalties)
        {
            return Generation.LogProbs.ArgMax(logits);
        }

        // Plain greedy never gets here, so its sequences allocate no vocabulary-sized buffers.
        _work ??= new float[_vocabularySize];
        Span<float> work = _work.AsSpan(0, logits.Length);
        logits.CopyTo(work);
        Process(work, prompt, generated);
        return _options.IsGreedy ? Generation.LogProbs.ArgMax(work) : CategoricalDraw.Draw(work, _random.NextDouble());
    }

    /// <summary>The logits the draw is made from (penalised, and when sampling warped and filtered), in place.</summary>
    public void Process(Span<float> logits, IReadOnlyList<int> prompt, IReadOnlyList<int> generated)
    {
        _marks ??= new TokenMarks(_vocabularySize);
        RepetitionPenalty.Apply(logits, (float)_options.RepetitionPenalty, prompt, generated, _marks);
        OccurrencePenalties.Apply(logits, (float)_options.PresencePenalty, (float)_options.FrequencyPenalty, generated, _marks);
        if (_options.IsGreedy)
        {
            return;
        }

        Temperature.Apply(logits, (float)_options.Temperature);
        TopKFilter.Apply(logits, _options.TopK);
        TopPFilter.Apply(logits, _options.TopP);
        MinPFilter.Apply(logits, _options.MinP);
    }
}
