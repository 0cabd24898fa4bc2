using QwenSharp.Sampling;

namespace QwenSharp.Server.Api;

/// <summary>
/// The sampling fields both completion endpoints take: OpenAI's (temperature 0 is greedy), and the extra
/// ones llama-server and vLLM accept (top_k, min_p, repetition_penalty). Fields left out take the model's
/// generation_config.json values, as on the command line.
/// </summary>
internal static class SamplingFields
{
    public static readonly string[] Names = ["temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty", "seed", "logit_bias"];

    public static SamplingOverrides Read(RequestFields fields)
    {
        // Accepted when empty, as clients send it; a bias the sampler would have to apply is refused, not ignored.
        if (fields.Get("logit_bias") is System.Text.Json.JsonElement bias && (bias.ValueKind != System.Text.Json.JsonValueKind.Object || bias.EnumerateObject().Any()))
        {
            throw ApiException.BadField("logit_bias", "'logit_bias' is not supported");
        }

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
        };
    }
}
