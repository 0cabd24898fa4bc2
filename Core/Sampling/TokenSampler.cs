using System.Numerics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using QwenSharp.Generation;

namespace QwenSharp.Sampling;

/// <summary>
/// Chooses the next token of one sequence from the model's logits: a constraint's mask (<see cref="ITokenConstraint"/>),
/// logit bias and penalties, then (when sampling)
/// temperature, top-k, top-p, min-p and typical-p as transformers orders them (llama.cpp's top-n-sigma before top-k, its
/// XTC after typical-p; its mirostat in place of them all), then one draw from its own seeded
/// random stream, so a sequence gives the same tokens alone or in a batch. Buffers are sized once.
/// </summary>
public sealed class TokenSampler
{
    private readonly SamplingOptions _options;
    private readonly int _vocabularySize;
    private readonly SeededRandom _random;
    private float[]? _work;
    private TokenMarks? _marks;

    private readonly ITokenConstraint? _constraint;
    private readonly Mirostat? _mirostat;
    private DryScratch? _dry;

    /// <param name="constraint">A rule over the tokens allowed (constrained output), applied before everything else; null for none.</param>
    public TokenSampler(SamplingOptions options, int vocabularySize, ulong seed, ITokenConstraint? constraint = null)
    {
        _constraint = constraint;
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (options.LogitBias?.Keys.FirstOrDefault(token => token >= vocabularySize, -1) is int outside and >= 0)
        {
            throw new ArgumentOutOfRangeException("logit_bias", outside, $"logit_bias names token {outside}, outside the model's vocabulary of {vocabularySize}");
        }

        _options = options;
        _vocabularySize = vocabularySize;
        _random = new SeededRandom(seed);
        _mirostat = options.Mirostat == 0 || options.IsGreedy ? null : new Mirostat(options.Mirostat, options.MirostatTau, options.MirostatEta, vocabularySize);
        Seed = seed;
    }

    public ulong Seed { get; }

    /// <summary>Whether anything changes the logits before the draw (or the argmax): a bias or a penalty.</summary>
    private bool ChangesLogits => _options.LogitBias is { Count: > 0 } || _options.RepetitionPenalty != 1 || _options.PresencePenalty != 0 || _options.FrequencyPenalty != 0
        || _options.DryMultiplier != 0;

    /// <summary>The next token after <paramref name="prompt"/> and <paramref name="generated"/>, given the model's raw logits.</summary>
    public int Next(ReadOnlySpan<float> logits, IReadOnlyList<int> prompt, IReadOnlyList<int> generated)
    {
        int token = Choose(logits, prompt, generated);
        _constraint?.Accept(token);
        return token;
    }

    private int Choose(ReadOnlySpan<float> logits, IReadOnlyList<int> prompt, IReadOnlyList<int> generated)
    {
        _drawnFrom = DrawSource.OneToken;
        if (_options.IsGreedy && !ChangesLogits && _constraint is null)
        {
            return LogProbs.ArgMax(logits);
        }

        // Plain greedy never gets here, so its sequences allocate no vocabulary-sized buffers.
        _work ??= new float[_vocabularySize];
        Span<float> work = _work.AsSpan(0, logits.Length);
        logits.CopyTo(work);
        _constraint?.Mask(work);
        if (_options.IsGreedy)
        {
            Process(work, prompt, generated);
            return LogProbs.ArgMax(work);
        }

        (_drawnFrom, _drawnCount) = (DrawSource.Work, work.Length);
        Penalize(work, prompt, generated);
        if (_mirostat is not null)
        {
            PlainTemperature(work);
            return DrawMirostat(work);
        }

        int k = _options.TopK;
        // The infill sampler reads token ids, so it runs on the whole vocabulary, not on gathered candidates.
        if (k <= 0 || k >= work.Length || _options.Infill is not null)
        {
            PlainTemperature(work);
            TopNSigmaFilter.Apply(work, _options.TopNSigma);
            TopKFilter.Apply(work, k);
            FilterAfterTopK(work);
            return CategoricalDraw.Draw(work, _random.NextDouble());
        }

        // What top-k leaves (often 20 of 150 000) is gathered in index order, so top-p, min-p and the draw see the same
        // values in the same order as on the whole vocabulary, without scanning it three more times; and unless top-n-sigma
        // reads them all first, only those are divided by the temperature (see LowestKept).
        float divisor = _options.DynamicTemperatureRange == 0 ? (float)_options.Temperature : 1f;
        float threshold = _options.TopNSigma > 0 ? float.NaN : TopKFilter.KthLargest(work, k);
        if (_options.TopNSigma > 0 || !LowestKept(ref threshold, divisor))
        {
            PlainTemperature(work);
            TopNSigmaFilter.Apply(work, _options.TopNSigma);
            (threshold, divisor) = (TopKFilter.KthLargest(work, k), 1f);
        }

        int count = Gather(work, threshold, divisor);
        (_drawnFrom, _drawnCount) = (DrawSource.Candidates, count);
        Span<float> candidates = _candidateValues.AsSpan(0, count);
        FilterAfterTopK(candidates);
        return _candidateIds[CategoricalDraw.Draw(candidates, _random.NextDouble())];
    }

