using System.Text;
using System.Text.Json;
using QwenSharp.Tokenization;

namespace QwenSharp.Server.Api;

/// <summary>
/// OpenAI's Predicted Outputs (<c>prediction</c>: <c>{"type": "content", "content": TEXT or [{"type": "text", "text":
/// TEXT}, ...]}</c>): text the answer is expected to largely repeat, such as a file being edited. Its tokens become
/// text that prompt lookup searches beside the prompt, so runs of the answer that follow it are guessed and checked in
/// the same step. The answer is the one the request gets without it; the usage counts the guesses taken and dropped
/// (<c>accepted_prediction_tokens</c>, <c>rejected_prediction_tokens</c>).
/// </summary>
internal static class Prediction
{
    private static readonly HashSet<string> s_fields = ["type", "content"];
    private static readonly HashSet<string> s_partFields = ["type", "text"];

    /// <summary>
    /// The prediction's tokens, or null when the request has none. One longer than <paramref name="context"/> tokens is
    /// refused: no answer could repeat it, and lookup searches it at every step.
    /// </summary>
    public static int[]? Read(RequestFields request, Tokenizer tokenizer, int context)
    {
        if (request.Get("prediction") is not JsonElement value)
        {
            return null;
        }

        RequestFields prediction = RequestFields.Of(value, "prediction", s_fields);
        if (prediction.String("type") is not "content")
        {
            throw ApiException.BadField("prediction.type", "'prediction.type' must be \"content\"");
        }

        string text = prediction.Get("content") switch
        {
            JsonElement { ValueKind: JsonValueKind.String } content => RequestFields.Text(content, "prediction.content"),
            JsonElement { ValueKind: JsonValueKind.Array } parts => Parts(parts),
            JsonElement other => throw ApiException.BadField("prediction.content", $"'prediction.content' must be text or a list of text parts, not {RequestFields.Kind(other)}"),
            null => throw ApiException.BadField("prediction.content", "'prediction' needs 'content'"),
        };

        // As text of the answer: special tokens' names in it are plain text, as they would be in an answer.
        int[] tokens = tokenizer.Encode(text, parseSpecialTokens: false);
        return tokens.Length <= context ? tokens
            : throw ApiException.BadField("prediction.content", $"the prediction has {tokens.Length} tokens, more than this server's context of {context} tokens");
    }

    private static string Parts(JsonElement parts)
    {
        var text = new StringBuilder();
        int i = 0;
        foreach (JsonElement part in parts.EnumerateArray())
        {
            string path = $"prediction.content[{i++}]";
            RequestFields fields = RequestFields.Of(part, path, s_partFields);
            if (fields.String("type") is not "text")
            {
                throw ApiException.BadField($"{path}.type", $"'{path}.type' must be \"text\"");
            }

            text.Append(fields.String("text") ?? throw ApiException.BadField($"{path}.text", $"'{path}' needs 'text'"));
        }

        return text.ToString();
    }
}
