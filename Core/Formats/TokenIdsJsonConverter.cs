using System.Text.Json;
using System.Text.Json.Serialization;

namespace QwenSharp.Formats;

/// <summary>
/// Hugging Face writes a token id field either as one integer or as a list (<c>"eos_token_id": [151645, 151643]</c>);
/// both read as an array here.
/// </summary>
internal sealed class TokenIdsJsonConverter : JsonConverter<int[]>
{
    public override int[]? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        switch (reader.TokenType)
        {
            case JsonTokenType.Null:
                return null;
            case JsonTokenType.Number:
                return [reader.GetInt32()];
            case JsonTokenType.StartArray:
                var ids = new List<int>();
                while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                {
                    if (reader.TokenType != JsonTokenType.Number)
                    {
                        throw new JsonException($"expected a token id (an integer), found {reader.TokenType}");
                    }

                    ids.Add(reader.GetInt32());
                }

                return [.. ids];
            default:
                throw new JsonException($"expected a token id or a list of token ids, found {reader.TokenType}");
        }
    }

    public override void Write(Utf8JsonWriter writer, int[] value, JsonSerializerOptions options)
    {
        writer.WriteStartArray();
        foreach (int id in value)
        {
            writer.WriteNumberValue(id);
        }

        writer.WriteEndArray();
    }
}
