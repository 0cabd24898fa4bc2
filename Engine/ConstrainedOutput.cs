using System.Text.Json;
using QwenSharp.Errors;
using QwenSharp.Sampling;
using QwenSharp.Tokenization;

namespace QwenSharp;

/// <summary>
/// The answers a model's generations can be held to (a JSON object, or what a JSON schema describes), each sequence its
/// own <see cref="AutomatonConstraint{TState}"/>. One table of the tokens' bytes, built on first use (special tokens,
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
    private readonly Dictionary<string, (ToolCallGrammar Grammar, TokenMasks Masks)> _toolSets = [];
    private readonly Lock _lock = new();
    private readonly int? _openCallToken;

    public ConstrainedOutput(Tokenizer tokenizer, int vocabularySize, IReadOnlyList<int> endTokens)
    {
        _tokens = new Lazy<TokenBytes>(() => new TokenBytes(
            [.. Enumerable.Range(0, vocabularySize).Select(id => tokenizer.IdToToken(id) is null || tokenizer.IsSpecial(id) ? null : tokenizer.TokenBytes(id))]));
        _object = new Lazy<TokenMasks>(() => new TokenMasks(_tokens.Value));
        _endTokens = endTokens;
        _openCallToken = tokenizer.TokenToId(OpenCall) is int open && open < vocabularySize && !tokenizer.IsSpecial(open) ? open : null;
    }

    /// <summary>The text that opens a tool call in Qwen's template (one token in Qwen2.5's vocabulary).</summary>
    public const string OpenCall = "<tool_call>";

    /// <summary>Whether a model can begin a tool call in one token, so that <see cref="ToolCalls"/> can hold calls lazily.</summary>
    public bool OpensCallsInOneToken => _openCallToken is not null;

    /// <summary>Each answer a JSON object (<see cref="Sampling.JsonSchema.AnyObject"/>).</summary>
    public Func<ITokenConstraint> JsonObject() => () => new AutomatonConstraint<JsonSchemaPrefix>(_object.Value, JsonSchemaPrefix.Start(Sampling.JsonSchema.AnyObject), _endTokens);

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

        return () => new AutomatonConstraint<JsonSchemaPrefix>(kept.Masks, JsonSchemaPrefix.Start(kept.Schema), _endTokens);
    }

    /// <summary>
    /// Each answer's tool calls held to <paramref name="tools"/> (<see cref="ToolCallPrefix"/>): a name of one of them and
    /// arguments its parameters' schema allows. With <paramref name="forced"/> null the answer is free until the model opens
    /// a call (<see cref="ToolCallConstraint"/>; null when the vocabulary has no one token for that, see
    /// <see cref="OpensCallsInOneToken"/>); otherwise it is calls only, after <paramref name="forced"/>, the text it is forced
    /// to begin with ("" for none). A function without parameters takes the empty object. Parameters the schema compiler does
    /// not take leave that function's arguments any JSON object, unless the tool is strict: then an ArgumentException whose
    /// ParamName is the tool's <see cref="ToolSignature.Where"/>.
    /// </summary>
    public Func<ITokenConstraint>? ToolCalls(IReadOnlyList<ToolSignature> tools, bool parallel, string? forced)
    {
        if (forced is null && _openCallToken is null)
        {
            return null;
        }

        string key = string.Join('\u0001', tools.Select(t => $"{t.Name}\u0002{t.Strict}\u0002{t.Parameters?.GetRawText()}")) + $"\u0001{parallel}";
        (ToolCallGrammar Grammar, TokenMasks Masks) kept;
        lock (_lock)
        {
            _toolSets.TryGetValue(key, out kept);
        }

        if (kept.Grammar is null)
        {
            kept = (new ToolCallGrammar(tools.Select(t => (t.Name, Arguments(t))), parallel), new TokenMasks(_tokens.Value));
            lock (_lock)
            {
                if (_toolSets.Count >= SchemasKept)
                {
                    _toolSets.Clear();
                }

                _toolSets[key] = kept;
            }
        }

        if (forced is null)
        {
            int open = _openCallToken!.Value;
            return () => new ToolCallConstraint(kept.Masks, kept.Grammar, open, _endTokens);
        }

        ToolCallPrefix start = ToolCallPrefix.Start(kept.Grammar, System.Text.Encoding.UTF8.GetBytes(forced));
        return () => new AutomatonConstraint<ToolCallPrefix>(kept.Masks, start, _endTokens);
    }

    private static Sampling.JsonSchema Arguments(ToolSignature tool)
    {
        if (tool.Parameters is not JsonElement parameters || parameters.ValueKind == JsonValueKind.Null)
        {
            return ToolCallGrammar.NoArguments;
        }

        try
        {
            return Sampling.JsonSchema.Compile(parameters);
        }
        catch (ArgumentException) when (!tool.Strict)
        {
            // Not strict: the arguments are still held to be a JSON object, just not to this schema.
            return Sampling.JsonSchema.AnyObject;
        }
        catch (ArgumentException e)
        {
            // The compiler names places from "schema"; here the schema is the tool's parameters.
            string why = e.BareMessage();
            why = why.StartsWith("schema", StringComparison.Ordinal) ? "parameters" + why["schema".Length..] : why;
            throw new ArgumentException($"tool '{tool.Name}' is strict, and its parameters cannot be held: {why}", tool.Where);
        }
    }
}

/// <summary>
/// A function a model may call: its name, the JSON schema of its parameters (null: it takes none), whether calls must
/// follow that schema, and where the caller gave its parameters (for errors: "tools[2].function.parameters").
/// </summary>
internal sealed record ToolSignature(string Name, JsonElement? Parameters, bool Strict, string Where);
