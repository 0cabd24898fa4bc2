using System.Text;
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
}
