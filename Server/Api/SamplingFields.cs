using System.Globalization;
using System.Text.Json;
using QwenSharp.Sampling;

namespace QwenSharp.Server.Api;

/// <summary>
/// The sampling fields both completion endpoints take: OpenAI's (temperature 0 is greedy), and the extra
/// ones llama-server and vLLM accept (top_k, min_p, repetition_penalty; llama-server's typical_p, top_n_sigma, XTC and
/// mirostat), and logit_bias. Fields left out take the model's
/// generation_config.json values, as on the command line.
/// </summary>
internal static class SamplingFields
{
    /// <summary>llama-server's samplers beyond OpenAI's, as it names their fields (its OpenAI endpoints take them too).</summary>
    public static readonly string[] LlamaSamplerNames =
        ["typical_p", "top_n_sigma", "xtc_probability", "xtc_threshold", "mirostat", "mirostat_tau", "mirostat_eta", "dynatemp_range", "dynatemp_exponent",
            "dry_multiplier", "dry_base", "dry_allowed_length", "dry_penalty_last_n", "dry_sequence_breakers"];

    public static readonly string[] Names = ["temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty", "seed", "logit_bias", .. LlamaSamplerNames];

    /// <summary>The sampling fields of a request to a model whose logits cover <paramref name="vocabularySize"/> tokens.</summary>
    public static SamplingOverrides Read(RequestFields fields, int vocabularySize)
    {
        double? temperature = fields.Double("temperature", 0, 2);
        int? topK = fields.Int("top_k", -1, int.MaxValue);
        return new SamplingOverrides
        {
            Greedy = temperature == 0,
            Temperature = temperature == 0 ? null : temperature,
            TopP = fields.Double("top_p", 0, 1, minExclusive: true),
            // vLLM switches top-k off with -1, llama-server with 0; so do we with either.
            TopK = topK is -1 ? 0 : topK,
            MinP = fields.Double("min_p", 0, 1),
            RepetitionPenalty = fields.Double("repetition_penalty", 0, 100, minExclusive: true),
            PresencePenalty = fields.Double("presence_penalty", -2, 2),
            FrequencyPenalty = fields.Double("frequency_penalty", -2, 2),
            Seed = fields.Long("seed") is long seed ? unchecked((ulong)seed) : null,
            LogitBias = ReadLogitBias(fields, vocabularySize),
        }.WithLlamaSamplers(fields);
    }

    /// <summary>
    /// <paramref name="overrides"/> with llama-server's typical_p, top_n_sigma (0 or below: off, its default -1), XTC,
    /// mirostat (0 off, 1 or 2), dynamic temperature and DRY fields of the request; asking for any of the samplers turns
    /// sampling on (DRY, a penalty, applies to greedy decoding too).
    /// </summary>
    public static SamplingOverrides WithLlamaSamplers(this SamplingOverrides overrides, RequestFields fields) => overrides with
    {
        TypicalP = fields.Double("typical_p", 0, 1, minExclusive: true),
        TopNSigma = fields.Double("top_n_sigma", double.MinValue, double.MaxValue) is double sigma and > 0 ? sigma : null,
        XtcProbability = fields.Double("xtc_probability", 0, 1),
        XtcThreshold = fields.Double("xtc_threshold", 0, 1),
        Mirostat = fields.Int("mirostat", 0, 2),
        MirostatTau = fields.Double("mirostat_tau", 0, 100),
        MirostatEta = fields.Double("mirostat_eta", 0, 100),
        DynamicTemperatureRange = fields.Double("dynatemp_range", 0, 100),
        DynamicTemperatureExponent = fields.Double("dynatemp_exponent", 0, 100),
        DryMultiplier = fields.Double("dry_multiplier", 0, 100),
        DryBase = fields.Double("dry_base", 1, 100),
        DryAllowedLength = fields.Int("dry_allowed_length", 0, 1 << 20),
        DryPenaltyLastN = fields.Int("dry_penalty_last_n", -1, int.MaxValue),
        DrySequenceBreakers = fields.Get("dry_sequence_breakers") is null ? null : fields.StringOrList("dry_sequence_breakers", 64, 256),
    };

    /// <summary>OpenAI's <c>logit_bias</c>: an object from token ids (as strings) to numbers from -100 to 100; null when absent or empty.</summary>
    private static Dictionary<int, float>? ReadLogitBias(RequestFields fields, int vocabularySize)
    {
        if (fields.Get("logit_bias") is not JsonElement bias)
        {
            return null;
        }

        if (bias.ValueKind != JsonValueKind.Object)
        {
            throw ApiException.BadField("logit_bias", $"'logit_bias' must be an object from token ids to biases, such as {{\"1234\": -100}}, not {RequestFields.Kind(bias)}");
        }

        var biases = new Dictionary<int, float>();
        foreach (JsonProperty entry in bias.EnumerateObject())
        {
            string path = $"logit_bias.{entry.Name}";
            if (!int.TryParse(entry.Name, NumberStyles.None, CultureInfo.InvariantCulture, out int token) || token >= vocabularySize)
            {
                throw ApiException.BadField(path, $"'logit_bias' key '{entry.Name}' is not a token id of this model (0..{vocabularySize - 1})");
            }

            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetDouble(out double value) || Math.Abs(value) > LogitBias.Limit)
            {
                throw ApiException.BadField(path, $"'{path}' must be a number from -{LogitBias.Limit} to {LogitBias.Limit}, not {RequestFields.Show(entry.Value)}");
            }

            biases[token] = (float)value;
        }

        return biases.Count == 0 ? null : biases;
    }
}
