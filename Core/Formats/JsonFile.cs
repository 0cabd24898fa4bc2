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
            string where = string.IsNullOrEmpty(e.Path) || e.Path == "$" ? "" : $" at {e.Path}";
            string line = e.LineNumber is long l ? $" (line {l + 1})" : "";
            QwenThrow.InvalidData($"{fileName}: invalid JSON{where}{line}: {FirstSentence(e.Message)}");
            return null!;
        }

        if (value is null)
        {
            QwenThrow.InvalidData($"{fileName}: expected a JSON object, found null");
        }

        return value;
    }

    private static string FirstSentence(string message)
    {
        int cut = message.IndexOf(" Path:", StringComparison.Ordinal);
        return cut > 0 ? message[..cut] : message;
    }
}