    /// <summary>
    /// Lowers <paramref name="threshold"/>, the k-th largest logit before the temperature, to the least logit whose quotient by
    /// <paramref name="divisor"/> (the temperature) is at least its quotient; false where that is not a few steps below.
    /// Division by a positive number, rounded, never reverses an order: the k-th largest quotient is the k-th largest logit's,
    /// and top-k keeps a logit exactly when its quotient is at least that one, which is exactly when the logit is at least
    /// the value found here (at or a few floats under the k-th largest, where rounding makes quotients equal). So the
    /// vocabulary need not be divided at all: on Qwen2.5's 151,936 logits the division took 70 µs a token on a Zen 3 core.
    /// </summary>
    private static bool LowestKept(ref float threshold, float divisor)
    {
        if (divisor == 1f || float.IsNaN(threshold) || threshold == float.NegativeInfinity)
        {
            return true;
        }

        if (threshold == float.PositiveInfinity)
        {
            return false;
        }

        float kept = threshold / divisor;
        for (int step = 0; step < 64; step++)
        {
            float lower = MathF.BitDecrement(threshold);
            if (!(lower / divisor >= kept))
            {
                return true;
            }

            threshold = lower;
        }

        return false;
    }

    /// <summary>Where the distribution of the last draw lies (<see cref="LastDraw"/>).</summary>
    private enum DrawSource
    {
        /// <summary>Greedy: all its mass on the token taken.</summary>
        OneToken,

        /// <summary>The first <see cref="_drawnCount"/> values of <see cref="_work"/>, by token id.</summary>
        Work,

        /// <summary>The first <see cref="_drawnCount"/> of <see cref="_candidateValues"/>, their ids in <see cref="_candidateIds"/>.</summary>
        Candidates,
    }

    private DrawSource _drawnFrom;
    private int _drawnCount;

    /// <summary>
    /// The distribution <paramref name="token"/>, the one <see cref="Next"/> gave last, was drawn from, as llama-server's
    /// <c>post_sampling_probs</c> reports it: after the mask, the penalties, the temperature and every filter (mirostat's
    /// truncation in their place), the softmax over the tokens left; greedy puts all of it on the token taken. Its log-prob
    /// there and the <paramref name="top"/> most likely tokens of it, most likely first, leaving out those with none (as
    /// llama-server does, whose samplers report some with none and some not at all).
    /// </summary>
    public TokenLogprobs LastDraw(int token, int top)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(top);
        if (_drawnFrom == DrawSource.OneToken)
        {
            return new TokenLogprobs(token, 0, top > 0 ? [new TokenLogprob(token, 0)] : []);
        }

        ReadOnlySpan<float> values = _drawnFrom == DrawSource.Work ? _work.AsSpan(0, _drawnCount) : _candidateValues.AsSpan(0, _drawnCount);
        double logSumExp = LogProbs.LogSumExp(values);
        int at = _drawnFrom == DrawSource.Work ? token : Array.IndexOf(_candidateIds, token, 0, _drawnCount);
        if (at < 0 || at >= values.Length || values[at] == float.NegativeInfinity)
        {
            throw new ArgumentException($"token {token} was not drawn from the last step's distribution", nameof(token));
        }

        TokenLogprob[] most = LogProbs.Top(values, top, logSumExp);
        int left = Array.FindIndex(most, t => Math.Exp(t.Logprob) == 0);
        most = left < 0 ? most : most[..left];
        if (_drawnFrom == DrawSource.Candidates)
        {
            for (int i = 0; i < most.Length; i++)
            {
                most[i] = most[i] with { Id = _candidateIds[most[i].Id] };
            }
        }

