using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace QwenSharp.Sampling;

/// <summary>The JSON types a schema node lets a value be.</summary>
[Flags]
public enum JsonKinds
{
    None = 0,
    Object = 1,
    Array = 2,
    String = 4,
    Number = 8,
    Integer = 16,
    Boolean = 32,
    Null = 64,
    Any = Object | Array | String | Number | Boolean | Null,
}

/// <summary>One property of an object node: its key as it is written (quoted, escaped as JSON escapes it), its value's node, and whether it must appear.</summary>
public sealed record JsonSchemaProperty(byte[] Key, JsonSchemaNode Value, bool Required);

/// <summary>
/// A compiled schema node: the kinds a value may be, and for each kind what it holds. A node with <see cref="Enum"/> takes
/// exactly one of those texts; an object node with <see cref="Properties"/> takes them in their order (required ones
/// always, optional ones or not) and no others; one without takes any keys, each value <see cref="Values"/>.
/// </summary>
public sealed class JsonSchemaNode
{
    private IReadOnlyList<JsonSchemaProperty>? _properties;

    public int Id { get; internal set; }

    public JsonKinds Kinds { get; internal set; }

    /// <summary>The allowed values, each as the exact bytes written (enum, const), or null.</summary>
    public byte[][]? Enum { get; internal set; }

    public IReadOnlyList<JsonSchemaProperty>? Properties
    {
        get => _properties;
        internal set
        {
            _properties = value;
            Keys = value is null ? null : [.. value.Select(p => p.Key)];
        }
    }

    /// <summary>The properties' keys as written, in order (what <see cref="JsonSchemaPrefix"/> matches): set with them.</summary>
    internal byte[][]? Keys { get; private set; }

    /// <summary>An object without properties: each value's node. An array: each item's node.</summary>
    public JsonSchemaNode? Values { get; internal set; }

    public JsonSchemaNode? Items { get; internal set; }

    /// <summary>
    /// An array's first items' nodes, one each (<c>prefixItems</c>, or draft 7's list of <c>items</c>: pydantic's tuples);
    /// <see cref="Items"/> then takes the rest. Null for an array whose items are all alike.
    /// </summary>
    public IReadOnlyList<JsonSchemaNode>? PrefixItems { get; internal set; }

    /// <summary>
    /// Whether an array's items must differ (<c>uniqueItems</c>): its <see cref="Items"/> are then one of a fixed set of
    /// values (<see cref="Enum"/>), and each is written at most once.
    /// </summary>
    public bool UniqueItems { get; internal set; }

    /// <summary>An object's key count limits (<c>minProperties</c>, <c>maxProperties</c>).</summary>
    public int MinProperties { get; internal set; }

    public int MaxProperties { get; internal set; } = int.MaxValue;

    /// <summary>Whether an object's keys are counted as they come (for its limits).</summary>
    internal bool CountsProperties => MinProperties > 0 || MaxProperties < int.MaxValue;

    /// <summary>An object without listed properties: the limits its keys are held to (<c>propertyNames</c>: pattern, format, length), or null.</summary>
    public JsonSchemaNode? KeyNames { get; internal set; }

    /// <summary>The node of item <paramref name="index"/> (from 0) of an array.</summary>
    internal JsonSchemaNode ItemAt(int index) => PrefixItems is { } prefix && index < prefix.Count ? prefix[index] : Items!;

    /// <summary>
    /// A tagged union of objects: <see cref="Properties"/> is the one property that tells them apart, and after its value
    /// (the i-th of its <see cref="Enum"/>) the object goes on as <c>Variants[i]</c>; otherwise null.
    /// </summary>
    public IReadOnlyList<JsonSchemaNode>? Variants { get; internal set; }

    /// <summary>A string's length limits in code points (<c>minLength</c>, <c>maxLength</c>), as JSON Schema counts characters.</summary>
    public int MinLength { get; internal set; }

    public int MaxLength { get; internal set; } = int.MaxValue;

    /// <summary>An array's item count limits (<c>minItems</c>, <c>maxItems</c>).</summary>
    public int MinItems { get; internal set; }

    public int MaxItems { get; internal set; } = int.MaxValue;

    /// <summary>A number's range (<c>minimum</c>, <c>maximum</c> and their exclusive forms), or null.</summary>
    public JsonNumberRange? Range { get; internal set; }

    /// <summary>A string's <c>pattern</c>, or the pattern its <c>format</c> keeps, or null.</summary>
    internal StringPattern? Pattern { get; set; }

    internal bool HasLength => MinLength > 0 || MaxLength < int.MaxValue;

    /// <summary>Whether an array's items are counted as they come: for its limits, or to know which of its <see cref="PrefixItems"/> comes next.</summary>
    internal bool CountsItems => MinItems > 0 || MaxItems < int.MaxValue || PrefixItems is not null;

    /// <summary>Takes everything <paramref name="other"/> holds but its id (a <c>$ref</c> placeholder filled from the schema it names).</summary>
    internal void TakeShape(JsonSchemaNode other)
    {
        Kinds = other.Kinds;
        Enum = other.Enum;
        Properties = other.Properties;
        Values = other.Values;
        Items = other.Items;
        PrefixItems = other.PrefixItems;
        UniqueItems = other.UniqueItems;
        KeyNames = other.KeyNames;
        (MinProperties, MaxProperties) = (other.MinProperties, other.MaxProperties);
        Variants = other.Variants;
        (MinLength, MaxLength, MinItems, MaxItems, Range, Pattern) = (other.MinLength, other.MaxLength, other.MinItems, other.MaxItems, other.Range, other.Pattern);
    }
}

