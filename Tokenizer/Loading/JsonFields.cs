using System.Text.Json;

namespace QwenSharp.Tokenization.Loading;

/// <summary>Reading fields of a JSON file with errors that name the file and the field.</summary>
internal static class JsonFields
{
    public static JsonDocument Parse(string path)
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (FileNotFoundException)
        {
            throw new FileNotFoundException($"{path}: file not found", path);
        }

        try
        {
            return JsonDocument.Parse(bytes, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip, MaxDepth = 256 });
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON: {e.Message}", e);
        }
    }

    /// <summary>The property, or null when it is missing or JSON null.</summary>
    public static JsonElement? Optional(JsonElement element, string name) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty(name, out JsonElement value) && value.ValueKind != JsonValueKind.Null
            ? value : null;

    public static JsonElement Required(JsonElement element, string name, string where) =>
        Optional(element, name) ?? throw new InvalidDataException($"{where}: missing field '{name}'");

    public static string? OptionalString(JsonElement element, string name, string where)
    {
        JsonElement? value = Optional(element, name);
        if (value is null)
        {
            return null;
        }

        return value.Value.ValueKind == JsonValueKind.String ? value.Value.GetString()
            : throw new InvalidDataException($"{where}: field '{name}' must be a string, found {Describe(value.Value)}");
    }

    public static string RequiredString(JsonElement element, string name, string where) =>
        OptionalString(element, name, where) ?? throw new InvalidDataException($"{where}: missing field '{name}'");

    public static bool OptionalBool(JsonElement element, string name, bool fallback, string where)
    {
        JsonElement? value = Optional(element, name);
        return value?.ValueKind switch
        {
            null => fallback,
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new InvalidDataException($"{where}: field '{name}' must be true or false, found {Describe(value.Value)}"),
        };
    }

    public static int RequiredInt(JsonElement element, string name, string where)
    {
        JsonElement value = Required(element, name, where);
        return value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out int result) ? result
            : throw new InvalidDataException($"{where}: field '{name}' must be an integer, found {Describe(value)}");
    }

    public static string Describe(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => $"\"{value.GetString()}\"",
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "a list",
        _ => value.GetRawText(),
    };
}
