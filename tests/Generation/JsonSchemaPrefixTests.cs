using System.Text;
using System.Text.Json;
using QwenSharp.Sampling;
using Validator = Json.Schema.JsonSchema;

namespace QwenSharp.Tests.Generation;

/// <summary>
/// <see cref="JsonSchemaPrefix"/> against JsonSchema.Net, an independent validator: random walks that take any byte
/// the automaton allows (steered to finish) end in texts the validator passes, and never reach a state with no way on;
/// hand-written answers are taken or refused at the byte that breaks the schema; unsupported schemas are refused by path.
/// </summary>
public class JsonSchemaPrefixTests
{
    public static TheoryData<string> Schemas() =>
    [
        """
        {"type": "object", "additionalProperties": false, "required": ["name", "age", "active"], "properties": {
          "name": {"type": "string"}, "age": {"type": "integer"}, "email": {"type": ["string", "null"]},
          "tags": {"type": "array", "items": {"type": "string"}}, "role": {"enum": ["admin", "user", null]},
          "score": {"type": "number"}, "active": {"type": "boolean"}}}
        """,
        """
        {"$defs": {"node": {"type": "object", "required": ["value", "children"], "properties": {
           "value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}},
         "type": "object", "required": ["root"], "properties": {"root": {"$ref": "#/$defs/node"},
           "note": {"anyOf": [{"type": "string"}, {"type": "null"}]}}}
        """,
        """
        {"type": "object", "required": ["meta", "anything", "pairs", "const", "nums"], "properties": {
          "meta": {"type": "object"}, "anything": {}, "pairs": {"type": "object", "additionalProperties": {"type": "number"}},
          "const": {"const": 42}, "nums": {"enum": [1, 12, 1.5]}, "maybe": {"anyOf": [{"type": "object", "properties": {"x": {"type": "boolean"}}}, {"type": "null"}]}}}
        """,
    ];

    [Theory]
    [MemberData(nameof(Schemas))]
    public void RandomWalksEndInAnswersTheValidatorPasses(string schemaText)
    {
        using JsonDocument schemaDocument = JsonDocument.Parse(schemaText);
        var schema = Sampling.JsonSchema.Compile(schemaDocument.RootElement);
        Validator validator = Validator.FromText(schemaText);
        var random = new Random(schemaText.Length);
        byte[] closers = [.. "\"}]0,:nt"u8];
        int finished = 0;
        for (int walk = 0; walk < 300; walk++)
        {
            JsonSchemaPrefix state = JsonSchemaPrefix.Start(schema);
            var text = new List<byte>();
            for (int step = 0; step < 3000 && !state.Complete; step++)
            {
                JsonSchemaPrefix current = state;
                byte[] allowed = [.. Enumerable.Range(0, 256).Select(b => (byte)b).Where(b => { JsonSchemaPrefix next = current; return next.Feed(b); })];
                Assert.True(allowed.Length > 0, $"no byte can follow {Encoding.UTF8.GetString([.. text])}");
                // Later in a walk, a byte that closes something when one may: the walks finish.
                byte[] closing = [.. allowed.Where(b => closers.Contains(b))];
                byte chosen = closing.Length > 0 && random.Next(200) < step ? closing[random.Next(closing.Length)] : allowed[random.Next(allowed.Length)];
                Assert.True(state.Feed(chosen));
                text.Add(chosen);
            }

            if (!state.Complete)
            {
                continue;
            }

            finished++;
            string answer = Encoding.UTF8.GetString([.. text]);
            using JsonDocument parsed = JsonDocument.Parse(answer);
            Json.Schema.EvaluationResults result = validator.Evaluate(parsed.RootElement);
            Assert.True(result.IsValid, $"the validator refuses {answer}");
        }

        Assert.True(finished > 200, $"only {finished} of 300 walks finished");
    }

    private const string Person = """
        {"type": "object", "additionalProperties": false, "required": ["name", "age"], "properties": {
          "name": {"type": "string"}, "nick": {"type": "string"}, "age": {"type": "integer"}, "role": {"enum": ["admin", "user"]}}}
        """;

    [Theory]
    [InlineData("""{"name": "Ann", "age": 31}""", -1)]
    [InlineData("""{"name":"Ann","nick":"A","age":31,"role":"user"}""", -1)]
    [InlineData("""{"name": "Ann", "age": 31.5}""", 25)]        // an integer has no fraction
    [InlineData("""{"name": "Ann"}""", 14)]                     // age is required
    [InlineData("""{"age": 31, "name": "Ann"}""", 2)]           // properties come in their order
    [InlineData("""{"name": "Ann", "age": 31, "x": 1}""", 28)]  // no other properties
    [InlineData("""{"name": "Ann", "age": 31, "role": "root"}""", 36)]
    [InlineData("""{"name": 5, "age": 31}""", 9)]
    public void AnswersAreTakenOrRefusedWhereTheyBreakTheSchema(string answer, int refusedAt)
    {
        using JsonDocument schemaDocument = JsonDocument.Parse(Person);
        JsonSchemaPrefix state = JsonSchemaPrefix.Start(Sampling.JsonSchema.Compile(schemaDocument.RootElement));
        byte[] bytes = Encoding.UTF8.GetBytes(answer);
        int refused = -1;
        for (int i = 0; i < bytes.Length && refused < 0; i++)
        {
            refused = state.Feed(bytes[i]) ? -1 : i;
        }

        Assert.Equal(refusedAt, refused);
        Assert.Equal(refusedAt < 0, state.Complete);
        if (refusedAt < 0)
        {
            using JsonDocument parsed = JsonDocument.Parse(answer);
            Assert.True(Validator.FromText(Person).Evaluate(parsed.RootElement).IsValid);
        }
    }

    [Theory]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "string", "pattern": "^x"}}}""", "schema.properties.a.pattern")]
    [InlineData("""{"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}}""", "schema.properties.n.minimum")]
    [InlineData("""{"type": "array", "items": {"type": "string"}}""", "the root must be an object")]
    [InlineData("""{"type": "object", "properties": {"a": {"anyOf": [{"type": "object"}, {"type": "object", "properties": {}}]}}}""", "schema.properties.a.anyOf")]
    [InlineData("""{"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}""", "'#/$defs/missing'")]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "text"}}}""", "'text' is not a JSON schema type")]
    [InlineData("""{"type": "object", "required": ["b"], "properties": {"a": {}}}""", "'b' is required but not among the properties")]
    public void UnsupportedSchemasAreRefusedByPath(string schemaText, string message)
    {
        using JsonDocument schema = JsonDocument.Parse(schemaText);

        ArgumentException error = Assert.Throws<ArgumentException>(() => Sampling.JsonSchema.Compile(schema.RootElement));

        Assert.Contains(message, error.Message, StringComparison.Ordinal);
        Assert.Equal("schema", error.ParamName);
    }
}