/// <summary>
/// A JSON schema (OpenAI's <c>response_format: json_schema</c>, <c>ChatResponseFormat.ForJsonSchema</c>) compiled to
/// the nodes <see cref="JsonSchemaPrefix"/> walks. It takes what structured outputs use: <c>type</c> (one or a list),
/// <c>properties</c> and <c>required</c>, <c>additionalProperties</c>, <c>items</c>, <c>prefixItems</c> (and draft 7's
/// list of <c>items</c> with <c>additionalItems</c>), <c>uniqueItems</c> over a fixed set of values, a map's
/// <c>propertyNames</c>, <c>minProperties</c>/<c>maxProperties</c>, <c>enum</c>, <c>const</c>,
/// <c>anyOf</c>/<c>oneOf</c> whose alternatives begin differently (an object or null, say) or are objects told apart by a
/// tag property (<see cref="Tagged"/>), each alternative with the keywords beside the list, <c>allOf</c> (its schemas
/// joined, <see cref="SchemaConjunction"/>), and <c>$ref</c> into
/// <c>$defs</c> or <c>definitions</c>, recursion included; <c>minLength</c>/<c>maxLength</c>, <c>minItems</c>/<c>maxItems</c>,
/// <c>minimum</c>/<c>maximum</c> with their exclusive forms and <c>multipleOf</c> (<see cref="JsonNumberRange"/>), and <c>pattern</c> or the
/// formats <c>date</c>, <c>time</c>, <c>date-time</c> and <c>uuid</c> (<see cref="StringPattern"/>), alone or beside a
/// length (<see cref="StringPattern.FinishesWithin"/>). Annotations
/// (<c>title</c>, <c>description</c>, other formats, ...) are read past. A keyword that constrains values further
/// (<c>not</c>, <c>if</c>, <c>uniqueItems</c> over items that are not a fixed set of values, ...) is refused, naming it and where it is, rather than left unenforced. Objects
/// hold their listed properties only, in the order listed, as llama.cpp's schema grammars do.
/// </summary>
public sealed class JsonSchema
{
    /// <summary>Past this many properties in one object (or values in one enum) a schema is refused: the automaton keeps its candidates as bits.</summary>
    public const int MaxAlternatives = 64;

    /// <summary>The keywords that hold a value to more than its type (a schema with one is not "anything").</summary>
    private static readonly string[] s_valueLimits = ["minLength", "maxLength", "minItems", "maxItems", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "pattern", "format", "prefixItems", "uniqueItems", "multipleOf", "propertyNames", "minProperties", "maxProperties"];

    /// <summary>
    /// Keywords that say something about a value without holding it to anything (OpenAPI's <c>discriminator</c> a hint;
    /// <c>contentMediaType</c> and <c>contentSchema</c> annotations in JSON Schema since 2019, and <c>contentEncoding</c> but
    /// for base64, <see cref="Pattern"/>); OpenAPI's <c>x-</c> extensions too (<see cref="IsAnnotation"/>).
    /// </summary>
    private static readonly HashSet<string> s_annotations =
    [
        "$schema", "$id", "$comment", "title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly", "discriminator",
        "$defs", "definitions", "contentEncoding", "contentMediaType", "contentSchema",
    ];

    /// <summary>Whether a keyword holds nothing: one of <see cref="s_annotations"/>, or an OpenAPI extension (<c>x-</c>...), which by definition only annotates.</summary>
    private static bool IsAnnotation(string keyword) => s_annotations.Contains(keyword) || keyword.StartsWith("x-", StringComparison.Ordinal);

    private static readonly HashSet<string> s_known =
    [
        .. s_annotations, "type", "properties", "required", "additionalProperties", "items", "additionalItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref",
        "nullable", .. s_valueLimits,
    ];

    private static readonly JsonWriterOptions s_writer = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private readonly JsonElement _root;
    /// <summary>
    /// Schemas compiled inside one another, at most: joined schemas are written out whole (<see cref="SchemaConjunction"/>),
    /// so a reference that leads back into itself through them would go on for ever; no real schema nests this deep.
    /// </summary>
    private const int MaxNesting = 256;

    private readonly Dictionary<string, JsonSchemaNode> _references = [];
    private int _nesting;
    private int _nodes;

    private JsonSchema(JsonElement root)
    {
        _root = root;
        Root = Compile(root, "schema");
        if (Root.Kinds != JsonKinds.Object || Root.Enum is not null)
        {
            throw new ArgumentException("schema: the root must be an object (\"type\": \"object\"), as OpenAI's structured outputs require", "schema");
        }
    }

    public JsonSchemaNode Root { get; }

    /// <summary>Any JSON object (<c>{"type": "object"}</c>): OpenAI's <c>response_format: json_object</c>.</summary>
    public static JsonSchema AnyObject { get; } = Compile(JsonDocument.Parse("""{"type": "object"}""").RootElement);

    /// <summary>The node whose value is anything JSON (a schema of <c>true</c> or <c>{}</c>).</summary>
    public JsonSchemaNode Any { get; private set; } = null!;

    /// <summary>Compiles <paramref name="schema"/>; an unsupported or malformed schema is an <see cref="ArgumentException"/> naming the keyword's path (ParamName "schema").</summary>
    public static JsonSchema Compile(JsonElement schema) => new(schema.Clone());

    private JsonSchemaNode NewNode(JsonKinds kinds)
    {
        return new JsonSchemaNode { Id = _nodes++, Kinds = kinds };
    }

