using QwenSharp.Qwen2;

namespace QwenSharp.Sampling;

/// <summary>
/// What a caller asked for, over the model's generation_config.json defaults: each given value overrides
/// its field, and asking for any sampling value (temperature, top-k, top-p, min-p, seed) turns sampling on.
/// <see cref="Greedy"/> is the plain argmax: the defaults are ignored, only given penalties apply.
/// </summary>
public sealed record SamplingOverrides
{
    public bool Greedy { get; init; }

    public double? Temperature { get; init; }

    public int? TopK { get; init; }

    public double? TopP { get; init; }

    public double? MinP { get; init; }

    public double? RepetitionPenalty { get; init; }

    public double? PresencePenalty { get; init; }

    public double? FrequencyPenalty { get; init; }

    public ulong? Seed { get; init; }

    /// <summary>Added to the listed tokens' logits (<see cref="SamplingOptions.LogitBias"/>); applies to greedy too.</summary>
    public IReadOnlyDictionary<int, float>? LogitBias { get; init; }

    /// <summary>The name of the first sampling value given, or null (for "X does not apply to greedy" errors).</summary>
    public string? FirstSamplingValue =>
        Temperature is not null ? "temperature" : TopK is not null ? "top_k" : TopP is not null ? "top_p" : MinP is not null ? "min_p" : Seed is not null ? "seed" : null;

    public SamplingOptions Resolve(GenerationConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (Greedy)
        {
            return SamplingOptions.Greedy with
            {
                RepetitionPenalty = RepetitionPenalty ?? 1,
                PresencePenalty = PresencePenalty ?? 0,
                FrequencyPenalty = FrequencyPenalty ?? 0,
                LogitBias = LogitBias,
            };
        }

        SamplingOptions defaults = SamplingOptions.FromGenerationConfig(config);
        return defaults with
        {
            DoSample = defaults.DoSample || FirstSamplingValue is not null,
            Temperature = Temperature ?? defaults.Temperature,
            TopK = TopK ?? defaults.TopK,
            TopP = TopP ?? defaults.TopP,
            MinP = MinP ?? defaults.MinP,
            RepetitionPenalty = RepetitionPenalty ?? defaults.RepetitionPenalty,
            PresencePenalty = PresencePenalty ?? 0,
            FrequencyPenalty = FrequencyPenalty ?? 0,
            LogitBias = LogitBias,
            Seed = Seed,
        };
    }
}
