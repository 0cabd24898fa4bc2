using System.Text.Json;
using QwenSharp.Errors;
using QwenSharp.Sampling;

namespace QwenSharp.Server.Api;

/// <summary>
/// What the answer must be, read the same way by /v1/chat/completions and /v1/completions: OpenAI's <c>response_format</c>,
/// or as other servers' clients send it: vLLM's <c>guided_json</c> (a schema, or its JSON text), <c>guided_choice</c>
/// (one of a list of texts), <c>guided_regex</c> (text a regular expression matches whole) and <c>guided_grammar</c> (text a
/// GBNF grammar allows), llama-server's <c>json_schema</c> and <c>grammar</c> (GBNF).
/// </summary>
internal static class ResponseFormat
{
    /// <summary>The fields that say what the answer is; a request gives one at most.</summary>
    public static readonly string[] Fields = ["response_format", "guided_json", "guided_choice", "guided_regex", "json_schema", "grammar", "guided_grammar"];

    private static readonly HashSet<string> s_responseFormatFields = ["type", "json_schema"];

    private static readonly HashSet<string> s_jsonSchemaFields = ["name", "description", "schema", "strict"];

    /// <summary>
    /// <c>response_format</c>: <c>text</c> (or none) leaves the answer free (null); <c>json_object</c> makes it a JSON
    /// object (<see cref="ConstrainedOutput.AnyObjectSchema"/>), <c>json_schema</c> what its schema describes
    /// (<see cref="JsonSchemaPrefix"/>): every token checked as it is chosen, the answer ending when it is whole. The schema
    /// comes back compiled once (a schema the compiler refuses is a 400 naming where), with the constraint that holds to it.
    /// </summary>
    /// <remarks>A held choice, pattern or grammar has no schema (null): it is plain text, not JSON.</remarks>
    public static (Func<ITokenConstraint> Constraint, JsonElement? Schema)? Read(RequestFields request, ServerState server)
    {
        string[] given = [.. Fields.Where(f => request.Get(f) is not null)];
        if (given.Length > 1)
        {
            throw ApiException.BadField(given[1], $"'{given[0]}' and '{given[1]}' both say what the answer must be: give one");
        }

        if (request.Get("guided_json") is JsonElement guided)
        {
            return Schema(guided.ValueKind == JsonValueKind.String ? SchemaText(guided.GetString()!, "guided_json") : guided, "guided_json", server);
        }

        if (request.Get("json_schema") is JsonElement bare)
        {
            return Schema(bare, "json_schema", server);
        }

        if (request.Get("guided_choice") is JsonElement choices)
        {
            return (Choice(choices, server), null);
        }

        if (request.String("guided_regex") is string regex)
        {
            return (Held("guided_regex", () => server.Constrained.Regex(regex)), null);
        }

        foreach (string field in (string[])["grammar", "guided_grammar"])
        {
            if (request.String(field) is string grammar)
            {
                return (Held(field, () => server.Constrained.Grammar(grammar)), null);
            }
        }

        if (request.Get("response_format") is not JsonElement format)
        {
            return null;
        }

        RequestFields fields = RequestFields.Of(format, "response_format", s_responseFormatFields);
        string? type = fields.String("type");
        return type switch
        {
            null or "text" => null,
            "json_object" => (server.Constrained.JsonObject(), ConstrainedOutput.AnyObjectSchema),
            "json_schema" => JsonSchemaFormat(fields, server),
            _ => throw ApiException.BadField("response_format.type", $"'response_format.type' must be 'text', 'json_object' or 'json_schema', not '{type}'"),
        };
    }

    private static (Func<ITokenConstraint>, JsonElement?) JsonSchemaFormat(RequestFields format, ServerState server)
    {
        const string Path = "response_format.json_schema";
        JsonElement block = format.Get("json_schema") ?? throw ApiException.BadField(Path, $"'{Path}' is missing (with 'type': 'json_schema')");
        RequestFields fields = RequestFields.Of(block, Path, s_jsonSchemaFields);
        fields.String("name", 256);
        fields.String("description");
        fields.Bool("strict");
        JsonElement schema = fields.Get("schema") ?? throw ApiException.BadField($"{Path}.schema", $"'{Path}.schema' is missing");
        return Schema(schema, $"{Path}.schema", server);
    }

    /// <summary>A schema compiled and held to (one the compiler refuses is a 400 naming <paramref name="path"/> and where in it).</summary>
    private static (Func<ITokenConstraint>, JsonElement?) Schema(JsonElement schema, string path, ServerState server) =>
        (Held(path, () => server.Constrained.JsonSchema(schema)), schema);

    /// <summary>The rule <paramref name="compile"/> makes of the field at <paramref name="path"/>; what it refuses is a 400 naming the field and saying why.</summary>
    private static Func<ITokenConstraint> Held(string path, Func<Func<ITokenConstraint>> compile)
    {
        try
        {
            return compile();
        }
        catch (ArgumentException e)
        {
            throw ApiException.BadField(path, $"'{path}': {e.BareMessage()}");
        }
    }

    /// <summary>A schema sent as its JSON text (vLLM takes guided_json either way).</summary>
    private static JsonElement SchemaText(string text, string path)
    {
        try
        {
            using JsonDocument document = JsonDocument.Parse(text);
            return document.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw ApiException.BadField(path, $"'{path}' is a string that is not JSON: {e.Message}");
        }
    }

    /// <summary>vLLM's guided_choice: a list of texts, the answer exactly one of them.</summary>
    private static Func<ITokenConstraint> Choice(JsonElement choices, ServerState server)
    {
        const string Path = "guided_choice";
        if (choices.ValueKind != JsonValueKind.Array || choices.EnumerateArray().Any(c => c.ValueKind != JsonValueKind.String))
        {
            throw ApiException.BadField(Path, $"'{Path}' must be a list of strings");
        }

        return Held(Path, () => server.Constrained.Choice([.. choices.EnumerateArray().Select(c => c.GetString()!)]));
    }
}