    private JsonSchemaNode AnyNode()
    {
        if (Any is null)
        {
            Any = NewNode(JsonKinds.Any);
            Any.Values = Any;
            Any.Items = Any;
        }

        return Any;
    }

    private static ArgumentException Refuse(string path, string message) => new($"{path}: {message}", "schema");

    private JsonSchemaNode Compile(JsonElement schema, string path)
    {
        if (_nesting == MaxNesting)
        {
            throw Refuse(path, $"schemas nested more than {MaxNesting} deep (a reference leading back into itself through allOf or anyOf?)");
        }

        _nesting++;
        try
        {
            return CompileOne(schema, path);
        }
        finally
        {
            _nesting--;
        }
    }

    private JsonSchemaNode CompileOne(JsonElement schema, string path)
    {
        if (schema.ValueKind == JsonValueKind.True)
        {
            return AnyNode();
        }

        if (schema.ValueKind != JsonValueKind.Object)
        {
            throw Refuse(path, $"a schema must be an object or true, not {schema.ValueKind}");
        }

        foreach (JsonProperty keyword in schema.EnumerateObject())
        {
            if (!s_known.Contains(keyword.Name) && !IsAnnotation(keyword.Name))
            {
                throw Refuse($"{path}.{keyword.Name}", $"'{keyword.Name}' is not supported (it would constrain values further than the answer can be held to)");
            }
        }

        if (schema.TryGetProperty("allOf", out JsonElement all))
        {
            return AllOf(schema, all, path);
        }

        if (schema.TryGetProperty("$ref", out JsonElement reference))
        {
            // Keywords beside a reference hold too (JSON Schema 2019 on): the schema it names joined with them.
            JsonProperty[] beside = Beside(schema, "$ref");
            return beside.Length == 0 ? Reference(reference, path)
                : Compile(Conjunction([(Target(reference, path), $"{path}.$ref"), (Object(beside), path)]), path);
        }

        if (schema.TryGetProperty("anyOf", out JsonElement anyOf) || schema.TryGetProperty("oneOf", out anyOf))
        {
            string unionPath = $"{path}.{(schema.TryGetProperty("anyOf", out _) ? "anyOf" : "oneOf")}";
            return Union(Alternatives(schema, anyOf, unionPath), unionPath, DiscriminatorHint(schema, path));
        }

        if (schema.TryGetProperty("const", out JsonElement constant))
        {
            return EnumNode([constant], path);
        }

        if (schema.TryGetProperty("enum", out JsonElement values))
        {
            if (values.ValueKind != JsonValueKind.Array || values.GetArrayLength() == 0)
            {
                throw Refuse($"{path}.enum", "'enum' must be a non-empty list");
            }

            return EnumNode([.. values.EnumerateArray()], $"{path}.enum");
        }

        JsonKinds kinds = Kinds(schema, path);
        if (kinds == JsonKinds.Any && !schema.TryGetProperty("properties", out _) && !schema.TryGetProperty("items", out _) && !schema.TryGetProperty("contentEncoding", out _)
            && !s_valueLimits.Any(limit => schema.TryGetProperty(limit, out _)))
        {
            return AnyNode();
        }

        JsonSchemaNode node = NewNode(kinds);
        if (kinds.HasFlag(JsonKinds.Object))
        {
            ObjectShape(node, schema, path);
            PropertyCounts(node, schema, path);
        }

        if (kinds.HasFlag(JsonKinds.Array))
        {
            (node.MinItems, node.MaxItems) = Counts(schema, path, "minItems", "maxItems");
            ArrayItems(node, schema, path);
        }

        if (kinds.HasFlag(JsonKinds.String))
        {
            (node.MinLength, node.MaxLength) = Counts(schema, path, "minLength", "maxLength");
            node.Pattern = Pattern(schema, path);
            if (schema.TryGetProperty("format", out JsonElement format) && format.ValueKind == JsonValueKind.String
                && StringPattern.MaxLengthOf(format.GetString()!) is int formatMost)
            {
                node.MaxLength = Math.Min(node.MaxLength, formatMost);
            }

            if (node.Pattern is { } pattern && node.HasLength && !pattern.FinishesWithin(pattern.Begin, node.MinLength, node.MaxLength))
            {
                // (Characters past U+FFFF are not written in such a string: a pattern only they could match is refused here too.)
                string limits = node.MaxLength == int.MaxValue ? $"{node.MinLength} or more" : $"{node.MinLength} to {node.MaxLength}";
                throw Refuse($"{path}.{(schema.TryGetProperty("pattern", out _) ? "pattern" : "format")}",
                    $"no string of {limits} characters matches it");
            }
        }

        if ((kinds & (JsonKinds.Number | JsonKinds.Integer)) != 0)
        {
            node.Range = JsonNumberRange.Read(schema, path, integer: !kinds.HasFlag(JsonKinds.Number));
        }

        return node;
    }

