using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using QwenSharp.Errors;

namespace QwenSharp.Formats;

/// <summary>Reads a small JSON file through source-generated metadata; every fault names the file.</summary>
internal static class JsonFile
{
    public static T Read<T>(string path, JsonTypeInfo<T> typeInfo)
        where T : class
    {
        if (!File.Exists(path))
        {
            QwenThrow.FileNotFound($"{path}: file not found", path);
        }

        return Parse(File.ReadAllBytes(path), Path.GetFileName(path), typeInfo);
    }

    public static T Parse<T>(ReadOnlySpan<byte> json, string fileName, JsonTypeInfo<T> typeInfo)
        where T : class
    {
        T? value;
        try
        {
            value = JsonSerializer.Deserialize(json, typeInfo);
        }
        catch (JsonException e)
        {
            string line = e.LineNumber is long l ? $" (line {l + 1})" : "";
            if (WrongType(e, json) is string wrongType)
            {
                QwenThrow.InvalidData($"{fileName}{line}: {wrongType}");
            }

            string where = string.IsNullOrEmpty(e.Path) || e.Path == "$" ? "" : $" at {e.Path}";
            QwenThrow.InvalidData($"{fileName}: invalid JSON{where}{line}: {FirstSentence(e.Message)}");
            return null!;
        }

        if (value is null)
        {
            QwenThrow.InvalidData($"{fileName}: expected a JSON object, found null");
        }

        return value;
    }

    /// <summary>
    /// "'temperature' is "hot", expected a number" for a value of the wrong type, rather than the serializer's
    /// "could not be converted to System.Nullable`1[System.Double]"; null for other errors.
    /// </summary>
    private static string? WrongType(JsonException e, ReadOnlySpan<byte> json)
    {
        const string Marker = "could not be converted to ";
        int at = e.Message.IndexOf(Marker, StringComparison.Ordinal);
        if (at < 0 || string.IsNullOrEmpty(e.Path) || !e.Path.StartsWith("$.", StringComparison.Ordinal))
        {
            return null;
        }

        string target = e.Message[(at + Marker.Length)..].TrimEnd('.');
        string expected = target switch
        {
            _ when target.Contains("[]", StringComparison.Ordinal) => "a list of integers",
            _ when target.Contains("Double", StringComparison.Ordinal) || target.Contains("Single", StringComparison.Ordinal) => "a number",
            _ when target.Contains("Int", StringComparison.Ordinal) => "an integer",
            _ when target.Contains("Boolean", StringComparison.Ordinal) => "true or false",
            _ when target.Contains("String", StringComparison.Ordinal) => "a string",
            _ => "another type",
        };
        string key = e.Path[2..];
        int bracket = key.IndexOf('[', StringComparison.Ordinal);
        string property = bracket >= 0 ? key[..bracket] : key;
        string found = "";
        try
        {
            using var document = JsonDocument.Parse(json.ToArray());
            if (document.RootElement.ValueKind == JsonValueKind.Object && document.RootElement.TryGetProperty(property, out JsonElement value))
            {
                string text = value.GetRawText();
                found = $" is {(text.Length > 40 ? text[..40] + "..." : text)},";
            }
        }
        catch (JsonException)
        {
            // Not parseable as a document either: name the key alone.
        }

        return $"'{key}'{found} expected {expected}";
    }

    private static string FirstSentence(string message)
    {
        int cut = message.IndexOf(" Path:", StringComparison.Ordinal);
        return cut > 0 ? message[..cut] : message;
    }
}
