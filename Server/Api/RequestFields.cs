using System.Globalization;
using System.Text.Json;

namespace QwenSharp.Server.Api;

/// <summary>
/// Strict reading of a request object: every field must be one the endpoint knows (a typo is an error, not
/// a silently ignored setting), given once, and of the right type and range. JSON <c>null</c> counts as not
/// given, as OpenAI's clients send it. Errors name the field by its path (<c>messages[2].content</c>).
/// </summary>
internal readonly struct RequestFields
{
    private readonly JsonElement _object;
    private readonly string _path;

    private RequestFields(JsonElement value, string path)
    {
        _object = value;
        _path = path;
    }

    /// <summary>Checks that <paramref name="value"/> is an object whose fields are all in <paramref name="known"/>.</summary>
    public static RequestFields Of(JsonElement value, string path, IReadOnlySet<string> known)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw ApiException.BadField(path.Length == 0 ? "body" : path, $"{(path.Length == 0 ? "the body" : path)} must be a JSON object, not {Kind(value)}");
        }

        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (JsonProperty property in value.EnumerateObject())
        {
            string name = Join(path, property.Name);
            if (!known.Contains(property.Name))
            {
                throw new ApiException(400, $"unknown field '{name}'", name, "unknown_field");
            }

            if (!seen.Add(property.Name))
            {
                throw ApiException.BadField(name, $"field '{name}' is given twice");
            }
        }

        return new RequestFields(value, path);
    }

    public string PathOf(string name) => Join(_path, name);

    /// <summary>The field's value, or null when it is absent or JSON null.</summary>
    public JsonElement? Get(string name) =>
        _object.TryGetProperty(name, out JsonElement value) && value.ValueKind != JsonValueKind.Null ? value : null;

    public string? String(string name, int maxLength = int.MaxValue)
    {
        if (Get(name) is not JsonElement value)
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.String)
        {
            throw ApiException.BadField(PathOf(name), $"'{PathOf(name)}' must be a string, not {Kind(value)}");
        }

        return Checked(Text(value, PathOf(name)), PathOf(name), maxLength);
    }

    /// <summary>A string field that must be given and not empty (an id, a name): else a 400 saying it is required.</summary>
    public string Required(string name) =>
        String(name) is { Length: > 0 } value ? value : throw ApiException.BadField(PathOf(name), $"'{PathOf(name)}' is required");

    public bool? Bool(string name)
    {
        if (Get(name) is not JsonElement value)
        {
            return null;
        }

        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw ApiException.BadField(PathOf(name), $"'{PathOf(name)}' must be true or false, not {Kind(value)}"),
        };
    }

    public int? Int(string name, int min, int max)
    {
        if (Get(name) is not JsonElement value)
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out long number) || number < min || number > max)
        {
            throw ApiException.BadField(PathOf(name), $"'{PathOf(name)}' must be an integer from {min} to {max}, not {Show(value)}");
        }

        return (int)number;
    }

    public long? Long(string name)
    {
        if (Get(name) is not JsonElement value)
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out long number))
        {
            throw ApiException.BadField(PathOf(name), $"'{PathOf(name)}' must be a 64-bit integer, not {Show(value)}");
        }

        return number;
    }

    public double? Double(string name, double min, double max, bool minExclusive = false)
    {
        if (Get(name) is not JsonElement value)
        {
            return null;
        }

        // JSON has no NaN or infinity; a literal too big for a double reads as infinity and is refused here.
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out double number) || !double.IsFinite(number)
            || number < min || number > max || (minExclusive && number == min))
        {
            string from = minExclusive ? $"above {F(min)}" : $"from {F(min)}";
            throw ApiException.BadField(PathOf(name), $"'{PathOf(name)}' must be a number {from} to {F(max)}, not {Show(value)}");
        }

        return number;
    }

    /// <summary>A string, or a list of strings (OpenAI's <c>stop</c>).</summary>
    public IReadOnlyList<string> StringOrList(string name, int maxCount, int maxLength)
    {
        if (Get(name) is not JsonElement value)
        {
            return [];
        }

        string path = PathOf(name);
        if (value.ValueKind == JsonValueKind.String)
        {
            return [Checked(Text(value, path), path, maxLength)];
        }

        if (value.ValueKind != JsonValueKind.Array)
        {
            throw ApiException.BadField(path, $"'{path}' must be a string or a list of strings, not {Kind(value)}");
        }

        if (value.GetArrayLength() > maxCount)
        {
            throw ApiException.BadField(path, $"'{path}' has {value.GetArrayLength()} entries; at most {maxCount} are allowed");
        }

        var list = new List<string>();
        int i = 0;
        foreach (JsonElement item in value.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.String)
            {
                throw ApiException.BadField($"{path}[{i}]", $"'{path}[{i}]' must be a string, not {Kind(item)}");
            }

            string text = Checked(Text(item, $"{path}[{i}]"), $"{path}[{i}]", maxLength);
            if (text.Length == 0)
            {
                throw ApiException.BadField($"{path}[{i}]", $"'{path}[{i}]' is empty");
            }

            list.Add(text);
            i++;
        }

        return list;
    }

    /// <summary>The value as text for a message: the start of it, so a 10 MB string does not come back in the error.</summary>
    public static string Show(JsonElement value)
    {
        string raw = value.GetRawText();
        return raw.Length > 40 ? raw[..40] + "..." : raw;
    }

    public static string Kind(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "a list",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        _ => "null",
    };

    /// <summary>A JSON string's text; a lone surrogate escape (<c>"\ud800"</c>) is not text and is refused.</summary>
    public static string Text(JsonElement value, string path)
    {
        try
        {
            string text = value.GetString()!;
            for (int i = 0; i < text.Length; i++)
            {
                if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
                {
                    i++;
                }
                else if (char.IsSurrogate(text[i]))
                {
                    throw ApiException.BadField(path, $"'{path}' holds an unpaired UTF-16 surrogate at character {i}");
                }
            }

            return text;
        }
        catch (InvalidOperationException e)
        {
            throw ApiException.BadField(path, $"'{path}' is not valid text: {e.Message}");
        }
    }

    private static string Checked(string text, string path, int maxLength) => text.Length <= maxLength ? text
        : throw ApiException.BadField(path, $"'{path}' is {text.Length} characters long; at most {maxLength} are allowed");

    private static string Join(string path, string name) => path.Length == 0 ? name : $"{path}.{name}";

    private static string F(double value) => value.ToString(CultureInfo.InvariantCulture);
}
