using System.Text.Json;
using QwenSharp.Errors;
using QwenSharp.Sampling;
using QwenSharp.Tokenization;

namespace QwenSharp;

/// <summary>
/// The answers a model's generations can be held to (a JSON object, what a JSON schema describes, calls to the tools
/// offered, or either of the last two), each sequence its own <see cref="ITokenConstraint"/>. One table of the tokens'
/// bytes, built on first use (special tokens, and the padding rows past the tokenizer's vocabulary, have none, so no
/// constrained answer holds them), and the masks worked out per automaton state, kept for the last schemas and tool sets
/// used, so that requests with the same ones share them.
/// </summary>
internal sealed class ConstrainedOutput
{
    private const int SchemasKept = 16;

    private readonly Lazy<TokenBytes> _tokens;
    private readonly IReadOnlyList<int> _endTokens;
    private readonly Dictionary<string, (Sampling.JsonSchema Schema, TokenMasks Masks)> _schemas = [];
    private readonly Dictionary<string, (ToolCallGrammar Grammar, TokenMasks Masks)> _toolSets = [];
    private readonly Dictionary<string, (ChoicePrefix Start, TokenMasks Masks)> _choiceSets = [];
    private readonly Dictionary<string, (TextPatternPrefix Start, TokenMasks Masks)> _patterns = [];
    private readonly Dictionary<string, (GbnfGrammar Grammar, TokenMasks Masks)> _grammars = [];
    private readonly Lock _lock = new();
    private readonly int? _openCallToken;
    private readonly int _vocabularySize;
    private readonly Func<string, int?> _tokenOf;

    public ConstrainedOutput(Tokenizer tokenizer, int vocabularySize, IReadOnlyList<int> endTokens)
    {
        _tokens = new Lazy<TokenBytes>(() => new TokenBytes(
            [.. Enumerable.Range(0, vocabularySize).Select(id => tokenizer.IdToToken(id) is null || tokenizer.IsSpecial(id) ? null : tokenizer.TokenBytes(id))]));
        _endTokens = endTokens;
        _vocabularySize = vocabularySize;
        // A token reference's text is one entry of the vocabulary, special ones included, or else what encodes to one token
        // (llama.cpp tokenizes it, reading special tokens).
        _tokenOf = text => tokenizer.TokenToId(text) ?? (tokenizer.Encode(text) is [int one] ? one : null);
        _openCallToken = tokenizer.TokenToId(OpenCall) is int open && open < vocabularySize && !tokenizer.IsSpecial(open) ? open : null;
    }

    /// <summary>The text that opens a tool call in Qwen's template (one token in Qwen2.5's vocabulary).</summary>
    public const string OpenCall = "<tool_call>";

    /// <summary>The <see cref="OpenCall"/> token whose writing holds a call from there (tool_choice auto); null where the vocabulary has none.</summary>
    public int? OpenCallToken => _openCallToken;

    /// <summary>OpenAI's <c>json_object</c> as a schema: any JSON object.</summary>
    public static JsonElement AnyObjectSchema { get; } = JsonDocument.Parse("""{"type": "object"}""").RootElement.Clone();

    /// <summary>Each answer a JSON object (<see cref="AnyObjectSchema"/>).</summary>
    public Func<ITokenConstraint> JsonObject() => JsonSchema(AnyObjectSchema);

    /// <summary>
    /// Each answer what <paramref name="schema"/> describes (<see cref="JsonSchemaPrefix"/>); a schema
    /// <see cref="Sampling.JsonSchema"/> does not take is an <see cref="ArgumentException"/> naming where.
    /// </summary>
    public Func<ITokenConstraint> JsonSchema(JsonElement schema)
    {
        (Sampling.JsonSchema compiled, TokenMasks masks) = Compiled(schema);
        return () => new AutomatonConstraint<JsonSchemaPrefix>(masks, JsonSchemaPrefix.Start(compiled), _endTokens);
    }

    /// <summary>
    /// Each answer exactly one of <paramref name="choices"/> (<see cref="ChoicePrefix"/>, vLLM's guided_choice); choices
    /// that are empty, repeated or too many are an <see cref="ArgumentException"/> saying which.
    /// </summary>
    public Func<ITokenConstraint> Choice(IReadOnlyList<string> choices)
    {
        (ChoicePrefix start, TokenMasks masks) = Kept(_choiceSets, string.Join('\u0001', choices), () => ChoicePrefix.Start(choices));
        return () => new AutomatonConstraint<ChoicePrefix>(masks, start, _endTokens);
    }

    /// <summary>
    /// Each answer plain text that <paramref name="regex"/> matches whole (<see cref="TextPatternPrefix"/>, vLLM's
    /// guided_regex); a pattern it does not take is an <see cref="ArgumentException"/> saying what and where.
    /// </summary>
    public Func<ITokenConstraint> Regex(string regex)
    {
        (TextPatternPrefix start, TokenMasks masks) = Kept(_patterns, regex, () => TextPatternPrefix.Start(regex));
        return () => new AutomatonConstraint<TextPatternPrefix>(masks, start, _endTokens);
    }

