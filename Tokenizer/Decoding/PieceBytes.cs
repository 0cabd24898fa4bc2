using System.Globalization;
using System.Text;
using QwenSharp.Tokenization.Models;

namespace QwenSharp.Tokenization.Decoding;

/// <summary>
/// The bytes one token adds to a decoded text where it is not the text's first token, by the same <see cref="DecodePlan"/>
/// as <see cref="StreamingDecoder"/>: a byte-level token's bytes (part of a character, when a character spans tokens), a
/// byte-fallback token's one byte, a sentencepiece token with its ▁ made a space. It is what llama.cpp's
/// <c>token_to_piece</c> gives, and what OpenAI's log-probs list as a token's bytes. A token's text alone,
/// <c>Decode([id])</c>, differs: a sentencepiece text drops its first space, and part of a character decodes as U+FFFD.
/// </summary>
internal static class PieceBytes
{
    public static byte[] Of(DecodePlan plan, string token)
    {
        if (plan.ByteLevel)
        {
            var bytes = new byte[Encoding.UTF8.GetMaxByteCount(token.Length)];
            return bytes[..ByteLevelAlphabet.BytesOf(token, bytes)];
        }

        if (plan.ByteFallback && TryParseByteToken(token, out byte b))
        {
            return [b];
        }

        if (plan.ReplaceFrom is string from)
        {
            token = token.Replace(from, plan.ReplaceWith, StringComparison.Ordinal);
        }

        return Encoding.UTF8.GetBytes(token);
    }

    /// <summary>Whether <paramref name="token"/> is a byte-fallback token, <c>&lt;0xXX&gt;</c>, and its byte.</summary>
    public static bool TryParseByteToken(string token, out byte value)
    {
        value = 0;
        return token.Length == 6 && token.StartsWith("<0x", StringComparison.Ordinal) && token[5] == '>'
            && byte.TryParse(token.AsSpan(3, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);
    }
}
