using QwenSharp.Qwen2;

namespace QwenSharp.Sampling;

/// <summary>
/// What a caller asked for, over the model's generation_config.json defaults: each given value overrides
/// its field, and asking for any sampling value (temperature, top-k, top-p, min-p, seed; typical-p below 1, top-n-sigma,
/// XTC or mirostat switched on) turns sampling on.
/// <see cref="Greedy"/> is the plain argmax: the defaults are ignored, only given penalties apply.
/// </summary>
public sealed record SamplingOverrides
{
    public bool Greedy { get; init; }

    public double? Temperature { get; init; }

    public int? TopK { get; init; }

    public double? TopP { get; init; }

    public double? MinP { get; init; }

    public double? TypicalP { get; init; }

    public double? TopNSigma { get; init; }

    public double? XtcProbability { get; init; }

    public double? XtcThreshold { get; init; }

    public int? Mirostat { get; init; }

    public double? DynamicTemperatureRange { get; init; }

    public double? DryMultiplier { get; init; }

    public double? DryBase { get; init; }

    public int? DryAllowedLength { get; init; }

    public int? DryPenaltyLastN { get; init; }

    /// <summary>llama.cpp's infill sampler (llama-server's <c>samplers</c> naming "infill"); its vocabulary comes with the tokenizer (<c>InfillSampling</c> in the Engine).</summary>
    public bool Infill { get; init; }

    /// <summary>DRY's sequence breakers as texts; null: llama.cpp's default, newline, colon, double quote and asterisk.</summary>
    public IReadOnlyList<string>? DrySequenceBreakers { get; init; }

    public double? DynamicTemperatureExponent { get; init; }

    public double? MirostatTau { get; init; }

    public double? MirostatEta { get; init; }

    public double? RepetitionPenalty { get; init; }

    public double? PresencePenalty { get; init; }

    public double? FrequencyPenalty { get; init; }

    public ulong? Seed { get; init; }

    /// <summary>Added to the listed tokens' logits (<see cref="SamplingOptions.LogitBias"/>); applies to greedy too.</summary>
    public IReadOnlyDictionary<int, float>? LogitBias { get; init; }

    /// <summary>The name of the first sampling value given, or null (for "X does not apply to greedy" errors).</summary>
    public string? FirstSamplingValue =>
        Temperature is not null ? "temperature" : TopK is not null ? "top_k" : TopP is not null ? "top_p" : MinP is not null ? "min_p"
        : TypicalP < 1 ? "typical_p" : TopNSigma > 0 ? "top_n_sigma" : XtcProbability > 0 ? "xtc_probability"
        : Mirostat > 0 ? "mirostat" : DynamicTemperatureRange > 0 ? "dynatemp_range" : Seed is not null ? "seed" : null;

    public SamplingOptions Resolve(GenerationConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (Greedy)
        {
            return WithDry(SamplingOptions.Greedy with
            {
                RepetitionPenalty = RepetitionPenalty ?? 1,
                PresencePenalty = PresencePenalty ?? 0,
                FrequencyPenalty = FrequencyPenalty ?? 0,
                LogitBias = LogitBias,
            });
        }

        SamplingOptions defaults = SamplingOptions.FromGenerationConfig(config);
        return WithDry(defaults with
        {
            DoSample = defaults.DoSample || FirstSamplingValue is not null,
            Temperature = Temperature ?? defaults.Temperature,
            TopK = TopK ?? defaults.TopK,
            TopP = TopP ?? defaults.TopP,
            MinP = MinP ?? defaults.MinP,
            TypicalP = TypicalP ?? defaults.TypicalP,
            TopNSigma = TopNSigma ?? 0,
            XtcProbability = XtcProbability ?? 0,
            XtcThreshold = XtcThreshold ?? defaults.XtcThreshold,
            Mirostat = Mirostat ?? 0,
            DynamicTemperatureRange = DynamicTemperatureRange ?? 0,
            DynamicTemperatureExponent = DynamicTemperatureExponent ?? defaults.DynamicTemperatureExponent,
            MirostatTau = MirostatTau ?? defaults.MirostatTau,
            MirostatEta = MirostatEta ?? defaults.MirostatEta,
            RepetitionPenalty = RepetitionPenalty ?? defaults.RepetitionPenalty,
            PresencePenalty = PresencePenalty ?? 0,
            FrequencyPenalty = FrequencyPenalty ?? 0,
            LogitBias = LogitBias,
            Seed = Seed,
        });
    }

    /// <summary><paramref name="options"/> with DRY's numbers given here (its breakers are token ids, which take the tokenizer: <c>DrySequenceBreakers</c> in the Engine).</summary>
    private SamplingOptions WithDry(SamplingOptions options) => options with
    {
        DryMultiplier = DryMultiplier ?? 0,
        DryBase = DryBase ?? options.DryBase,
        DryAllowedLength = DryAllowedLength ?? options.DryAllowedLength,
        DryPenaltyLastN = DryPenaltyLastN ?? options.DryPenaltyLastN,
    };
}
