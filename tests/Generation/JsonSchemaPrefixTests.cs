using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
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
        {"$defs": {"small": {"type": "integer", "minimum": 0, "maximum": 3}, "word": {"type": "string", "minLength": 1, "maxLength": 2},
           "pair": {"type": "array", "minItems": 2, "maxItems": 2},
           "node": {"type": "object", "required": ["value", "children"], "properties": {
           "value": {"type": "integer", "minimum": -2, "maximum": 2}, "children": {"type": "array", "maxItems": 2, "items": {"$ref": "#/$defs/node"}}}}},
         "type": "object", "required": ["root", "count", "word", "pair"], "properties": {"root": {"$ref": "#/$defs/node"},
           "count": {"$ref": "#/$defs/small"}, "word": {"$ref": "#/$defs/word"}, "pair": {"$ref": "#/$defs/pair"},
           "note": {"anyOf": [{"type": "string"}, {"type": "null"}]}}}
        """,
        """
        {"type": "object", "required": ["meta", "anything", "pairs", "const", "nums"], "properties": {
          "meta": {"type": "object"}, "anything": {}, "pairs": {"type": "object", "additionalProperties": {"type": "number"}},
          "const": {"const": 42}, "nums": {"enum": [1, 12, 1.5]}, "maybe": {"anyOf": [{"type": "object", "properties": {"x": {"type": "boolean"}}}, {"type": "null"}]}}}
        """,
        """
        {"type": "object", "required": ["name", "tags", "age", "score", "grid", "code", "big", "small", "near", "either"], "properties": {
          "name": {"type": "string", "minLength": 2, "maxLength": 5}, "empty": {"type": "string", "maxLength": 0},
          "tags": {"type": "array", "items": {"type": "string", "maxLength": 1}, "minItems": 1, "maxItems": 3},
          "age": {"type": "integer", "minimum": 18, "exclusiveMaximum": 130}, "score": {"type": "number", "exclusiveMinimum": -1.5, "maximum": 2.25},
          "grid": {"type": "array", "maxItems": 2, "items": {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "integer", "minimum": -3, "maximum": -1}}},
          "code": {"type": ["integer", "null"], "minimum": 100, "maximum": 100}, "big": {"type": "integer", "minimum": 999999, "maximum": 1e300},
          "small": {"type": "number", "maximum": -0.001, "minimum": -1e300}, "near": {"type": "number", "minimum": 0.1, "exclusiveMaximum": 0.1000001},
          "either": {"anyOf": [{"type": "integer", "minimum": 5, "maximum": 7}, {"type": "string", "maxLength": 2}, {"type": "array", "maxItems": 1}, {"type": "null"}]}}}
        """,
        Polymorphic,
        Discriminated,
        Joined,
        Tuples,
        Sets,
        Multiples,
        Maps,
        Counted,
    ];

    /// <summary>minProperties/maxProperties on a map (pydantic's dict with min_length/max_length) and on listed properties.</summary>
    private const string Counted = """
        {"type": "object", "required": ["tags", "opts"], "properties": {
          "tags": {"type": "object", "additionalProperties": {"type": "boolean"}, "propertyNames": {"pattern": "^[a-c]$"}, "minProperties": 1, "maxProperties": 2},
          "opts": {"type": "object", "properties": {"a": {"type": "null"}, "b": {"type": "null"}, "c": {"type": "null"}, "d": {"type": "null"}},
                   "required": ["c"], "minProperties": 2, "maxProperties": 3}}}
        """;

    [Theory]
    [InlineData("""{"tags": {"a": true, "c": false}, "opts": {"b": null, "c": null, "d": null}}""")]
    [InlineData("""{"tags": {|}""")]                                          // one key at least
    [InlineData("""{"tags": {"a": true, "b": false|, "c": true}""")]           // two at most
    [InlineData("""{"tags": {"a": true}, "opts": {"c": null|}""")]              // two keys at least: d must follow
    [InlineData("""{"tags": {"a": true}, "opts": {"a": null, "b": null, "c": null|, "d": null}""")]   // three at most
    [InlineData("""{"tags": {"a": true}, "opts": {"a": null, "b": null, "|d": null}""")]            // c is required
    public void PropertyCountsAreHeld(string marked) => AssertMarked(Counted, marked);

    /// <summary>propertyNames as pydantic writes dict[Literal[...], X] and dict[constr(...), X].</summary>
    private const string Maps = """
        {"type": "object", "required": ["scores", "codes"], "properties": {
          "scores": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 9}, "propertyNames": {"enum": ["math", "art"]}},
          "codes": {"type": "object", "additionalProperties": {"type": "boolean"}, "propertyNames": {"pattern": "^[A-Z]{2}$"}},
          "short": {"propertyNames": {"maxLength": 2}, "additionalProperties": {"type": "null"}}}}
        """;

    [Theory]
    [InlineData("""{"scores": {"math": 3, "art": 9}, "codes": {"AB": true, "CD": false}, "short": {"": null, "é": null}}""")]
    [InlineData("""{"scores": {"|x": 1}""")]
    [InlineData("""{"scores": {"art": 1|, "math": 2}""")]          // each listed name once, in the list's order
    [InlineData("""{"scores": {}, "codes": {"|a": true}""")]
    [InlineData("""{"scores": {}, "codes": {"AB|C": true}""")]
    [InlineData("""{"scores": {}, "codes": {}, "short": {"ab|c": null}""")]
    public void PropertyNamesHoldAMapsKeys(string marked) => AssertMarked(Maps, marked);

    /// <summary>multipleOf (OpenAI's structured outputs take it): integers, decimals, a step past an integer's, beside ranges and alone.</summary>
    private const string Multiples = """
        {"type": "object", "required": ["even", "half", "cents", "price", "neg"], "properties": {
          "even": {"type": "integer", "multipleOf": 2, "minimum": -7, "maximum": 9},
          "half": {"type": "number", "multipleOf": 0.5, "exclusiveMinimum": 0, "maximum": 3},
          "cents": {"type": "number", "multipleOf": 0.01},
          "price": {"type": "integer", "multipleOf": 2.5},
          "neg": {"type": "number", "multipleOf": 7, "maximum": -1}}}
        """;

    [Theory]
    [InlineData("""{"even": -6, "half": 2.50, "cents": 0.12, "price": 75, "neg": -14}""")]
    [InlineData("""{"even": |3""")]          // nothing from 3 on is even and at most 9
    [InlineData("""{"even": -|1""")]
    [InlineData("""{"even": 8, "half": 0.|7""")]
    [InlineData("""{"even": 8, "half": 3.|5""")]
    [InlineData("""{"even": 8, "half": 0|,""")]            // 0 may become 0.5, but not stay 0
    [InlineData("""{"even": 8, "half": 1, "cents": 0.12|3""")]
    [InlineData("""{"even": 8, "half": 1, "cents": 0, "price": 7|,""")]   // 7 may become 70 or 75, but not stay 7
    [InlineData("""{"even": 8, "half": 1, "cents": 0, "price": 5, "neg": |0""")]
    public void MultipleOfHoldsNumbersToItsMultiples(string marked) => AssertMarked(Multiples, marked);

    /// <summary>uniqueItems as pydantic writes a set of an enum, of booleans, of literals.</summary>
    private const string Sets = """
        {"$defs": {"Color": {"enum": ["red", "green", "blue"]}}, "type": "object", "required": ["colors", "flags", "few"], "properties": {
          "colors": {"type": "array", "items": {"$ref": "#/$defs/Color"}, "uniqueItems": true},
          "flags": {"type": "array", "items": {"type": "boolean"}, "uniqueItems": true, "minItems": 1},
          "few": {"type": "array", "items": {"enum": [1, 12, "x", null]}, "uniqueItems": true, "maxItems": 2},
          "maybe": {"type": "array", "items": {"type": ["boolean", "null"]}, "uniqueItems": true}}}
        """;

    [Theory]
    [InlineData("""{"colors": ["red", "blue", "green"], "flags": [false, true], "few": [12, 1], "maybe": [null, true]}""")]
    [InlineData("""{"colors": ["red", "|red"]""")]               // each value once
    [InlineData("""{"colors": ["red", "green", "blue"|, """)]   // so three at most
    [InlineData("""{"colors": [], "flags": [true, |true]""")]
    [InlineData("""{"colors": [], "flags": [|]""")]              // minItems 1
    [InlineData("""{"colors": [], "flags": [true], "few": [1, 1|]""")]   // "1" again only as the start of 12
    [InlineData("""{"colors": [], "flags": [true], "few": [null, "x"|, 1]""")]
    [InlineData("""{"colors": [], "flags": [true], "few": [], "maybe": [null, false, true|, null]""")]
    public void UniqueItemsAreEachWrittenOnce(string marked) => AssertMarked(Sets, marked);

    /// <summary>prefixItems as pydantic writes a tuple (fixed, and with more items of one type after), and with items: false.</summary>
    private const string Tuples = """
        {"type": "object", "required": ["pair", "head", "open", "closed", "nested"], "properties": {
          "pair": {"type": "array", "prefixItems": [{"type": "integer", "minimum": 0, "maximum": 9}, {"type": "string", "maxLength": 2}], "minItems": 2, "maxItems": 2},
          "head": {"type": "array", "prefixItems": [{"const": "x"}], "items": {"type": "boolean"}, "maxItems": 3},
          "open": {"type": "array", "prefixItems": [{"type": "null"}, {"type": "array", "prefixItems": [{"enum": [1, 2]}], "items": false}]},
          "closed": {"type": "array", "prefixItems": [{"type": "boolean"}, {"enum": [1, 2]}], "items": false},
          "nested": {"type": "array", "items": {"type": "array", "prefixItems": [{"type": "object", "properties": {"a": {"type": "null"}}}, {"type": "boolean"}], "minItems": 2, "maxItems": 2}, "maxItems": 2}}}
        """;

    [Theory]
    [InlineData("""{"pair": [3, "ab"], "head": ["x", true, false], "open": [null, [2], {}, "z"], "closed": [false, 1], "nested": [[{}, true]]}""")]
    [InlineData("""{"pair": [3|"ab"]""")]                         // the first item is an integer of 0 to 9: "3" goes on, a quote cannot
    [InlineData("""{"pair": [3, "ab"|, 1]""")]                    // two items at most
    [InlineData("""{"pair": [3, "ab"], "head": [|true]""")]       // the first item is "x"
    [InlineData("""{"pair": [3, "ab"], "head": ["x", |"x"]""")]   // then booleans
    [InlineData("""{"pair": [3, "ab"], "head": ["x", true, true|, true]""")]
    [InlineData("""{"pair": [3, "ab"], "head": ["x"], "open": [null, [1|, 2]]""")]
    [InlineData("""{"pair": [3, "ab"], "head": ["x"], "open": [null], "closed": [true, 2|, null]""")]
    [InlineData("""{"pair": [3, "ab"], "head": ["x"], "open": [null], "closed": [true], "nested": []}""")]   // without minItems a tuple may stop early
    [InlineData("""{"pair": [3, "ab"], "head": ["x"], "open": [], "closed": [], "nested": [[{"a": null}, |{}]]}""")]
    public void PrefixItemsHoldEachItemToItsOwnSchema(string marked) => AssertMarked(Tuples, marked);

    [Theory]
    [InlineData("""{"t": [1, "a"]}""")]
    [InlineData("""{"t": [1, "a"|, 2]""")]
    [InlineData("""{"t": [|"a"]""")]
    public void Draft7ItemListsHoldTheFirstItems(string marked) =>
        AssertMarked("""
            {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
             "properties": {"t": {"type": "array", "items": [{"type": "integer"}, {"type": "string"}], "additionalItems": false}}}
            """, marked);

    /// <summary>allOf as pydantic v1 writes a described reference (recursive here), and as two object schemas joined.</summary>
    private const string Joined = """
        {"definitions": {"Node": {"type": "object", "properties": {"v": {"type": "integer", "minimum": 0, "maximum": 3},
            "next": {"title": "Next", "description": "the next node", "allOf": [{"$ref": "#/definitions/Node"}]}}, "required": ["v"]}},
         "type": "object", "properties": {"root": {"description": "the first node", "allOf": [{"$ref": "#/definitions/Node"}]},
           "both": {"allOf": [{"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"]},
                              {"properties": {"b": {"enum": [1, 2]}}, "required": ["b"]}]},
           "closed": {"allOf": [{"type": "object", "properties": {"a": {"type": "boolean"}, "b": {"type": "boolean"}}},
                                {"properties": {"a": {"type": "boolean"}}, "additionalProperties": false}]},
           "node": {"$ref": "#/definitions/Node", "properties": {"v": {"type": "integer", "minimum": 0, "maximum": 3}}, "additionalProperties": false}},
         "required": ["root", "both"]}
        """;

    [Theory]
    [InlineData("""{"root": {"v": 1, "next": {"v": 3}}, "both": {"a": true, "b": 2}}""")]
    [InlineData("""{"root": {"v": 1, "next": {"v": |4}}""")]
    [InlineData("""{"root": {"v": 0}, "both": {"|b": 2}""")]
    [InlineData("""{"root": {"v": 0}, "both": {"a": false|}""")]
    [InlineData("""{"root": {"v": 0}, "both": {"a": false, "b": 1}, "closed": {"a": true}}""")]
    [InlineData("""{"root": {"v": 0}, "both": {"a": false, "b": 1}, "closed": {"|b": true}}""")]  // closed off by the second schema
    [InlineData("""{"root": {"v": 0}, "both": {"a": false, "b": 1}, "node": {"v": 2|, "next"}""")]   // keywords beside a $ref hold too
    public void AllOfJoinsItsSchemas(string marked) => AssertMarked(Joined, marked);

    /// <summary>What .NET's schema exporter writes for a [JsonPolymorphic] type: the kind and "$type" beside the list, in no alternative.</summary>
    private const string Polymorphic = """
        {"type": "object", "properties": {"pet": {"type": ["object", "null"], "required": ["$type"], "anyOf": [
           {"properties": {"$type": {"const": "cat"}, "meows": {"type": "integer", "minimum": 0, "maximum": 9}, "name": {"type": "string", "maxLength": 3}}, "required": ["meows", "name"]},
           {"properties": {"$type": {"const": "dog"}, "barks": {"type": "boolean"}, "name": {"type": "string", "maxLength": 3}}, "required": ["barks", "name"]},
           {"properties": {"$type": {"const": 3}}}]},
         "town": {"type": "string", "maxLength": 4}}, "required": ["pet", "town"]}
        """;

    /// <summary>What pydantic writes for a tagged union: alternatives by $ref, the tag declared after other fields, and a discriminator hint.</summary>
    private const string Discriminated = """
        {"$defs": {"Circle": {"type": "object", "properties": {"radius": {"type": "number", "minimum": 0, "maximum": 10}, "kind": {"const": "circle", "type": "string"}},
                              "required": ["radius", "kind"], "additionalProperties": false},
                   "Box": {"type": "object", "properties": {"w": {"type": "integer", "minimum": 1, "maximum": 5}, "h": {"type": "integer", "minimum": 1, "maximum": 5},
                           "kind": {"enum": ["box", "square"], "type": "string"}}, "required": ["kind", "w"], "additionalProperties": false}},
         "type": "object", "properties": {"shapes": {"type": "array", "maxItems": 3, "items": {"oneOf": [{"$ref": "#/$defs/Circle"}, {"$ref": "#/$defs/Box"}],
           "discriminator": {"propertyName": "kind", "mapping": {"circle": "#/$defs/Circle", "box": "#/$defs/Box", "square": "#/$defs/Box"}}}}},
         "required": ["shapes"], "additionalProperties": false}
        """;

    // The answer up to the byte refused, then that byte and the rest; a whole answer has no "|".
    [Theory]
    [InlineData("""{"pet": {"$type": "cat", "meows": 3, "name": "Tom"}, "town": "Oslo"}""")]
    [InlineData("""{"pet": {"$type": "dog", "barks": true, "name": ""}, "town": ""}""")]
    [InlineData("""{"pet": {"$type": 3}, "town": ""}""")]
    [InlineData("""{"pet": null, "town": ""}""")]
    [InlineData("""{"pet": {"|meows": 3""")]                                 // the tag comes first
    [InlineData("""{"pet": {|}""")]                                          // and is there
    [InlineData("""{"pet": {"$type": "c|ow}""")]
    [InlineData("""{"pet": {"$type": 3|1""")]
    [InlineData("""{"pet": {"$type": "dog", "|meows": 1}""")]                   // a dog's properties only
    [InlineData("""{"pet": {"$type": "cat", "|name": "Tom"}""")]               // a cat keeps its own order
    public void TaggedUnionsAreKeptByteByByte(string marked) => AssertMarked(Polymorphic, marked);

    [Theory]
    [InlineData("""{"shapes": [{"kind": "circle", "radius": 2.5}, {"kind": "square", "w": 2}, {"kind": "box", "w": 1, "h": 5}]}""")]
    [InlineData("""{"shapes": [{"kind": "circle", "|w": 1}""")]
    [InlineData("""{"shapes": [{"kind": "box"|}""")]                         // w is required
    [InlineData("""{"shapes": [{"|radius": 1""")]
    public void APydanticUnionWritesItsTagFirst(string marked) => AssertMarked(Discriminated, marked);

    /// <summary>
    /// JsonSchema.Net's validator for a schema, without OpenAPI's "discriminator" (an annotation), and with draft 7's
    /// "definitions" as 2020-12's "$defs": its dialect refuses both.
    /// </summary>
    private static Validator ValidatorFor(string schemaText)
    {
        JsonNode schema = JsonNode.Parse(schemaText.Replace("\"definitions\"", "\"$defs\"", StringComparison.Ordinal)
            .Replace("#/definitions/", "#/$defs/", StringComparison.Ordinal))!;
        void Strip(JsonNode? node)
        {
            if (node is JsonObject map)
            {
                map.Remove("discriminator");
                foreach (KeyValuePair<string, JsonNode?> entry in map)
                {
                    Strip(entry.Value);
                }
            }
            else if (node is JsonArray list)
            {
                foreach (JsonNode? item in list)
                {
                    Strip(item);
                }
            }
        }

        Strip(schema);
        return Validator.FromText(schema.ToJsonString());
    }

    /// <summary>A marked answer (<see cref="BoundsAreKeptByteByByte"/>'s form) against <paramref name="schemaText"/>.</summary>
    private static void AssertMarked(string schemaText, string marked)
    {
        int mark = marked.IndexOf('|', StringComparison.Ordinal);
        string answer = marked.Replace("|", "", StringComparison.Ordinal);
        AssertTakenOrRefusedAt(schemaText, answer, mark < 0 ? -1 : Encoding.UTF8.GetByteCount(answer[..mark]));
    }

    [Theory]
    [MemberData(nameof(Schemas))]
    public void RandomWalksEndInAnswersTheValidatorPasses(string schemaText)
    {
        Validator validator = ValidatorFor(schemaText);

        List<string> answers = SchemaWalks.Finished(schemaText, 300, schemaText.Length);

        Assert.True(answers.Count > 200, $"only {answers.Count} of 300 walks finished");
        foreach (string answer in answers)
        {
            using JsonDocument parsed = JsonDocument.Parse(answer);
            Assert.True(validator.Evaluate(parsed.RootElement).IsValid, $"the validator refuses {answer}");
        }
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
    public void AnswersAreTakenOrRefusedWhereTheyBreakTheSchema(string answer, int refusedAt) => AssertTakenOrRefusedAt(Person, answer, refusedAt);

    /// <summary>The schema's automaton refuses <paramref name="answer"/> at byte <paramref name="refusedAt"/>, or (-1) takes it whole, and the validator passes it.</summary>
    private static void AssertTakenOrRefusedAt(string schemaText, string answer, int refusedAt)
    {
        Assert.Equal(refusedAt, SchemaWalks.RefusedAt(schemaText, answer, out bool complete));
        Assert.Equal(refusedAt < 0, complete);
        if (refusedAt < 0)
        {
            using JsonDocument parsed = JsonDocument.Parse(answer);
            Assert.True(ValidatorFor(schemaText).Evaluate(parsed.RootElement).IsValid);
        }
    }

    private const string Bounded = """
        {"type": "object", "required": ["n", "s", "a"], "properties": {"n": {"type": "integer", "minimum": 18, "maximum": 99},
          "s": {"type": "string", "minLength": 2, "maxLength": 3}, "a": {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "minItems": 1, "maxItems": 2}}}
        """;

    // The answer up to the byte refused, then that byte and the rest; a whole answer has no "|".
    [Theory]
    [InlineData("""{"n":18,"s":"ab","a":[1]}""")]
    [InlineData("""{"n": 99, "s": "abc", "a": [0.5, 2.0]}""")]
    [InlineData("""{"n":18,"s":"\ud83d\ude00\u00e9\n","a":[1]}""")]     // a surrogate pair is one character
    [InlineData("""{"n":18,"s":"€😀😀","a":[1]}""")]                         // so is a character of 3 or 4 UTF-8 bytes
    [InlineData("""{"n":1|7""")]                                            // 17 is too small, and 170 too big
    [InlineData("""{"n":1|00""")]
    [InlineData("""{"n":5|,""")]
    [InlineData("""{"n":|-1""")]                                            // no minus where the range has no negative numbers
    [InlineData("""{"n":18,"s":"a|",""")]
    [InlineData("""{"n":18,"s":"abc|d""")]
    [InlineData("""{"n":18,"s":"\ud|e00""")]                              // a lone low surrogate
    [InlineData("""{"n":18,"s":"\ud83d|x""")]                             // a high one with no low one after it
    [InlineData("""{"n":18,"s":"ab","a":[|]""")]
    [InlineData("""{"n":18,"s":"ab","a":[1,2|,""")]
    [InlineData("""{"n":18,"s":"ab","a":[0|,""")]                           // 0 is not more than 0 (0.5 is)
    [InlineData("""{"n":18,"s":"ab","a":[1|e5""")]                          // a number in a range is written without an exponent
    public void BoundsAreKeptByteByByte(string marked) => AssertMarked(Bounded, marked);

    // Draft 4 wrote an exclusive bound as a flag beside it: 3 < n < 5 holds 4 alone (JsonSchema.Net reads only the later drafts).
    [Theory]
    [InlineData("3", false)]
    [InlineData("4", true)]
    [InlineData("5", false)]
    [InlineData("4.0", false)]
    public void DraftFourExclusiveFlagsMakeTheirBoundsExclusive(string value, bool taken)
    {
        const string schema = """
            {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3, "exclusiveMinimum": true, "maximum": 5, "exclusiveMaximum": true}}}
            """;

        int refused = SchemaWalks.RefusedAt(schema, $"{{\"n\":{value}}}", out bool complete);

        Assert.Equal(taken, refused < 0 && complete);
    }

    [Theory]
    [InlineData("""{"type": "object", "properties": {"a": {"not": {"const": 1}}}}""", "schema.properties.a.not: 'not' is not supported")]
    [InlineData("""{"type": "object", "properties": {"n": {"type": "integer", "minimum": 5, "maximum": 4.5}}}""", "schema.properties.n: no integer is at least 5 and at most 4")]
    [InlineData("""{"type": "object", "properties": {"n": {"type": "number", "minimum": 1e20}}}""", "schema.properties.n.minimum: 1e20 is past")]
    [InlineData("""{"type": "object", "properties": {"n": {"type": "number", "exclusiveMinimum": 0.25, "maximum": 0.25}}}""", "no number is at least 0.250000000001 and at most 0.25")]
    [InlineData("""{"type": "object", "properties": {"n": {"type": "number", "maximum": "5"}}}""", "schema.properties.n.maximum: 'maximum' must be a number")]
    [InlineData("""{"type": "object", "properties": {"s": {"type": "string", "minLength": 3, "maxLength": 2}}}""", "schema.properties.s.minLength: 'minLength' 3 is more than 'maxLength' 2")]
    [InlineData("""{"type": "object", "properties": {"s": {"type": "array", "maxItems": -1}}}""", "schema.properties.s.maxItems: 'maxItems' must be a non-negative whole number")]
    [InlineData("""{"type": "object", "properties": {"t": {"type": "array", "prefixItems": []}}}""", "schema.properties.t.prefixItems: 'prefixItems' must be a non-empty list of schemas")]
    [InlineData("""{"type": "object", "properties": {"m": {"type": "object", "properties": {"a": {}}, "propertyNames": {"maxLength": 1}}}}""", "schema.properties.m.propertyNames: 'propertyNames' beside 'properties' is not supported")]
    [InlineData("""{"type": "object", "properties": {"m": {"type": "object", "propertyNames": {"enum": [1, 2]}}}}""", "schema.properties.m.propertyNames: a list of property names must hold strings only")]
    [InlineData("""{"type": "object", "properties": {"m": {"type": "object", "propertyNames": {"type": "integer"}}}}""", "schema.properties.m.propertyNames: 'propertyNames' must allow strings")]
    [InlineData("""{"type": "object", "properties": {"m": {"type": "object", "properties": {"a": {}}, "minProperties": 2}}}""", "schema.properties.m.minProperties: 'minProperties' 2 is more than the 1 properties")]
    [InlineData("""{"type": "object", "properties": {"m": {"type": "object", "properties": {"a": {}, "b": {}}, "required": ["a", "b"], "maxProperties": 1}}}""", "schema.properties.m.maxProperties: 'maxProperties' 1 is less than the 2 required")]
    [InlineData("""{"type": "object", "properties": {"m": {"type": "object", "additionalProperties": false, "minProperties": 1}}}""", "schema.properties.m.minProperties")]
    [InlineData("""{"type": "object", "properties": {"n": {"type": "number", "multipleOf": 0}}}""", "schema.properties.n.multipleOf: 'multipleOf' must be a positive number below 1e15 with at most 12 decimals")]
    [InlineData("""{"type": "object", "properties": {"n": {"type": "number", "multipleOf": 1e-13}}}""", "schema.properties.n.multipleOf: 'multipleOf' must be a positive number")]
    [InlineData("""{"type": "object", "properties": {"n": {"type": "number", "multipleOf": "2"}}}""", "schema.properties.n.multipleOf: 'multipleOf' must be a positive number")]
    [InlineData("""{"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 5, "minimum": 1, "maximum": 4}}}""", "schema.properties.n.multipleOf: no integer from 1 to 4 is a multiple of 5")]
    [InlineData("""{"type": "object", "properties": {"t": {"type": "array", "items": {"type": "string"}, "uniqueItems": true}}}""", "schema.properties.t.uniqueItems: 'uniqueItems' is supported only for items that are one of a fixed set")]
    [InlineData("""{"type": "object", "properties": {"t": {"type": "array", "items": {"enum": [1, 1.0]}, "uniqueItems": true}}}""", "schema.properties.t.uniqueItems: the items' values 1 and 1.0 are equal as JSON")]
    [InlineData("""{"type": "object", "properties": {"t": {"type": "array", "items": {"type": "boolean"}, "uniqueItems": true, "minItems": 3}}}""", "schema.properties.t.minItems: 'minItems' 3 is more than the 2 different values")]
    [InlineData("""{"type": "object", "properties": {"t": {"type": "array", "items": {"const": 1}, "uniqueItems": "yes"}}}""", "schema.properties.t.uniqueItems: 'uniqueItems' must be true or false")]
    [InlineData("""{"type": "object", "properties": {"t": {"type": "array", "prefixItems": [{"type": "string", "minLength": 5, "maxLength": 1}]}}}""", "schema.properties.t.prefixItems[0].minLength")]
    [InlineData("""{"type": "object", "properties": {"t": {"type": "array", "prefixItems": [true], "items": false, "minItems": 2}}}""", "schema.properties.t.minItems: 'minItems' 2 is more than the 1 items 'items': false leaves")]
    [InlineData("""{"type": "object", "properties": {"t": {"type": "array", "items": [true], "additionalItems": {"type": "string", "maxLength": -1}}}}""", "schema.properties.t.additionalItems.maxLength")]
    [InlineData("""{"type": "array", "items": {"type": "string"}}""", "the root must be an object")]
    [InlineData("""{"type": "object", "properties": {"a": {"anyOf": [{"type": "object"}, {"type": "object", "properties": {}}]}}}""", "schema.properties.a.anyOf")]
    [InlineData("""{"type": "object", "properties": {"a": {"anyOf": [{"properties": {"k": {"const": 1}}}, {"properties": {"k": {"enum": [2, 1]}}}]}}}""", "need a property that tells them apart")]
    [InlineData("""{"type": "object", "properties": {"a": {"anyOf": [{"properties": {"k": {"const": 1}}}, {"properties": {"j": {"const": 2}}}]}}}""", "need a property that tells them apart")]
    [InlineData("""{"type": "object", "properties": {"a": {"anyOf": [{"properties": {"k": {"const": 1}}}, {"properties": {"k": {"const": 2}}}], "discriminator": {"propertyName": "j"}}}}""",
        "the discriminator 'j' must be a property every object alternative lists")]
    [InlineData("""{"type": "object", "properties": {"a": {"type": "string", "anyOf": [{"type": "integer"}, {"type": "null"}]}}}""", "schema.properties.a.anyOf[0].type: 'type' differs between schemas that must all hold here")]
    [InlineData("""{"type": "object", "properties": {"a": {"allOf": [{"type": "string"}, {"type": "integer"}]}}}""", "schema.properties.a.allOf[1].type: 'type' differs")]
    [InlineData("""{"type": "object", "properties": {"a": {"allOf": [{"properties": {"k": {"type": "string"}}}, {"properties": {"k": {"type": "integer"}}}]}}}""",
        "schema.properties.a.allOf[1].properties.k: the property is described differently")]
    [InlineData("""{"type": "object", "properties": {"a": {"allOf": [{"properties": {"k": {}}, "required": ["k"]}, {"properties": {"j": {}}, "additionalProperties": false}]}}}""",
        "'k' is required, but a schema joined here with 'additionalProperties': false does not list it")]
    [InlineData("""{"$defs": {"loop": {"allOf": [{"$ref": "#/$defs/loop"}, {"type": "object"}]}}, "type": "object", "properties": {"a": {"$ref": "#/$defs/loop"}}}""",
        "nested more than 256 deep (a reference leading back into itself")]
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
