using System.Text;
using System.Text.Unicode;
using QwenSharp.Tokenization.Decoding;

namespace QwenSharp.Tokenization;

/// <summary>
/// Turns token ids into text one id at a time, for printing while generating. It emits text only once
/// it forms whole characters: the bytes of a character split across tokens (a CJK character, an emoji)
/// are held until the character is complete, so nothing prints as U+FFFD that the full decode would not.
/// The concatenation of everything <see cref="Append"/> and <see cref="Finish"/> return equals
/// <see cref="Tokenizer.Decode(ReadOnlySpan{int}, bool)"/> of the same ids: that method is this class.
/// </summary>
public sealed class StreamingDecoder
{
    private readonly Tokenizer _tokenizer;
    private readonly DecodePlan _plan;
    private readonly bool _skipSpecialTokens;
    private readonly Decoder _utf8 = new UTF8Encoding(false, false).GetDecoder();
    private readonly List<byte> _fallbackBytes = [];
    private readonly StringBuilder _output = new();
    private byte[] _bytes = new byte[64];
    private char[] _chars = new char[64];
    private int _tokensDecoded;
    private int _stripLeft;
    private bool _finished;

    internal StreamingDecoder(Tokenizer tokenizer, DecodePlan plan, bool skipSpecialTokens)
    {
        _tokenizer = tokenizer;
        _plan = plan;
        _skipSpecialTokens = skipSpecialTokens;
        _stripLeft = plan.StripLeading;
    }

    /// <summary>Takes the next id; returns the text that is now complete (often empty).</summary>
    public string Append(int id)
    {
        ObjectDisposedException.ThrowIf(_finished, this);
        _output.Clear();
        AppendCore(id);
        return _output.ToString();
    }

    /// <summary>Ends the stream: returns what was held back (an incomplete character becomes U+FFFD, as in a full decode).</summary>
    public string Finish()
    {
        _output.Clear();
        if (!_finished)
        {
            FlushFallbackBytes();
            if (_plan.ByteLevel)
            {
                int count = _utf8.GetChars([], Buffers.Grow(ref _chars, 4), flush: true);
                Emit(_chars.AsSpan(0, count));
            }

            _finished = true;
        }

        return _output.ToString();
    }

    /// <summary>Decodes all of <paramref name="ids"/> into <paramref name="output"/> and finishes the stream.</summary>
    internal void DecodeAll(ReadOnlySpan<int> ids, StringBuilder output)
    {
        foreach (int id in ids)
        {
            AppendCore(id);
        }

        output.Append(_output);
        output.Append(Finish());
    }

    private void AppendCore(int id)
    {
        string token = _tokenizer.TokenStringOf(id);
        if (_skipSpecialTokens && _tokenizer.IsSpecial(id))
        {
            return;
        }

        bool firstToken = _tokensDecoded++ == 0;
        if (_plan.ByteLevel)
        {
            DecodeByteLevel(token);
            return;
        }

        if (_plan.ByteFallback && PieceBytes.TryParseByteToken(token, out byte b))
        {
            _fallbackBytes.Add(b);
            return;
        }

        FlushFallbackBytes();
        if (_plan.ReplaceFrom is string from && token.Contains(from, StringComparison.Ordinal))
        {
            token = token.Replace(from, firstToken && _plan.DropReplacementInFirstToken ? "" : _plan.ReplaceWith, StringComparison.Ordinal);
        }

        Emit(token);
    }

    /// <summary>Byte-alphabet characters become bytes (a token with any other character is taken as its own UTF-8).</summary>
    private void DecodeByteLevel(string token)
    {
        Span<byte> bytes = Buffers.Grow(ref _bytes, Encoding.UTF8.GetMaxByteCount(token.Length));
        int count = Models.ByteLevelAlphabet.BytesOf(token, bytes);
        int chars = _utf8.GetChars(bytes[..count], Buffers.Grow(ref _chars, count + 4), flush: false);
        Emit(_chars.AsSpan(0, chars));
    }

    private void FlushFallbackBytes()
    {
        if (_fallbackBytes.Count == 0)
        {
            return;
        }

        ReadOnlySpan<byte> run = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_fallbackBytes);
        if (Utf8.IsValid(run))
        {
            Emit(Encoding.UTF8.GetString(run));
        }
        else
        {
            Emit(new string('\uFFFD', run.Length));
        }

        _fallbackBytes.Clear();
    }

    /// <summary>Appends text to this call's output, removing the leading characters a Strip decoder removes.</summary>
    private void Emit(ReadOnlySpan<char> text)
    {
        while (_stripLeft > 0 && !text.IsEmpty)
        {
            if (text[0] != _plan.StripChar)
            {
                _stripLeft = 0;
                break;
            }

            text = text[1..];
            _stripLeft--;
        }

        _output.Append(text);
    }
}
