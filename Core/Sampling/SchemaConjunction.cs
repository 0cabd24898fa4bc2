using System.Text.Json;

namespace QwenSharp.Sampling;

/// <summary>
/// Schemas that must all hold, written as one (<c>allOf</c>, and an <c>anyOf</c> alternative with the keywords beside
/// its list): <c>required</c> lists and <c>properties</c> are joined, annotations are taken from the first that has
/// them, and any other keyword must be the same wherever it is given, or the combination is refused by path. A schema
/// with <c>additionalProperties: false</c> allows only its own properties, so the others' are left out (JSON Schema's
/// reading, which surprises many: such a schema beside one that adds a property closes that property off).
/// </summary>
internal static class SchemaConjunction
{
    /// <param name="parts">Each schema (an object, or true) and where it is, for errors.</param>
    /// <param name="isAnnotation">Whether a keyword holds nothing (titles, descriptions): the first given is kept.</param>
    public static JsonElement Merge(IReadOnlyList<(JsonElement Schema, string Where)> parts, Func<string, bool> isAnnotation)
    {
        var keywords = new List<string>();
        var given = new Dictionary<string, List<(JsonElement Value, string Where)>>();
        foreach ((JsonElement schema, string where) in parts)
        {
            if (schema.ValueKind == JsonValueKind.True)
            {
                continue;
            }

            if (schema.ValueKind != JsonValueKind.Object)
            {
                throw new ArgumentException($"{where}: a schema must be an object or true, not {schema.ValueKind}", "schema");
            }

            foreach (JsonProperty keyword in schema.EnumerateObject())
            {
                if (!given.TryGetValue(keyword.Name, out List<(JsonElement, string)>? values))
                {
                    keywords.Add(keyword.Name);
                    given[keyword.Name] = values = [];
                }

                values.Add((keyword.Value, where));
            }
        }

        HashSet<string>? open = OpenProperties(given);
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            foreach (string keyword in keywords)
            {
                List<(JsonElement Value, string Where)> values = given[keyword];
                writer.WritePropertyName(keyword);
                if (keyword == "required")
                {
                    WriteRequired(writer, values);
                }
                else if (keyword == "properties")
                {
                    WriteProperties(writer, values, open);
                }
                else if (keyword == "additionalProperties" && open is not null)
                {
                    writer.WriteBooleanValue(false);
                }
                else
                {
                    if (!isAnnotation(keyword) && values.FirstOrDefault(v => !JsonElement.DeepEquals(v.Value, values[0].Value)) is { Where: string differs })
                    {
                        throw new ArgumentException($"{differs}.{keyword}: '{keyword}' differs between schemas that must all hold here; not supported", "schema");
                    }

                    values[0].Value.WriteTo(writer);
                }
            }

            writer.WriteEndObject();
        }

        using JsonDocument merged = JsonDocument.Parse(buffer.WrittenMemory);
        return merged.RootElement.Clone();
    }

    /// <summary>
    /// The property names every schema with <c>additionalProperties: false</c> lists (null: none has it); other
    /// <c>additionalProperties</c> beside schemas of their own properties are refused.
    /// </summary>
    private static HashSet<string>? OpenProperties(Dictionary<string, List<(JsonElement Value, string Where)>> given)
    {
        if (!given.TryGetValue("additionalProperties", out List<(JsonElement Value, string Where)>? limits))
        {
            return null;
        }

        if (limits.FirstOrDefault(l => l.Value.ValueKind != JsonValueKind.False) is { Where: string where })
        {
            throw new ArgumentException($"{where}.additionalProperties: only 'additionalProperties': false is supported in schemas that must all hold together", "schema");
        }

        // Which schema each "properties" came from is not kept by keyword, so match them by where they were given.
        List<(JsonElement Value, string Where)> maps = given.TryGetValue("properties", out List<(JsonElement Value, string Where)>? found) ? found : [];
        HashSet<string>? open = null;
        foreach ((_, string closedAt) in limits)
        {
            HashSet<string> own = [.. maps.Where(m => m.Where == closedAt && m.Value.ValueKind == JsonValueKind.Object).SelectMany(m => m.Value.EnumerateObject().Select(p => p.Name))];
            open = open is null ? own : [.. open.Intersect(own)];
        }

        if (given.TryGetValue("required", out List<(JsonElement Value, string Where)>? required)
            && required.SelectMany(r => r.Value.ValueKind == JsonValueKind.Array ? r.Value.EnumerateArray().Select(n => (Name: n.GetString(), r.Where)) : [])
                .FirstOrDefault(n => n.Name is not null && !open!.Contains(n.Name)) is { Name: string closedOff } missing)
        {
            throw new ArgumentException($"{missing.Where}.required: '{closedOff}' is required, but a schema joined here with 'additionalProperties': false does not list it: no object meets both", "schema");
        }

        return open;
    }

    private static void WriteRequired(Utf8JsonWriter writer, List<(JsonElement Value, string Where)> lists)
    {
        var names = new List<string>();
        foreach ((JsonElement list, string where) in lists)
        {
            if (list.ValueKind != JsonValueKind.Array)
            {
                throw new ArgumentException($"{where}.required: 'required' must list property names", "schema");
            }

            names.AddRange(list.EnumerateArray().Select(n => n.ValueKind == JsonValueKind.String ? n.GetString()!
                : throw new ArgumentException($"{where}.required: 'required' must list property names", "schema")));
        }

        writer.WriteStartArray();
        foreach (string name in names.Distinct())
        {
            writer.WriteStringValue(name);
        }

        writer.WriteEndArray();
    }

    private static void WriteProperties(Utf8JsonWriter writer, List<(JsonElement Value, string Where)> maps, HashSet<string>? open)
    {
        var written = new Dictionary<string, JsonElement>();
        writer.WriteStartObject();
        foreach ((JsonElement map, string where) in maps)
        {
            if (map.ValueKind != JsonValueKind.Object)
            {
                throw new ArgumentException($"{where}.properties: 'properties' must be an object", "schema");
            }

            foreach (JsonProperty property in map.EnumerateObject().Where(p => open is null || open.Contains(p.Name)))
            {
                if (written.TryGetValue(property.Name, out JsonElement earlier))
                {
                    if (!JsonElement.DeepEquals(earlier, property.Value))
                    {
                        throw new ArgumentException($"{where}.properties.{property.Name}: the property is described differently by schemas that must all hold here; not supported", "schema");
                    }

                    continue;
                }

                written[property.Name] = property.Value;
                property.WriteTo(writer);
            }
        }

        writer.WriteEndObject();
    }
}
