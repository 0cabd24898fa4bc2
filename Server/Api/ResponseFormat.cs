using System.Text.Json;
using QwenSharp.Errors;
using QwenSharp.Sampling;

namespace QwenSharp.Server.Api;

/// <summary>OpenAI's <c>response_format</c> field, read the same way by /v1/chat/completions and /v1/completions.</summary>
internal static class ResponseFormat
{
    private static readonly HashSet<string> s_responseFormatFields = ["type", "json_schema"];

    private static readonly HashSet<string> s_jsonSchemaFields = ["name", "description", "schema", "strict"];

    /// <summary>
    /// <c>response_format</c>: <c>text</c> (or none) leaves the answer free (null); <c>json_object</c> makes it a JSON
    /// object (<see cref="ConstrainedOutput.AnyObjectSchema"/>), <c>json_schema</c> what its schema describes
    /// (<see cref="JsonSchemaPrefix"/>): every token checked as it is chosen, the answer ending when it is whole. The schema
    /// comes back compiled once (a schema the compiler refuses is a 400 naming where), with the constraint that holds to it.
    /// </summary>
    public static (Func<ITokenConstraint> Constraint, JsonElement Schema)? Read(RequestFields request, ServerState server)
    {
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

    private static (Func<ITokenConstraint>, JsonElement) JsonSchemaFormat(RequestFields format, ServerState server)
    {
        const string Path = "response_format.json_schema";
        JsonElement block = format.Get("json_schema") ?? throw ApiException.BadField(Path, $"'{Path}' is missing (with 'type': 'json_schema')");
        RequestFields fields = RequestFields.Of(block, Path, s_jsonSchemaFields);
        fields.String("name", 256);
        fields.String("description");
        fields.Bool("strict");
        JsonElement schema = fields.Get("schema") ?? throw ApiException.BadField($"{Path}.schema", $"'{Path}.schema' is missing");
        try
        {
            return (server.Constrained.JsonSchema(schema), schema);
        }
        catch (ArgumentException e)
        {
            throw ApiException.BadField($"{Path}.schema", $"'{Path}.schema': {e.BareMessage()}");
        }
    }
}