        return new TokenLogprobs(token, values[at] - logSumExp, most);
    }

    /// <summary>top-p, min-p and typical-p in transformers' order, then XTC (its chance drawn whenever it is on) and the infill sampler.</summary>
    private void FilterAfterTopK(Span<float> logits)
    {
        TopPFilter.Apply(logits, _options.TopP);
        MinPFilter.Apply(logits, _options.MinP);
        TypicalFilter.Apply(logits, _options.TypicalP);
        if (XtcFilter.IsOn(_options.XtcProbability, _options.XtcThreshold))
        {
            XtcFilter.Apply(logits, _options.XtcProbability, _options.XtcThreshold, _random.NextDouble());
        }

        if (_options.Infill is not null)
        {
            InfillFilter.Apply(logits, _options.Infill);
        }

        DynamicTemperatureStep(logits);
    }

    /// <summary>transformers' temperature, first, unless the dynamic temperature takes its place (after the filters).</summary>
    private void PlainTemperature(Span<float> logits)
    {
        if (_options.DynamicTemperatureRange == 0)
        {
            Temperature.Apply(logits, (float)_options.Temperature);
        }
    }

    private void DynamicTemperatureStep(Span<float> logits) =>
        DynamicTemperature.Apply(logits, _options.Temperature, _options.DynamicTemperatureRange, _options.DynamicTemperatureExponent);

    /// <summary>Mirostat's step: its truncation, the draw from what is left, and μ moved by the drawn token's surprise.</summary>
    private int DrawMirostat(Span<float> logits)
    {
        DynamicTemperatureStep(logits);
        _mirostat!.Truncate(logits);
        int token = CategoricalDraw.Draw(logits, _random.NextDouble());
        double total = FiniteLogits.ExpSum(logits, out float max);

        _mirostat.Observe(Math.Exp(logits[token] - max) / total);
        return token;
    }

    private int[] _candidateIds = [];
    private float[] _candidateValues = [];

    /// <summary>
    /// Copies the logits top-k keeps (none below <paramref name="threshold"/>) that no filter removed (finite), each divided by
    /// <paramref name="divisor"/> (the temperature not yet applied, else 1), with their ids, in id order, into the candidate
    /// buffers; eight logits compared at a time.
    /// </summary>
    private int Gather(ReadOnlySpan<float> logits, float threshold, float divisor)
    {
        int n = 0, i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            ref float first = ref MemoryMarshal.GetReference(logits);
            var below = Vector256.Create(threshold);
            var removed = Vector256.Create(float.NegativeInfinity);
            for (; i <= logits.Length - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                Vector256<float> v = Vector256.LoadUnsafe(ref first, (nuint)i);
                uint kept = (~(Vector256.LessThan(v, below) | Vector256.Equals(v, removed))).ExtractMostSignificantBits();
                for (; kept != 0; kept &= kept - 1)
                {
                    int at = i + BitOperations.TrailingZeroCount(kept);
                    n = Candidate(n, at, logits[at], divisor);
                }
            }
        }

        for (; i < logits.Length; i++)
        {
            if (!(logits[i] < threshold) && logits[i] != float.NegativeInfinity)
            {
                n = Candidate(n, i, logits[i], divisor);
            }
        }

        return n;
    }

    /// <summary>
    /// Puts candidate <paramref name="n"/> in the buffers, its logit divided by <paramref name="divisor"/> (one the division
    /// takes to −∞ is left out, as it would be after the whole vocabulary's), growing them as needed (ties with the k-th can
    /// keep more than k); the count after it.
    /// </summary>
    private int Candidate(int n, int id, float logit, float divisor)
    {
        float value = divisor == 1f ? logit : logit / divisor;
        if (value == float.NegativeInfinity)
        {
            return n;
        }

        if (n == _candidateIds.Length)
        {
            Array.Resize(ref _candidateIds, Math.Max(64, 2 * n));
            Array.Resize(ref _candidateValues, Math.Max(64, 2 * n));
        }

        _candidateIds[n] = id;
        _candidateValues[n] = value;
        return n + 1;
    }

    private void Penalize(Span<float> logits, IReadOnlyList<int> prompt, IReadOnlyList<int> generated)
    {
        LogitBias.Apply(logits, _options.LogitBias);
        _marks ??= new TokenMarks(_vocabularySize);
        RepetitionPenalty.Apply(logits, (float)_options.RepetitionPenalty, prompt, generated, _marks);
        OccurrencePenalties.Apply(logits, (float)_options.PresencePenalty, (float)_options.FrequencyPenalty, generated, _marks);
        if (_options.DryMultiplier != 0)
        {
            _dry ??= new DryScratch();
            DryPenalty.Apply(logits, _options.DryMultiplier, _options.DryBase, _options.DryAllowedLength, _options.DryPenaltyLastN, _options.DryBreakers, prompt, generated, _dry);
        }
    }

    /// <summary>The logits the draw is made from (penalised, and when sampling warped and filtered), in place.</summary>
    public void Process(Span<float> logits, IReadOnlyList<int> prompt, IReadOnlyList<int> generated)
    {
        Penalize(logits, prompt, generated);
        if (_options.IsGreedy)
        {
            return;
        }

        PlainTemperature(logits);
        TopNSigmaFilter.Apply(logits, _options.TopNSigma);
        TopKFilter.Apply(logits, _options.TopK);
        TopPFilter.Apply(logits, _options.TopP);
        MinPFilter.Apply(logits, _options.MinP);
        TypicalFilter.Apply(logits, _options.TypicalP);
        DynamicTemperatureStep(logits);
    }
}
