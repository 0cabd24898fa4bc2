using System.Text;
using System.Text.Json;

namespace QwenSharp.Cli;

/// <summary>Writes one JSON document, then a newline, to the output (Utf8JsonWriter: no reflection, AOT-safe).</summary>
internal static class JsonOutput
{
    public static void Write(TextWriter output, Action<Utf8JsonWriter> write)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            write(writer);
        }

        output.WriteLine(Encoding.UTF8.GetString(stream.GetBuffer(), 0, (int)stream.Length));
    }

    /// <summary>The <c>"top"</c> alternatives of a position, as score and generate --logprobs print them.</summary>
    public static void WriteTop(this Utf8JsonWriter writer, IReadOnlyList<QwenSharp.Generation.TokenLogprob> top)
    {
        writer.WriteStartArray("top");
        foreach (QwenSharp.Generation.TokenLogprob alternative in top)
        {
            writer.WriteStartObject();
            writer.WriteNumber("id", alternative.Id);
            writer.WriteNumberOrNull("logprob", alternative.Logprob);
            writer.WriteEndObject();
        }

        writer.WriteEndArray();
    }

    /// <summary>A number, or null when it is not finite (JSON has no NaN or infinity).</summary>
    public static void WriteNumberOrNull(this Utf8JsonWriter writer, string name, double? value)
    {
        if (value is double v && double.IsFinite(v))
        {
            writer.WriteNumber(name, v);
        }
        else
        {
            writer.WriteNull(name);
        }
    }
}
