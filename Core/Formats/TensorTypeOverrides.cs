using System.Text.RegularExpressions;

namespace QwenSharp.Formats;

/// <summary>
/// llama-quantize's options that set a matrix's type over what the mix picks: <c>--output-tensor-type</c>,
/// <c>--token-embedding-type</c>, <c>--leave-output-tensor</c> and <c>--tensor-type PATTERN=TYPE</c> (see
/// <see cref="QuantizationMix.With"/> for where each applies).
/// </summary>
/// <param name="Output">The type of the output matrix (and, where the mix picks it, of an embedding tied to it).</param>
/// <param name="TokenEmbedding">The type of <c>token_embd.weight</c>, tied or not.</param>
/// <param name="KeepOutput"><c>output.weight</c> left as stored.</param>
/// <param name="Rules">Patterns (ECMAScript regular expressions searched in the GGUF name, as std::regex_search) and their types, in order.</param>
public sealed record TensorTypeOverrides(DType? Output = null, DType? TokenEmbedding = null, bool KeepOutput = false, IReadOnlyList<TensorTypeRule>? Rules = null)
{
    public static TensorTypeOverrides None { get; } = new();

    /// <summary>The type of the first pattern found in <paramref name="ggufName"/> (llama-quantize's rule loop); null where none is.</summary>
    public DType? ByPattern(string ggufName) => Rules?.FirstOrDefault(rule => rule.Matches(ggufName))?.Type;
}

/// <summary>One <c>--tensor-type PATTERN=TYPE</c>: the pattern lower-cased as llama-quantize does.</summary>
public sealed record TensorTypeRule(string Pattern, DType Type)
{
    private readonly Regex _regex = Compile(Pattern);

    public bool Matches(string ggufName) => _regex.IsMatch(ggufName);

    private static Regex Compile(string pattern)
    {
        ArgumentException.ThrowIfNullOrEmpty(pattern);
        try
        {
            return new Regex(pattern.ToLowerInvariant(), RegexOptions.ECMAScript, TimeSpan.FromSeconds(1));
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"tensor type pattern '{pattern}' is not a regular expression: {e.Message}", nameof(pattern), e);
        }
    }
}
