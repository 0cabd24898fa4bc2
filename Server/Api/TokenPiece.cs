using System.Text;
using System.Text.Json;
using QwenSharp.Generation;
using QwenSharp.Tokenization;

namespace QwenSharp.Server.Api;

/// <summary>
/// A token as log-probs list it: its own bytes (<see cref="Tokenizer.TokenBytes"/>), and those bytes as text (U+FFFD
/// where they are part of a character). An id past the tokenizer's vocabulary, one of the padding rows a model's
/// embedding is rounded up with, has no text, as in the answer's text; sampling can pick one, and listing it must not
/// fail the request.
/// </summary>
internal static class TokenPiece
{
    public static byte[] Bytes(Tokenizer tokenizer, int id) => tokenizer.IdToToken(id) is null ? [] : tokenizer.TokenBytes(id);

    public static string Text(Tokenizer tokenizer, int id) => Encoding.UTF8.GetString(Bytes(tokenizer, id));

    /// <summary>
    /// An array <paramref name="name"/> of tokens' log-probs, each with its most likely alternatives in <c>top_logprobs</c>
    /// (OpenAI's chat <c>logprobs.content</c>; llama-server's <c>completion_probabilities</c>, whose tokens carry their
    /// <paramref name="ids"/> too). With <paramref name="probabilities"/>, each as its probability in <c>prob</c> and
    /// the alternatives in <c>top_probs</c> (llama-server's <c>post_sampling_probs</c>).
    /// </summary>
    public static void WriteLogprobs(Utf8JsonWriter w, string name, IEnumerable<TokenLogprobs> logprobs, Tokenizer tokenizer, bool ids, bool probabilities = false)
    {
        w.WriteStartArray(name);
        foreach (TokenLogprobs token in logprobs)
        {
            w.WriteStartObject();
            WriteToken(w, tokenizer, token.Id, token.Logprob, ids, probabilities);
            w.WriteStartArray(probabilities ? "top_probs" : "top_logprobs");
            foreach (TokenLogprob alternative in token.Top)
            {
                w.WriteStartObject();
                WriteToken(w, tokenizer, alternative.Id, alternative.Logprob, ids, probabilities);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        w.WriteEndArray();
    }

    /// <summary>A token's fields: its text, log-prob (or probability) and own bytes, which join across tokens into the characters.</summary>
    private static void WriteToken(Utf8JsonWriter w, Tokenizer tokenizer, int id, double logprob, bool withId, bool probability)
    {
        if (withId)
        {
            w.WriteNumber("id", id);
        }

        byte[] bytes = Bytes(tokenizer, id);
        w.WriteString("token", Encoding.UTF8.GetString(bytes));
        if (probability)
        {
            w.WriteNumber("prob", Math.Exp(logprob));
        }
        else
        {
            w.WriteNumber("logprob", logprob);
        }

        w.WriteStartArray("bytes");
        foreach (byte b in bytes)
        {
            w.WriteNumberValue(b);
        }

        w.WriteEndArray();
    }
}