    /// <summary>The string's <c>pattern</c>, or the one its <c>format</c> keeps (date, time, date-time, duration, uuid, ipv4, ipv6, hostname, email; other formats are annotations) or <c>contentEncoding: base64</c>; not two.</summary>
    private static StringPattern? Pattern(JsonElement schema, string path)
    {
        bool hasPattern = schema.TryGetProperty("pattern", out JsonElement pattern);
        string? format = schema.TryGetProperty("format", out JsonElement name) && name.ValueKind == JsonValueKind.String ? name.GetString() : null;
        StringPattern? formatPattern = format is null ? null : StringPattern.ForFormat(format);
        if (schema.TryGetProperty("contentEncoding", out JsonElement encoding) && encoding.ValueKind == JsonValueKind.String
            && string.Equals(encoding.GetString(), "base64", StringComparison.OrdinalIgnoreCase))
        {
            // .NET's [Base64String]: RFC 4648's alphabet, padded.
            formatPattern = formatPattern is null ? StringPattern.Base64 : throw Refuse($"{path}.contentEncoding", $"base64 beside the format '{format}' is not supported");
        }

        if (!hasPattern)
        {
            return formatPattern;
        }

        if (pattern.ValueKind != JsonValueKind.String)
        {
            throw Refuse($"{path}.pattern", "'pattern' must be a string");
        }

        if (formatPattern is not null)
        {
            throw Refuse($"{path}.pattern", $"a 'pattern' beside the format '{format}' is not supported");
        }

        try
        {
            return StringPattern.Parse(pattern.GetString()!);
        }
        catch (ArgumentException e)
        {
            throw Refuse($"{path}.pattern", e.Message);
        }
    }

    /// <summary>
    /// An array's items: <c>items</c> for each; or <c>prefixItems</c> for the first ones, each its own (JSON Schema 2020-12,
    /// as pydantic writes a tuple), and <c>items</c> for the rest; or, as draft 7 wrote them, a list of <c>items</c> for the
    /// first ones and <c>additionalItems</c> for the rest. The rest may be <c>false</c>: no more items than the first ones.
    /// </summary>
    private void ArrayItems(JsonSchemaNode node, JsonElement schema, string path)
    {
        bool hasPrefix = schema.TryGetProperty("prefixItems", out JsonElement prefix);
        bool hasItems = schema.TryGetProperty("items", out JsonElement items);
        bool listed = !hasPrefix && hasItems && items.ValueKind == JsonValueKind.Array;
        JsonElement? first = hasPrefix ? prefix : listed ? items : null;
        string firstName = hasPrefix ? "prefixItems" : "items", restName = listed ? "additionalItems" : "items";
        JsonElement? rest = !listed ? (hasItems ? items : null) : schema.TryGetProperty("additionalItems", out JsonElement additional) ? additional : null;
        if (first is { } list)
        {
            if (list.ValueKind != JsonValueKind.Array || list.GetArrayLength() == 0)
            {
                throw Refuse($"{path}.{firstName}", $"'{firstName}' must be a non-empty list of schemas");
            }

            node.PrefixItems = [.. list.EnumerateArray().Select((item, i) => Compile(item, $"{path}.{firstName}[{i}]"))];
        }

        if (rest is { ValueKind: JsonValueKind.False })
        {
            // No items past the first ones (none at all without them).
            node.MaxItems = Math.Min(node.MaxItems, node.PrefixItems?.Count ?? 0);
            if (node.MinItems > node.MaxItems)
            {
                throw Refuse($"{path}.minItems", $"'minItems' {node.MinItems} is more than the {node.MaxItems} items '{restName}': false leaves: no value fits");
            }
        }

        node.Items = rest is { } others && others.ValueKind != JsonValueKind.False ? Compile(others, $"{path}.{restName}") : AnyNode();
        if (schema.TryGetProperty("uniqueItems", out JsonElement unique))
        {
            UniqueItems(node, unique, path);
        }
    }

