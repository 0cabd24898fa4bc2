using QwenSharp.Qwen2;

namespace QwenSharp.Sampling;

/// <summary>
/// How the next token is chosen. The steps run in transformers' order: repetition penalty (and the
/// OpenAI-style presence and frequency penalties, after any logit bias), then temperature, top-k, top-p, min-p and
/// typical-p, then one draw from the renormalised distribution; llama.cpp's top-n-sigma goes before top-k and its XTC
/// after typical-p, and its mirostat takes the place of the filters. Without <see cref="DoSample"/> (or at temperature 0) the token is
/// the argmax of the penalised logits.
/// </summary>
public sealed record SamplingOptions
{
    /// <summary>The plain argmax of the model's logits, nothing applied.</summary>
    public static SamplingOptions Greedy { get; } = new() { DoSample = false };

    /// <summary>Draw from the distribution; false picks the most likely token.</summary>
    public bool DoSample { get; init; }

    /// <summary>Divides the logits; below 1 sharpens, above 1 flattens. 0 means greedy.</summary>
    public double Temperature { get; init; } = 1.0;

    /// <summary>Keep the K most likely tokens (ties with the K-th kept); 0 switches the step off.</summary>
    public int TopK { get; init; }

    /// <summary>Keep the most likely tokens until their probability reaches P; 1 switches the step off.</summary>
    public double TopP { get; init; } = 1.0;

    /// <summary>Drop tokens less likely than MinP times the most likely one (after temperature); 0 switches it off.</summary>
    public double MinP { get; init; }

    /// <summary>
    /// Keep the tokens whose surprise is closest to the distribution's entropy until their probability reaches this
    /// (transformers' and llama.cpp's typical_p, after min-p); 1 switches it off.
    /// </summary>
    public double TypicalP { get; init; } = 1.0;

    /// <summary>llama.cpp's top-n-sigma: drop tokens more than N standard deviations of the logits below the largest (before top-k); 0 switches it off.</summary>
    public double TopNSigma { get; init; }

    /// <summary>llama.cpp's XTC: the chance a step removes every token at least <see cref="XtcThreshold"/> likely but the least likely of them (last of the filters); 0 switches it off.</summary>
    public double XtcProbability { get; init; }

    /// <summary>XTC's threshold (llama.cpp's default 0.1); above 0.5 it never acts.</summary>
    public double XtcThreshold { get; init; } = 0.1;

    /// <summary>
    /// llama.cpp's dynamic temperature: each step's temperature between <see cref="Temperature"/> ± this, by the entropy
    /// of the candidates the filters left (<see cref="Sampling.DynamicTemperature"/>), applied after them as llama.cpp
    /// orders it; 0 switches it off (the plain temperature, first, as transformers orders it).
    /// </summary>
    public double DynamicTemperatureRange { get; init; }

    /// <summary>The exponent of the normalised entropy in <see cref="DynamicTemperatureRange"/>'s mapping (llama.cpp's default 1).</summary>
    public double DynamicTemperatureExponent { get; init; } = 1.0;

    /// <summary>Mirostat version 1 or 2 in place of top-k, top-p and the other filters (<see cref="Sampling.Mirostat"/>); 0 switches it off.</summary>
    public int Mirostat { get; init; }

    /// <summary>Mirostat's target surprise τ, in bits (llama.cpp's default 5).</summary>
    public double MirostatTau { get; init; } = 5.0;

    /// <summary>Mirostat's learning rate η (llama.cpp's default 0.1).</summary>
    public double MirostatEta { get; init; } = 0.1;

    /// <summary>
    /// DRY's strength (llama.cpp's dry_multiplier; <see cref="DryPenalty"/>): a token that would extend a repetition of at
    /// least <see cref="DryAllowedLength"/> tokens loses multiplier · base^(length − allowed) of its logit; 0 switches it off.
    /// </summary>
    public double DryMultiplier { get; init; }

    /// <summary>DRY's base (llama.cpp's default 1.75).</summary>
    public double DryBase { get; init; } = 1.75;

    /// <summary>The longest repetition DRY lets pass unpenalised (llama.cpp's default 2).</summary>
    public int DryAllowedLength { get; init; } = 2;

    /// <summary>How many of the last tokens DRY looks at; -1 (llama.cpp's default): the whole text.</summary>
    public int DryPenaltyLastN { get; init; } = -1;

    /// <summary>DRY's sequence breakers as token ids (made from their texts with the model's tokenizer); none by default.</summary>
    public DryBreakers DryBreakers { get; init; } = DryBreakers.None;

    /// <summary>llama.cpp's infill sampler for code completion, last of the filters (<see cref="InfillFilter"/>); null: off.</summary>
    public InfillVocabulary? Infill { get; init; }

    /// <summary>transformers' multiplicative penalty over prompt and generated tokens (positive logits divided, negative multiplied); 1 is off.</summary>
    public double RepetitionPenalty { get; init; } = 1.0;

