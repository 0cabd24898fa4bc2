using System.Text;
using QwenSharp.Generation;
using QwenSharp.Tokenization;

namespace QwenSharp;

/// <summary>
/// The text of each generated sequence as it grows, and the stop strings in it: a sequence stops once its
/// text contains one, even when the string spans several tokens, and its text is cut before it. While
/// streaming, text that could be the start of a stop string is held back until it is known not to be.
/// </summary>
internal sealed class StopStrings : IStopCondition
{
    private readonly Tokenizer _tokenizer;
    private readonly IReadOnlyList<string> _stops;
    private readonly int _longest;
    private readonly StreamingDecoder[] _decoders;
    private readonly StringBuilder[] _texts;
    private readonly int[] _cut;
    private readonly int[] _released;
    private readonly string?[] _found;

    private readonly CodeCompletionStops? _code;
    private readonly int[] _lineChecked;
    private readonly long[] _firstToken;

    public StopStrings(Tokenizer tokenizer, IReadOnlyList<string> stops, int sequences, CodeCompletionStops? code = null)
    {
        _tokenizer = tokenizer;
        _stops = stops;
        _code = code is { MinIndent: > 0 } or { TimeLimit: not null } ? code : null;
        _lineChecked = new int[sequences];
        _firstToken = new long[sequences];
        _longest = stops.Count == 0 ? 0 : stops.Max(s => s.Length);
        _decoders = [.. Enumerable.Range(0, sequences).Select(_ => tokenizer.CreateStreamingDecoder(skipSpecialTokens: true))];
        _texts = [.. Enumerable.Range(0, sequences).Select(_ => new StringBuilder())];
        _cut = [.. Enumerable.Repeat(-1, sequences)];
        _released = new int[sequences];
        _found = new string?[sequences];
    }

    /// <summary>
    /// Feeds a sequence's prompt to its decoder without making it part of the text, so the continuation is
    /// spaced as in the whole text (sentencepiece drops the leading space of a text's first word); returns
    /// the prompt's own text, for echoing.
    /// </summary>
    public string Prime(int sequence, IReadOnlyList<int> prompt)
    {
        var echo = new StringBuilder();
        foreach (int id in prompt)
        {
            echo.Append(_decoders[sequence].Append(id));
        }

        return echo.ToString();
    }

    /// <summary>Reads the sequence's newest token; true when its text now holds a stop string.</summary>
    public bool ShouldStop(int sequence, IReadOnlyList<int> generated) => Read(sequence, generated[^1]);

    /// <summary>Appends the text of a whole finished sequence (beam search chooses its sequences at the end).</summary>
    public void ReadAll(int sequence, IReadOnlyList<int> ids)
    {
        foreach (int id in ids)
        {
            Read(sequence, id);
        }
    }

    private bool Read(int sequence, int token)
    {
        if (_cut[sequence] >= 0)
        {
            return true;    // stopped already: the cut stays where it was
        }

        StringBuilder text = _texts[sequence];
        int before = text.Length;
        if (_tokenizer.IdToToken(token) is not null)
        {
            text.Append(_decoders[sequence].Append(token));
        }

        if (_code is not null && CodeStops(sequence, text))
        {
            return true;
        }

        if (_stops.Count == 0 || text.Length == before)
        {
            return false;
        }

        // Only a match that ends in the new text is new: search from where one could start.
        int from = Math.Max(0, before - _longest + 1);
        string window = text.ToString(from, text.Length - from);
        int earliest = -1;
        foreach (string stop in _stops)
        {
            int at = window.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (earliest < 0 || at < earliest))
            {
                earliest = at;
                _found[sequence] = stop;
            }
        }

        if (earliest < 0)
        {
            return false;
        }

        _cut[sequence] = from + earliest;
        return true;
    }

    /// <summary>
    /// llama-server's stops for code completion (<see cref="CodeCompletionStops"/>): a line begun after a newline whose
    /// first character comes before <see cref="CodeCompletionStops.MinIndent"/> ends the text before that character; past
    /// <see cref="CodeCompletionStops.TimeLimit"/> from the first token, the text ends once it holds a newline.
    /// </summary>
    private bool CodeStops(int sequence, StringBuilder text)
    {
        _firstToken[sequence] = _firstToken[sequence] == 0 ? System.Diagnostics.Stopwatch.GetTimestamp() : _firstToken[sequence];
        if (_code!.MinIndent > 0)
        {
            for (int newline = IndexOf(text, '\n', _lineChecked[sequence]); newline >= 0; newline = IndexOf(text, '\n', _lineChecked[sequence]))
            {
                int at = newline + 1;
                while (at < text.Length && text[at] is ' ' or '\t')
                {
                    at++;
                }

                if (at == text.Length)
                {
                    break;  // the line's first character is still to come
                }

                if (at - newline - 1 < _code.MinIndent)
                {
                    _cut[sequence] = at;
                    return true;
                }

                _lineChecked[sequence] = at;
            }
        }

        if (_code.TimeLimit is TimeSpan limit && System.Diagnostics.Stopwatch.GetElapsedTime(_firstToken[sequence]) > limit && IndexOf(text, '\n', 0) >= 0)
        {
            _cut[sequence] = text.Length;
            return true;
        }

        return false;
    }

    private static int IndexOf(StringBuilder text, char c, int from)
    {
        for (int i = from; i < text.Length; i++)
        {
            if (text[i] == c)
            {
                return i;
            }
        }

        return -1;
    }

    /// <summary>Text of the sequence that can be printed now: complete, and not possibly the start of a stop string.</summary>
    public string Release(int sequence, bool finished)
    {
        StringBuilder text = _texts[sequence];
        if (finished && _cut[sequence] < 0)
        {
            text.Append(_decoders[sequence].Finish());
        }

        int end = _cut[sequence] >= 0 ? _cut[sequence] : finished ? text.Length : Math.Max(_released[sequence], text.Length - Math.Max(0, _longest - 1));
        if (end > _released[sequence] && end < text.Length && char.IsHighSurrogate(text[end - 1]))
        {
            // Never hand out half of a surrogate pair.
            end--;
        }

        string released = text.ToString(_released[sequence], Math.Max(0, end - _released[sequence]));
        _released[sequence] = Math.Max(_released[sequence], end);
        return released;
    }

    /// <summary>The stop string that ended the sequence (the earliest in its text; of two there, the first given), or null (none did, or a code completion stop).</summary>
    public string? Found(int sequence) => _cut[sequence] >= 0 ? _found[sequence] : null;

    /// <summary>The whole text of a finished sequence, cut before its stop string.</summary>
    public string FinalText(int sequence)
    {
        Release(sequence, finished: true);
        StringBuilder text = _texts[sequence];
        return text.ToString(0, _cut[sequence] >= 0 ? _cut[sequence] : text.Length);
    }
}

/// <summary>
/// llama-server's stops for code completion (its <c>n_indent</c> and <c>t_max_predict_ms</c>): the least indentation a
/// line after the first may have (0: any), and the time after the first token past which the answer ends at a newline.
/// </summary>
internal sealed record CodeCompletionStops(int MinIndent, TimeSpan? TimeLimit);