    /// <summary>
    /// <c>uniqueItems: true</c> (pydantic's sets): held where every item is one of a fixed set of values (an enum or
    /// const, booleans, null), each then written at most once, so an array has at most as many items as there are values.
    /// Items that could be any string or number are refused: the answer would have to remember every item written.
    /// </summary>
    private void UniqueItems(JsonSchemaNode node, JsonElement unique, string path)
    {
        if (unique.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
        {
            throw Refuse($"{path}.uniqueItems", "'uniqueItems' must be true or false");
        }

        if (unique.ValueKind == JsonValueKind.False)
        {
            return;
        }

        JsonSchemaNode items = node.Items!;
        bool literals = items.Enum is null && items.Kinds != JsonKinds.None && (items.Kinds & ~(JsonKinds.Boolean | JsonKinds.Null)) == 0;
        if (node.PrefixItems is not null || (items.Enum is null && !literals))
        {
            throw Refuse($"{path}.uniqueItems", "'uniqueItems' is supported only for items that are one of a fixed set of values (an enum or const, booleans, null)");
        }

        if (literals)
        {
            node.Items = items = NewNode(items.Kinds);
            items.Enum = LiteralsOf(items.Kinds);
        }

        // Values JSON counts as equal though written apart (1 and 1.0) would let a repeat by.
        JsonElement[] values = [.. items.Enum!.Select(v => JsonDocument.Parse(v).RootElement)];
        for (int i = 0; i < values.Length; i++)
        {
            for (int j = i + 1; j < values.Length; j++)
            {
                if (JsonElement.DeepEquals(values[i], values[j]))
                {
                    throw Refuse($"{path}.uniqueItems", $"the items' values {values[i].GetRawText()} and {values[j].GetRawText()} are equal as JSON: write each once");
                }
            }
        }

        node.UniqueItems = true;
        node.MaxItems = Math.Min(node.MaxItems, values.Length);
        if (node.MinItems > node.MaxItems)
        {
            throw Refuse($"{path}.minItems", $"'minItems' {node.MinItems} is more than the {values.Length} different values the items can take: no value fits");
        }
    }

    /// <summary>A pair of count limits (<c>minItems</c>/<c>maxItems</c>, <c>minLength</c>/<c>maxLength</c>): non-negative whole numbers, the least no more than the most.</summary>
    private static (int Least, int Most) Counts(JsonElement schema, string path, string leastName, string mostName)
    {
        int least = Count(schema, path, leastName) ?? 0;
        int most = Count(schema, path, mostName) ?? int.MaxValue;
        return least <= most ? (least, most) : throw Refuse($"{path}.{leastName}", $"'{leastName}' {least} is more than '{mostName}' {most}: no value fits");
    }

    private static int? Count(JsonElement schema, string path, string name)
    {
        if (!schema.TryGetProperty(name, out JsonElement value))
        {
            return null;
        }

        // A limit past int's range is as good as none: no answer is that long.
        return value.ValueKind == JsonValueKind.Number && value.TryGetDouble(out double count) && count >= 0 && count == Math.Floor(count)
            ? (int)Math.Min(count, int.MaxValue)
            : throw Refuse($"{path}.{name}", $"'{name}' must be a non-negative whole number");
    }

    /// <summary>The kinds <c>type</c> names (all of them when it is missing), with <c>nullable: true</c> adding null.</summary>
    private static JsonKinds Kinds(JsonElement schema, string path)
    {
        JsonKinds kinds = JsonKinds.None;
        if (!schema.TryGetProperty("type", out JsonElement type))
        {
            kinds = schema.TryGetProperty("properties", out _) ? JsonKinds.Object : schema.TryGetProperty("items", out _) ? JsonKinds.Array : JsonKinds.Any;
        }
        else
        {
            JsonElement[] names = type.ValueKind == JsonValueKind.Array ? [.. type.EnumerateArray()] : [type];
            foreach (JsonElement name in names)
            {
                kinds |= name.ValueKind != JsonValueKind.String ? throw Refuse($"{path}.type", "'type' must be a type name or a list of them") : name.GetString() switch
                {
                    "object" => JsonKinds.Object,
                    "array" => JsonKinds.Array,
                    "string" => JsonKinds.String,
                    "number" => JsonKinds.Number,
                    "integer" => JsonKinds.Integer,
                    "boolean" => JsonKinds.Boolean,
                    "null" => JsonKinds.Null,
                    string other => throw Refuse($"{path}.type", $"'{other}' is not a JSON schema type"),
                    null => throw Refuse($"{path}.type", "'type' must be a type name or a list of them"),
                };
            }
        }

        if (schema.TryGetProperty("nullable", out JsonElement nullable) && nullable.ValueKind == JsonValueKind.True)
        {
            kinds |= JsonKinds.Null;
        }

        // Integers are numbers: a value that may be either is any number.
        return kinds.HasFlag(JsonKinds.Number) ? kinds & ~JsonKinds.Integer : kinds;
    }

    private void ObjectShape(JsonSchemaNode node, JsonElement schema, string path)
    {
        bool hasNames = schema.TryGetProperty("propertyNames", out JsonElement keyNames);
        if (!schema.TryGetProperty("properties", out JsonElement properties))
        {
            node.Values = schema.TryGetProperty("additionalProperties", out JsonElement additional) && additional.ValueKind != JsonValueKind.False
                ? Compile(additional, $"{path}.additionalProperties")
                : schema.TryGetProperty("additionalProperties", out _) ? null : AnyNode();
            if (hasNames)
            {
                KeyNames(node, keyNames, $"{path}.propertyNames");
            }

            return;
        }

        if (hasNames)
        {
            throw Refuse($"{path}.propertyNames", "'propertyNames' beside 'properties' is not supported");
        }

        if (properties.ValueKind != JsonValueKind.Object)
        {
            throw Refuse($"{path}.properties", "'properties' must be an object");
        }

        HashSet<string> required = schema.TryGetProperty("required", out JsonElement names) && names.ValueKind == JsonValueKind.Array
            ? [.. names.EnumerateArray().Select(n => n.GetString() ?? throw Refuse($"{path}.required", "'required' must list property names"))]
            : [];
        var list = new List<JsonSchemaProperty>();
        foreach (JsonProperty property in properties.EnumerateObject())
        {
            list.Add(new JsonSchemaProperty(Written(writer => writer.WriteStringValue(property.Name)), Compile(property.Value, $"{path}.properties.{property.Name}"),
                required.Contains(property.Name)));
        }

        if (required.FirstOrDefault(r => !properties.TryGetProperty(r, out _)) is string missing)
        {
            throw Refuse($"{path}.required", $"'{missing}' is required but not among the properties");
        }

        if (list.Count > MaxAlternatives)
        {
            throw Refuse($"{path}.properties", $"{list.Count} properties; at most {MaxAlternatives} in one object");
        }

        node.Properties = list;
    }

    /// <summary>
    /// <c>minProperties</c>/<c>maxProperties</c>: keys counted as they are written, an object closing only with enough and
    /// taking none past the most; with listed properties, a property is taken only where the required ones after it
    /// still fit and enough may still follow. Limits no object can meet are refused.
    /// </summary>
    private static void PropertyCounts(JsonSchemaNode node, JsonElement schema, string path)
    {
        (node.MinProperties, node.MaxProperties) = Counts(schema, path, "minProperties", "maxProperties");
        int most = node.Properties is { } listed ? listed.Count : node.Values is null ? 0 : int.MaxValue;
        int required = node.Properties?.Count(p => p.Required) ?? 0;
        if (node.MinProperties > most)
        {
            throw Refuse($"{path}.minProperties", $"'minProperties' {node.MinProperties} is more than the {most} properties the object can have: no value fits");
        }

        if (required > node.MaxProperties)
        {
            throw Refuse($"{path}.maxProperties", $"'maxProperties' {node.MaxProperties} is less than the {required} required properties: no value fits");
        }
    }

    /// <summary>
    /// A map's <c>propertyNames</c> (pydantic's <c>dict[Literal[...], X]</c> and <c>dict[constr(...), X]</c>): keys from a
    /// list become that object's properties, each optional, in the list's order, each value the map's; keys held to a
    /// string's limits (pattern, format, length) are held as they are written (<see cref="JsonSchemaNode.KeyNames"/>).
    /// </summary>
    private void KeyNames(JsonSchemaNode node, JsonElement names, string path)
    {
        JsonSchemaNode keys = Compile(names, path);
        if (node.Values is not { } values)
        {
            return;     // no keys at all
        }

        if (keys.Enum is { } listed)
        {
            if (listed.Any(k => k.Length == 0 || k[0] != (byte)'"'))
            {
                throw Refuse(path, "a list of property names must hold strings only");
            }

            node.Properties = [.. listed.Select(k => new JsonSchemaProperty(k, values, Required: false))];
            node.Values = null;
            return;
        }

        if (!keys.Kinds.HasFlag(JsonKinds.String))
        {
            throw Refuse(path, "'propertyNames' must allow strings (every key is one)");
        }

        node.KeyNames = keys.HasLength || keys.Pattern is not null ? keys : null;
    }

    private JsonSchemaNode EnumNode(IReadOnlyList<JsonElement> values, string path)
    {
        if (values.Count > MaxAlternatives)
        {
            throw Refuse(path, $"{values.Count} values; at most {MaxAlternatives}");
        }

        JsonSchemaNode node = NewNode(JsonKinds.None);
        node.Enum = [.. values.Select(v => Written(v.WriteTo)).Distinct(ByteArrayComparer.Instance)];
        node.Kinds = values.Aggregate(JsonKinds.None, (kinds, v) => kinds | KindOf(v));
        return node;
    }

    private static JsonKinds KindOf(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Object => JsonKinds.Object,
        JsonValueKind.Array => JsonKinds.Array,
        JsonValueKind.String => JsonKinds.String,
        JsonValueKind.Number => JsonKinds.Number,
        JsonValueKind.True or JsonValueKind.False => JsonKinds.Boolean,
        _ => JsonKinds.Null,
    };

    /// <summary>
    /// anyOf/oneOf's alternatives, each with the keywords beside the list (<c>{"type": "object", "required": ["$type"],
    /// "anyOf": [...]}</c>, as .NET's schema exporter writes a polymorphic type): a value must meet both, so each
    /// alternative takes them, its <c>required</c> joined with theirs. An alternative that is a bare <c>$ref</c> takes
    /// them into the schema it names; one that gives the same keyword differently is refused.
    /// </summary>
    private List<JsonElement> Alternatives(JsonElement schema, JsonElement alternatives, string path)
    {
        if (alternatives.ValueKind != JsonValueKind.Array || alternatives.GetArrayLength() == 0)
        {
            throw Refuse(path, "must be a non-empty list of schemas");
        }

        JsonProperty[] beside = Beside(schema, "anyOf", "oneOf");
        if (beside.Length == 0)
        {
            return [.. alternatives.EnumerateArray()];
        }

        JsonElement siblings = Object(beside);
        return [.. alternatives.EnumerateArray().Select((alternative, i) => Conjunction([(siblings, path), (alternative, $"{path}[{i}]")]))];
    }

    /// <summary>
    /// <c>allOf</c>: its schemas and the keywords beside it, joined into one (<see cref="SchemaConjunction"/>). One schema
    /// with nothing but annotations beside it is compiled as it is, so that a reference (pydantic's
    /// <c>{"allOf": [{"$ref": ...}], "description": ...}</c>) may still lead back into itself.
    /// </summary>
    private JsonSchemaNode AllOf(JsonElement schema, JsonElement all, string path)
    {
        if (all.ValueKind != JsonValueKind.Array || all.GetArrayLength() == 0)
        {
            throw Refuse($"{path}.allOf", "must be a non-empty list of schemas");
        }

        JsonProperty[] beside = Beside(schema, "allOf");
        if (all.GetArrayLength() == 1 && beside.Length == 0)
        {
            return Compile(all[0], $"{path}.allOf[0]");
        }

        return Compile(Conjunction([(Object(beside), path), .. all.EnumerateArray().Select((part, i) => (part, $"{path}.allOf[{i}]"))]), path);
    }

    /// <summary>Schemas joined (<see cref="SchemaConjunction"/>), each that is a bare <c>$ref</c> first taken as the schema it names.</summary>
    private JsonElement Conjunction(IEnumerable<(JsonElement Schema, string Where)> parts)
    {
        return SchemaConjunction.Merge([.. parts.Select(p => (Bare(p.Schema, p.Where), p.Where))], IsAnnotation);
    }

    /// <summary>A <c>$ref</c> with nothing but annotations beside it, as the schema it names; any other schema as it is.</summary>
    private JsonElement Bare(JsonElement schema, string path) =>
        schema.ValueKind == JsonValueKind.Object && schema.TryGetProperty("$ref", out JsonElement reference)
            && Beside(schema, "$ref").Length == 0
            ? Target(reference, path)
            : schema;

    /// <summary>The keywords of <paramref name="schema"/> other than <paramref name="keywords"/> that hold a value to something (not annotations).</summary>
    private static JsonProperty[] Beside(JsonElement schema, params string[] keywords) =>
        [.. schema.EnumerateObject().Where(k => !keywords.Contains(k.Name) && !IsAnnotation(k.Name))];

    private static JsonElement Object(IEnumerable<JsonProperty> keywords)
    {
        byte[] bytes = Written(writer =>
        {
            writer.WriteStartObject();
            foreach (JsonProperty keyword in keywords)
            {
                keyword.WriteTo(writer);
            }

            writer.WriteEndObject();
        });
        using JsonDocument document = JsonDocument.Parse(bytes);
        return document.RootElement.Clone();
    }

    /// <summary>OpenAPI's <c>discriminator.propertyName</c> (pydantic writes it beside a tagged union), or null.</summary>
    private static string? DiscriminatorHint(JsonElement schema, string path) =>
        !schema.TryGetProperty("discriminator", out JsonElement discriminator) ? null
        : discriminator.ValueKind == JsonValueKind.Object && discriminator.TryGetProperty("propertyName", out JsonElement name) && name.ValueKind == JsonValueKind.String
            ? name.GetString()
            : throw Refuse($"{path}.discriminator", "'discriminator' must be an object with a 'propertyName' string");

    /// <summary>
    /// anyOf/oneOf: the alternatives' kinds must not overlap (their values begin differently, so the first byte picks one),
    /// except that enums, and null or boolean types, merge into one enum (an optional enum: anyOf [enum, null]), and that
    /// objects may be several when a property tells them apart (<see cref="Tagged"/>).
    /// </summary>
    private JsonSchemaNode Union(List<JsonElement> alternatives, string path, string? discriminator)
    {
        JsonSchemaNode[] nodes = [.. alternatives.Select((a, i) => Compile(a, $"{path}[{i}]")).SelectMany(ObjectApart)];
        JsonSchemaNode[] objects = [.. nodes.Where(n => n.Kinds == JsonKinds.Object && n.Enum is null)];
        if (objects.Length > 1)
        {
            nodes = [.. nodes.Where(n => !objects.Contains(n)), Tagged(objects, path, discriminator)];
        }

        if (nodes.Length == 1)
        {
            return nodes[0];
        }

        if (nodes.Any(n => n.Enum is not null))
        {
            if (nodes.Any(n => n.Enum is null && (n.Kinds & ~(JsonKinds.Null | JsonKinds.Boolean)) != 0))
            {
                throw Refuse(path, "an enum or const alternative goes only with other enums, null or boolean");
            }

            JsonSchemaNode merged = NewNode(JsonKinds.None);
            merged.Enum = [.. nodes.SelectMany(n => n.Enum ?? LiteralsOf(n.Kinds)).Distinct(ByteArrayComparer.Instance)];
            merged.Kinds = nodes.Aggregate(JsonKinds.None, (kinds, n) => kinds | n.Kinds);
            return merged.Enum.Length > MaxAlternatives ? throw Refuse(path, $"more than {MaxAlternatives} values") : merged;
        }

        JsonSchemaNode union = NewNode(JsonKinds.None);
        foreach (JsonSchemaNode n in nodes)
        {
            // Null and booleans hold nothing more, so two alternatives may both allow them.
            JsonKinds numeric = JsonKinds.Number | JsonKinds.Integer, bare = JsonKinds.Null | JsonKinds.Boolean;
            bool overlap = (union.Kinds & n.Kinds & ~numeric & ~bare) != 0 || ((union.Kinds & numeric) != 0 && (n.Kinds & numeric) != 0);
            if (overlap)
            {
                throw Refuse(path, "two alternatives can begin the same way (both objects, say); only alternatives of different types are supported");
            }

            // The alternatives' kinds do not overlap, so each kind's shape and limits come from the one that has it.
            union.Kinds |= n.Kinds;
            union.Properties ??= n.Kinds.HasFlag(JsonKinds.Object) ? n.Properties : null;
            union.Values ??= n.Kinds.HasFlag(JsonKinds.Object) ? n.Values : null;
            union.KeyNames ??= n.Kinds.HasFlag(JsonKinds.Object) ? n.KeyNames : null;
            (union.MinProperties, union.MaxProperties) = n.Kinds.HasFlag(JsonKinds.Object) ? (n.MinProperties, n.MaxProperties) : (union.MinProperties, union.MaxProperties);
            union.Variants ??= n.Kinds.HasFlag(JsonKinds.Object) ? n.Variants : null;
            union.Items ??= n.Items;
            union.PrefixItems ??= n.PrefixItems;
            union.UniqueItems |= n.Kinds.HasFlag(JsonKinds.Array) && n.UniqueItems;
            (union.MinItems, union.MaxItems) = n.Kinds.HasFlag(JsonKinds.Array) ? (n.MinItems, n.MaxItems) : (union.MinItems, union.MaxItems);
            (union.MinLength, union.MaxLength, union.Pattern) = n.Kinds.HasFlag(JsonKinds.String) ? (n.MinLength, n.MaxLength, n.Pattern) : (union.MinLength, union.MaxLength, union.Pattern);
            union.Range ??= n.Range;
        }

        return union;
    }

    /// <summary>
    /// An alternative that may be an object or something else (<c>"type": ["object", "null"]</c>) as two: the object,
    /// and the rest, so that the object can join other object alternatives (<see cref="Tagged"/>).
    /// </summary>
    private IEnumerable<JsonSchemaNode> ObjectApart(JsonSchemaNode node)
    {
        if (node.Enum is not null || !node.Kinds.HasFlag(JsonKinds.Object) || node.Kinds == JsonKinds.Object || node.Kinds == JsonKinds.Any)
        {
            return [node];
        }

        JsonSchemaNode alone = NewNode(JsonKinds.Object), rest = NewNode(JsonKinds.None);
        alone.TakeShape(node);
        alone.Kinds = JsonKinds.Object;
        rest.TakeShape(node);
        rest.Kinds = node.Kinds & ~JsonKinds.Object;
        return [alone, rest];
    }

    /// <summary>
    /// Several object alternatives told apart by a property each lists with const or enum values no two share (a
    /// discriminator: pydantic's tagged unions, .NET's <c>$type</c>): the answer writes that property first, and its value
    /// picks the alternative the object goes on as (<see cref="JsonSchemaNode.Variants"/>), less that property. The
    /// property is <paramref name="discriminator"/> when the schema names one, else the first such property of the first
    /// alternative, required ones before optional ones.
    /// </summary>
    private JsonSchemaNode Tagged(JsonSchemaNode[] objects, string path, string? discriminator)
    {
        IEnumerable<byte[]> keys = discriminator is not null ? [Written(writer => writer.WriteStringValue(discriminator))]
            : (objects[0].Properties ?? []).Where(p => p.Value.Enum is not null).OrderBy(p => p.Required ? 0 : 1).Select(p => p.Key);
        foreach (byte[] key in keys)
        {
            JsonSchemaProperty?[] tags = [.. objects.Select(o => o.Properties?.FirstOrDefault(p => p.Key.AsSpan().SequenceEqual(key) && p.Value.Enum is not null))];
            if (tags.Any(t => t is null))
            {
                continue;
            }

            byte[][] values = [.. tags.SelectMany(t => t!.Value.Enum!)];
            if (values.Distinct(ByteArrayComparer.Instance).Count() != values.Length)
            {
                continue;
            }

            if (values.Length > MaxAlternatives)
            {
                throw Refuse(path, $"the alternatives' '{Encoding.UTF8.GetString(key)}' values number {values.Length}; at most {MaxAlternatives}");
            }

            JsonSchemaNode tag = NewNode(tags.Aggregate(JsonKinds.None, (kinds, t) => kinds | t!.Value.Kinds));
            tag.Enum = values;
            var variants = new List<JsonSchemaNode>();
            for (int i = 0; i < objects.Length; i++)
            {
                JsonSchemaNode rest = NewNode(JsonKinds.Object);
                rest.Properties = [.. objects[i].Properties!.Where(p => p != tags[i])];
                variants.AddRange(Enumerable.Repeat(rest, tags[i]!.Value.Enum!.Length));
            }

            JsonSchemaNode tagged = NewNode(JsonKinds.Object);
            tagged.Properties = [new JsonSchemaProperty(key, tag, Required: true)];
            tagged.Variants = [.. variants];
            return tagged;
        }

        throw Refuse(path, discriminator is not null
            ? $"the discriminator '{discriminator}' must be a property every object alternative lists, with const or enum values no two of them share"
            : "two object alternatives need a property that tells them apart: one every object alternative lists, with const or enum values no two of them share "
                + "(a discriminator, as {\"kind\": {\"const\": \"cat\"}})");
    }

    private static byte[][] LiteralsOf(JsonKinds kinds) =>
        [.. (kinds.HasFlag(JsonKinds.Null) ? new[] { "null"u8.ToArray() } : []).Concat(kinds.HasFlag(JsonKinds.Boolean) ? ["true"u8.ToArray(), "false"u8.ToArray()] : [])];

    /// <summary><c>$ref</c> to <c>#</c>, <c>#/$defs/NAME</c> or <c>#/definitions/NAME</c>; each compiled once, so a recursive schema is a cycle of nodes.</summary>
    private JsonSchemaNode Reference(JsonElement reference, string path)
    {
        string target = reference.GetString() ?? throw Refuse($"{path}.$ref", "'$ref' must be a string");
        if (_references.TryGetValue(target, out JsonSchemaNode? known))
        {
            return known;
        }

        JsonElement schema = Target(reference, path);

        // A placeholder first, so that a reference back to this one finds it; filled from the compiled schema after.
        JsonSchemaNode placeholder = NewNode(JsonKinds.None);
        _references[target] = placeholder;
        placeholder.TakeShape(Compile(schema, target));
        return placeholder;
    }

    /// <summary>The schema a <c>$ref</c> names: <c>#</c>, <c>#/$defs/NAME</c> or <c>#/definitions/NAME</c> of this schema.</summary>
    private JsonElement Target(JsonElement reference, string path)
    {
        string target = reference.GetString() ?? throw Refuse($"{path}.$ref", "'$ref' must be a string");
        if (target == "#")
        {
            return _root;
        }

        if ((target.StartsWith("#/$defs/", StringComparison.Ordinal) && _root.TryGetProperty("$defs", out JsonElement defs)
                || target.StartsWith("#/definitions/", StringComparison.Ordinal) && _root.TryGetProperty("definitions", out defs))
            && defs.TryGetProperty(target[(target.LastIndexOf('/') + 1)..], out JsonElement schema))
        {
            return schema;
        }

        throw Refuse($"{path}.$ref", $"'{target}' is not '#', '#/$defs/NAME' or '#/definitions/NAME' of this schema");
    }

    private static byte[] Written(Action<Utf8JsonWriter> write)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer, s_writer))
        {
            write(writer);
        }

        return buffer.WrittenSpan.ToArray();
    }

    private sealed class ByteArrayComparer : IEqualityComparer<byte[]>
    {
        public static readonly ByteArrayComparer Instance = new();

        public bool Equals(byte[]? x, byte[]? y) => x.AsSpan().SequenceEqual(y);

        public int GetHashCode(byte[] bytes)
        {
            var hash = default(HashCode);
            hash.AddBytes(bytes);
            return hash.ToHashCode();
        }
    }
}
