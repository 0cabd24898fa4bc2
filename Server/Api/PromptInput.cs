using System.Text.Json;

namespace QwenSharp.Server.Api;

/// <summary>What OpenAI's APIs take as a prompt or an input: a text, token ids, or a non-empty list of either.</summary>
internal static class PromptInput
{
    /// <summary>
    /// The texts or token ids of <paramref name="field"/> as ids (text encoded with the tokenizer's special tokens, as
    /// the CLI's generate does, after <paramref name="textPrefix"/>), and as text (for echo). With
    /// <paramref name="truncateTo"/>, texts and id lists are cut to their first that many tokens (a text's special tokens kept).
    /// </summary>
    public static (List<int[]> Ids, List<string> Texts) Read(RequestFields request, ServerState server, string field, string textPrefix = "",
        int? truncateTo = null)
    {
        JsonElement prompt = request.Get(field) ?? throw ApiException.BadField(field, $"'{field}' is missing");
        var ids = new List<int[]>();
        var texts = new List<string>();
        void AddText(JsonElement value, string path)
        {
            string text = RequestFields.Text(value, path);
            ids.Add(truncateTo is int most ? server.Tokenizer.EncodeTruncated(textPrefix + text, most, out _)
                : server.Tokenizer.Encode(textPrefix + text, addSpecialTokens: true));
            texts.Add(text);
        }

        void AddIds(JsonElement value, string path)
        {
            var list = new int[value.GetArrayLength()];
            int i = 0;
            foreach (JsonElement id in value.EnumerateArray())
            {
                if (id.ValueKind != JsonValueKind.Number || !id.TryGetInt32(out list[i]))
                {
                    throw ApiException.BadField($"{path}[{i}]", $"'{path}[{i}]' must be a token id, not {RequestFields.Show(id)}");
                }

                // Ids past the tokenizer's vocabulary are the model's padding rows: no text, never real input.
                if (list[i] < 0 || server.Tokenizer.IdToToken(list[i]) is null)
                {
                    throw ApiException.BadField($"{path}[{i}]", $"'{path}[{i}]' is {list[i]}, not a token of this model's vocabulary (0..{server.Tokenizer.VocabularySize - 1})");
                }

                i++;
            }

            ids.Add(truncateTo is int limit && list.Length > limit ? list[..limit] : list);
            texts.Add(server.Tokenizer.Decode(list));
        }

        switch (prompt.ValueKind)
        {
            case JsonValueKind.String:
                AddText(prompt, field);
                break;
            case JsonValueKind.Array when prompt.GetArrayLength() > 0 && prompt[0].ValueKind == JsonValueKind.Number:
                AddIds(prompt, field);
                break;
            case JsonValueKind.Array when prompt.GetArrayLength() > 0:
                int p = 0;
                foreach (JsonElement item in prompt.EnumerateArray())
                {
                    string path = $"{field}[{p++}]";
                    if (item.ValueKind == JsonValueKind.String)
                    {
                        AddText(item, path);
                    }
                    else if (item.ValueKind == JsonValueKind.Array)
                    {
                        AddIds(item, path);
                    }
                    else
                    {
                        throw ApiException.BadField(path, $"'{path}' must be a string or a list of token ids, not {RequestFields.Kind(item)}");
                    }
                }

                break;
            default:
                throw ApiException.BadField(field, $"'{field}' must be a string, a list of token ids, or a non-empty list of either");
        }

        return (ids, texts);
    }
}
