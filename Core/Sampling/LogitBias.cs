namespace QwenSharp.Sampling;

/// <summary>
/// OpenAI's <c>logit_bias</c>: a number added to chosen tokens' logits before anything else (penalties, temperature,
/// the filters), as llama.cpp's and vLLM's samplers apply it. −100 all but bans a token and +100 all but forces it; a
/// bias of −∞ is not a number JSON can carry, so a ban stays a bias.
/// </summary>
public static class LogitBias
{
    /// <summary>The largest bias OpenAI accepts, either way.</summary>
    public const float Limit = 100;

    public static void Apply(Span<float> logits, IReadOnlyDictionary<int, float>? bias)
    {
        if (bias is null)
        {
            return;
        }

        foreach ((int token, float value) in bias)
        {
            logits[token] += value;
        }
    }
}