    /// <summary>
    /// Each answer plain text that the GBNF grammar <paramref name="gbnf"/> allows from its rule <c>root</c>
    /// (<see cref="GrammarPrefix"/>: llama.cpp's --grammar, llama-server's grammar, vLLM's guided_grammar), and where it
    /// names tokens (<c>&lt;[id]&gt;</c>, <c>&lt;|im_end|&gt;</c>, <c>!&lt;...&gt;</c>) those whole (<see cref="GrammarConstraint"/>); a grammar
    /// <see cref="GbnfGrammar"/> does not take is an <see cref="ArgumentException"/> saying what and where.
    /// </summary>
    public Func<ITokenConstraint> Grammar(string gbnf)
    {
        (GbnfGrammar grammar, TokenMasks masks) = Kept(_grammars, gbnf, () => GbnfGrammar.Parse(gbnf, tokenOf: _tokenOf, vocabularySize: _vocabularySize));
        return grammar.HasTokens
            ? () => new GrammarConstraint(masks, grammar, _endTokens)
            : () => new AutomatonConstraint<GrammarPrefix>(masks, GrammarPrefix.Start(grammar), _endTokens);
    }

    /// <summary>
    /// Each answer's tool calls held to <paramref name="tools"/> (<see cref="ToolCallPrefix"/>): a name of one of them and
    /// arguments its parameters' schema allows. With <paramref name="forced"/> given the answer is calls only, after
    /// <paramref name="forced"/>, the text it is forced to begin with ("" for none). Otherwise, with an
    /// <paramref name="answer"/> schema, the answer is calls or what that schema describes (<see cref="EitherPrefix{TFirst, TSecond}"/>);
    /// without one it is free until the model opens a call (<see cref="ToolCallConstraint"/>; null when the vocabulary has no
    /// one token for that). A function without parameters takes the empty object. Parameters the schema compiler does not
    /// take leave that function's arguments any JSON object, unless the tool is strict: then an ArgumentException whose
    /// ParamName is the tool's <see cref="ToolSignature.Where"/>.
    /// </summary>
    public Func<ITokenConstraint>? ToolCalls(IReadOnlyList<ToolSignature> tools, bool parallel, string? forced, JsonElement? answer = null)
    {
        if (forced is null && answer is null && _openCallToken is null)
        {
            return null;
        }

        string key = string.Join('\u0001', tools.Select(t => $"{t.Name}\u0002{t.Strict}\u0002{t.Parameters?.GetRawText()}"))
            + $"\u0001{parallel}\u0001{(forced is null ? answer?.GetRawText() : null)}";
        (ToolCallGrammar grammar, TokenMasks masks) = Kept(_toolSets, key, () => new ToolCallGrammar(tools.Select(t => (t.Name, Arguments(t))), parallel));
        if (forced is not null)
        {
            ToolCallPrefix start = ToolCallPrefix.Start(grammar, System.Text.Encoding.UTF8.GetBytes(forced));
            return () => new AutomatonConstraint<ToolCallPrefix>(masks, start, _endTokens);
        }

        if (answer is JsonElement schema)
        {
            Sampling.JsonSchema compiled = Compiled(schema).Schema;
            return () => new AutomatonConstraint<EitherPrefix<ToolCallPrefix, JsonSchemaPrefix>>(masks,
                new EitherPrefix<ToolCallPrefix, JsonSchemaPrefix>(ToolCallPrefix.Start(grammar), JsonSchemaPrefix.Start(compiled)), _endTokens);
        }

        int open = _openCallToken!.Value;
        return () => new ToolCallConstraint(masks, grammar, open, _endTokens);
    }

    /// <summary>A schema compiled, with its masks, kept by its text.</summary>
    private (Sampling.JsonSchema Schema, TokenMasks Masks) Compiled(JsonElement schema) =>
        Kept(_schemas, schema.GetRawText(), () => Sampling.JsonSchema.Compile(schema));

    /// <summary>What <paramref name="key"/> names in a cache (made, with fresh masks, when it is not there), the cache started over when full.</summary>
    private (T Compiled, TokenMasks Masks) Kept<T>(Dictionary<string, (T, TokenMasks)> cache, string key, Func<T> make)
    {
        lock (_lock)
        {
            if (cache.TryGetValue(key, out (T, TokenMasks) known))
            {
                return known;
            }
        }

        (T, TokenMasks) made = (make(), new TokenMasks(_tokens.Value));
        lock (_lock)
        {
            if (cache.Count >= SchemasKept)
            {
                cache.Clear();
            }

            cache[key] = made;
        }

        return made;
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
