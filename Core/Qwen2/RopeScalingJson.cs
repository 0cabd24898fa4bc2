using System.Text.Json;
using QwenSharp.Backend;
using QwenSharp.Errors;

namespace QwenSharp.Qwen2;

/// <summary>
/// config.json's <c>rope_scaling</c> (or transformers v5's <c>rope_parameters</c>) as a <see cref="RopeScaling"/>, with
/// transformers' fields and defaults (<c>modeling_rope_utils.py</c>): <c>linear</c> (factor), <c>yarn</c> (factor,
/// original_max_position_embeddings, beta_fast, beta_slow, attention_factor or mscale / mscale_all_dim, truncate) and
/// <c>llama3</c> (factor, low_freq_factor, high_freq_factor, original_max_position_embeddings). Types whose frequencies
/// change with the sequence length (<c>dynamic</c>, <c>longrope</c>) are refused by name.
/// </summary>
internal static class RopeScalingJson
{
    /// <summary>The rope types this reads; "default" and Qwen2-VL's "mrope" are plain RoPE.</summary>
    public static bool IsScaling(string? type) => type is "linear" or "yarn" or "llama3";

    public static RopeScaling Read(JsonElement value, string type, string where, int headDim, double theta, int maxPositions)
    {
        double factor = Number(value, "factor", where) ?? Missing<double>(where, "factor", type);
        if (!(factor >= 1) || double.IsInfinity(factor))
        {
            QwenThrow.InvalidData($"{where}.factor is {factor}; a {type} scaling stretches the context, so it must be at least 1");
        }

        switch (type)
        {
            case "linear":
                return new RopeScaling { Kind = RopeScalingKind.Linear, Factor = factor };
            case "yarn":
                int original = Integer(value, "original_max_position_embeddings", where) ?? maxPositions;
                double? mscale = Number(value, "mscale", where), mscaleAllDim = Number(value, "mscale_all_dim", where);
                double attention = Number(value, "attention_factor", where)
                    ?? (mscale is double m && mscaleAllDim is double all && m != 0 && all != 0
                        ? RopeScaling.YarnAttentionFactor(factor, m) / RopeScaling.YarnAttentionFactor(factor, all)
                        : RopeScaling.YarnAttentionFactor(factor));
                var yarn = new RopeScaling
                {
                    Kind = RopeScalingKind.Yarn,
                    Factor = factor,
                    OriginalContext = original,
                    // transformers reads these with `or`: 0 or null keeps the paper's defaults.
                    BetaFast = Number(value, "beta_fast", where) is double fast && fast != 0 ? fast : 32,
                    BetaSlow = Number(value, "beta_slow", where) is double slow && slow != 0 ? slow : 1,
                    Truncate = !value.TryGetProperty("truncate", out JsonElement truncate) || truncate.ValueKind != JsonValueKind.False,
                    AttentionFactor = attention,
                };
                if (!(yarn.BetaFast > yarn.BetaSlow && yarn.BetaSlow > 0) || !(attention > 0))
                {
                    QwenThrow.InvalidData($"{where}: beta_fast {yarn.BetaFast} must exceed beta_slow {yarn.BetaSlow} > 0, and attention_factor {attention} be positive");
                }

                return yarn;
            default:
                double low = Number(value, "low_freq_factor", where) ?? Missing<double>(where, "low_freq_factor", type);
                double high = Number(value, "high_freq_factor", where) ?? Missing<double>(where, "high_freq_factor", type);
                int context = Integer(value, "original_max_position_embeddings", where) ?? Missing<int>(where, "original_max_position_embeddings", type);
                if (!(high > low && low > 0))
                {
                    QwenThrow.InvalidData($"{where}: high_freq_factor {high} must exceed low_freq_factor {low} > 0");
                }

                return new RopeScaling
                {
                    Kind = RopeScalingKind.FrequencyDivisors,
                    Factor = factor,
                    OriginalContext = context,
                    Divisors = RopeScaling.Llama3Divisors(headDim, theta, factor, low, high, context),
                };
        }
    }

    /// <summary>Why a rope type transformers knows is not run, or null for one this reads.</summary>
    public static string? Refusal(string type) => type switch
    {
        "dynamic" => "dynamic NTK scaling changes every frequency with the sequence length (llama.cpp does not run it either); 'yarn' or 'linear' stretch the context statically",
        "longrope" or "su" => "LongRoPE (Phi-3) switches between two frequency sets with the sequence length",
        _ => null,
    };

    private static double? Number(JsonElement value, string field, string where)
    {
        if (!value.TryGetProperty(field, out JsonElement e) || e.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (e.ValueKind != JsonValueKind.Number || !double.IsFinite(e.GetDouble()))
        {
            QwenThrow.InvalidData($"{where}.{field} is {e.GetRawText()}, expected a number");
        }

        return e.GetDouble();
    }

    private static int? Integer(JsonElement value, string field, string where)
    {
        if (Number(value, field, where) is not double number)
        {
            return null;
        }

        if (number != Math.Floor(number) || number < 1 || number > int.MaxValue)
        {
            QwenThrow.InvalidData($"{where}.{field} is {number}, expected a positive integer");
        }

        return (int)number;
    }

    private static T Missing<T>(string where, string field, string type)
    {
        QwenThrow.InvalidData($"{where}: rope type '{type}' needs '{field}'");
        return default!;
    }
}
