using System.Text.Json;
using QwenSharp.Sampling;
using QwenSharp.Tokenization;

namespace QwenSharp;

/// <summary>
/// The answers a model's generations can be held to (a JSON object, or what a JSON schema describes), each sequence its
/// own <see cref="AutomatonConstraint"/>. One table of the tokens' bytes, built on first use (special tokens,
/// and the padding rows past the tokenizer's vocabulary, have none, so no constrained answer holds them), and the masks
/// worked out per automaton state, kept for the JSON object and for the last schemas used, so that requests with the same
/// schema share them.
/// </summary>
internal sealed class ConstrainedOutput
{
    private const int SchemasKept = 16;

    private readonly Lazy<TokenBytes> _tokens;
    private readonly Lazy<TokenMasks> _object;
    private readonly IReadOnlyList<int> _endTokens;
    private readonly Dictionary<string, (Sampling.JsonSchema Schema, TokenMasks Masks)> _schemas = [];
    private readonly Lock _lock = new();

    public ConstrainedOutput(Tokenizer tokenizer, int vocabularySize, IReadOnlyList<int> endTokens)
    {
        _tokens = new Lazy<TokenBytes>(() => new TokenBytes(
            [.. Enumerable.Range(0, vocabularySize).Select(id => tokenizer.IdToToken(id) is null || tokenizer.IsSpecial(id) ? null : tokenizer.TokenBytes(id))]));
        _object = new Lazy<TokenMasks>(() => new TokenMasks(_tokens.Value));
        _endTokens = endTokens;
    }

    /// <summary>Each answer a JSON object (<see cref="Sampling.JsonSchema.AnyObject"/>).</summary>
    public Func<ITokenConstraint> JsonObject() => () => new AutomatonConstraint(_object.Value, JsonSchemaPrefix.Start(Sampling.JsonSchema.AnyObject), _endTokens);

    /// <summary>
    /// Each answer what <paramref name="schema"/> describes (<see cref="JsonSchemaPrefix"/>); a schema
    /// <see cref="Sampling.JsonSchema"/> does not take is an <see cref="ArgumentException"/> naming where.
    /// </summary>
    public Func<ITokenConstraint> JsonSchema(JsonElement schema)
    {
        string text = schema.GetRawText();
        (Sampling.JsonSchema Schema, TokenMasks Masks) kept;
        lock (_lock)
        {
            _schemas.TryGetValue(text, out kept);
        }

        if (kept.Schema is null)
        {
            kept = (Sampling.JsonSchema.Compile(schema), new TokenMasks(_tokens.Value));
            lock (_lock)
            {
                if (_schemas.Count >= SchemasKept)
                {
                    _schemas.Clear();
                }

                _schemas[text] = kept;
            }
        }

        return () => new AutomatonConstraint(kept.Masks, JsonSchemaPrefix.Start(kept.Schema), _endTokens);
    }
}