    /// <summary>OpenAI's additive penalty for every token already generated (once per token).</summary>
    public double PresencePenalty { get; init; }

    /// <summary>OpenAI's additive penalty per occurrence of a token in the generated text.</summary>
    public double FrequencyPenalty { get; init; }

    /// <summary>
    /// A number added to each listed token's logit before the penalties (<see cref="Sampling.LogitBias"/>); null or
    /// empty is off. Token ids must be inside the model's vocabulary, biases within ±<see cref="Sampling.LogitBias.Limit"/>.
    /// </summary>
    public IReadOnlyDictionary<int, float>? LogitBias { get; init; }

    /// <summary>Seed of the random draws; null picks one at random (reported back so the run can be repeated).</summary>
    public ulong? Seed { get; init; }

    /// <summary>Whether the token is the argmax (no draw).</summary>
    public bool IsGreedy => !DoSample || Temperature == 0;

    /// <summary>The defaults a model ships in generation_config.json (transformers' own defaults where a field is missing).</summary>
    public static SamplingOptions FromGenerationConfig(GenerationConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return new SamplingOptions
        {
            DoSample = config.DoSample ?? false,
            Temperature = config.Temperature ?? 1.0,
            TopK = config.TopK ?? 50,
            TopP = config.TopP ?? 1.0,
            MinP = config.MinP ?? 0,
            TypicalP = config.TypicalP ?? 1.0,
            RepetitionPenalty = config.RepetitionPenalty ?? 1.0,
        };
    }

    /// <summary>Checks the values, naming the one that is out of range.</summary>
    public void Validate()
    {
        Check(Temperature >= 0 && double.IsFinite(Temperature), "temperature", Temperature, "a number >= 0");
        Check(TopK >= 0, "top_k", TopK, "an integer >= 0 (0 switches it off)");
        Check(TopP > 0 && TopP <= 1, "top_p", TopP, "a number in (0, 1]");
        Check(MinP >= 0 && MinP <= 1, "min_p", MinP, "a number in [0, 1]");
        Check(TypicalP > 0 && TypicalP <= 1, "typical_p", TypicalP, "a number in (0, 1]");
        Check(double.IsFinite(TopNSigma), "top_n_sigma", TopNSigma, "a finite number (0 or below switches it off)");
        Check(XtcProbability >= 0 && XtcProbability <= 1, "xtc_probability", XtcProbability, "a number in [0, 1]");
        Check(XtcThreshold >= 0 && XtcThreshold <= 1, "xtc_threshold", XtcThreshold, "a number in [0, 1]");
        Check(Mirostat is 0 or 1 or 2, "mirostat", Mirostat, "0 (off), 1 or 2");
        Check(DryMultiplier >= 0 && double.IsFinite(DryMultiplier), "dry_multiplier", DryMultiplier, "a number >= 0");
        Check(DryBase >= 1 && double.IsFinite(DryBase), "dry_base", DryBase, "a number >= 1");
        Check(DryAllowedLength >= 0, "dry_allowed_length", DryAllowedLength, "an integer >= 0");
        Check(DryPenaltyLastN >= -1, "dry_penalty_last_n", DryPenaltyLastN, "an integer >= -1 (-1: the whole text)");
        Check(DynamicTemperatureRange >= 0 && double.IsFinite(DynamicTemperatureRange), "dynatemp_range", DynamicTemperatureRange, "a number >= 0");
        Check(DynamicTemperatureExponent >= 0 && double.IsFinite(DynamicTemperatureExponent), "dynatemp_exponent", DynamicTemperatureExponent, "a number >= 0");
        Check(MirostatTau >= 0 && double.IsFinite(MirostatTau), "mirostat_tau", MirostatTau, "a number >= 0");
        Check(MirostatEta >= 0 && double.IsFinite(MirostatEta), "mirostat_eta", MirostatEta, "a number >= 0");
        Check(RepetitionPenalty > 0 && double.IsFinite(RepetitionPenalty), "repetition_penalty", RepetitionPenalty, "a number > 0");
        Check(double.IsFinite(PresencePenalty), "presence_penalty", PresencePenalty, "a finite number");
        Check(double.IsFinite(FrequencyPenalty), "frequency_penalty", FrequencyPenalty, "a finite number");
        foreach ((int token, float bias) in LogitBias ?? new Dictionary<int, float>())
        {
            Check(token >= 0, "logit_bias", token, "a token id >= 0");
            Check(Math.Abs(bias) <= Sampling.LogitBias.Limit, $"logit_bias[{token}]", bias, $"a number from -{Sampling.LogitBias.Limit} to {Sampling.LogitBias.Limit}");
        }
    }

    private static void Check(bool ok, string name, double value, string expected)
    {
        if (!ok)
        {
            throw new ArgumentOutOfRangeException(name, value, $"{name} {value.ToString(System.Globalization.CultureInfo.InvariantCulture)} is not {expected}");
        }
    }
}
