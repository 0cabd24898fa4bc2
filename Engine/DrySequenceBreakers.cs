using System.Runtime.CompilerServices;
using System.Text;
using QwenSharp.Sampling;
using QwenSharp.Tokenization;

namespace QwenSharp;

/// <summary>
/// DRY's sequence breakers, from their texts to token ids as llama.cpp makes them: every token whose text holds a
/// breaker holds it whole; every token whose text ends with the breaker's beginning begins it, the rest of the breaker
/// (tokenized alone, at most 20 tokens) its tail. A breaker is at most 40 bytes (longer ones are cut, as llama.cpp cuts
/// them). Made once per tokenizer and list: a scan of the whole vocabulary.
/// </summary>
public static class DrySequenceBreakers
{
    /// <summary>llama.cpp's default breakers: newline, colon, double quote, asterisk.</summary>
    public static IReadOnlyList<string> Default { get; } = ["\n", ":", "\"", "*"];

    private const int MaxBytes = 40;
    private const int MaxTail = 20;

    private static readonly ConditionalWeakTable<Tokenizer, Dictionary<string, DryBreakers>> s_made = [];

    /// <summary>
    /// <paramref name="options"/> with DRY's breakers made from <paramref name="overrides"/>' texts (llama.cpp's default
    /// where none are given) by <paramref name="tokenizer"/>; unchanged where DRY is off or there is no tokenizer.
    /// </summary>
    public static SamplingOptions WithDryBreakers(this SamplingOptions options, SamplingOverrides overrides, Tokenizer? tokenizer)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(overrides);
        return options.DryMultiplier == 0 || tokenizer is null ? options
            : options with { DryBreakers = Of(tokenizer, overrides.DrySequenceBreakers ?? Default) };
    }

    /// <summary>The breakers <paramref name="texts"/> as <paramref name="tokenizer"/>'s token ids (empty texts left out).</summary>
    public static DryBreakers Of(Tokenizer tokenizer, IReadOnlyList<string> texts)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(texts);
        Dictionary<string, DryBreakers> made = s_made.GetValue(tokenizer, _ => []);
        string key = string.Join('\0', texts);
        lock (made)
        {
            if (made.TryGetValue(key, out DryBreakers? known))
            {
                return known;
            }
        }

        var breakers = new DryBreakers();
        byte[][] pieces = TokenPieces.Of(tokenizer);
        foreach (string text in texts.Where(t => t.Length > 0))
        {
            byte[] breaker = Encoding.UTF8.GetBytes(text);
            Add(tokenizer, pieces, breaker.Length > MaxBytes ? breaker[..MaxBytes] : breaker, breakers);
        }

        lock (made)
        {
            made[key] = breakers;
        }

        return breakers;
    }

    private static void Add(Tokenizer tokenizer, byte[][] pieces, byte[] breaker, DryBreakers breakers)
    {
        for (int token = 0; token < pieces.Length; token++)
        {
            ReadOnlySpan<byte> piece = pieces[token];
            if (piece.IndexOf(breaker) >= 0)
            {
                breakers.Add(token, []);
                continue;
            }

            // Each place the piece's end is the breaker's beginning: the token begins the breaker, the rest follows.
            for (int at = piece.IndexOf(breaker[0]); at >= 0; at = NextIndex(piece, breaker[0], at))
            {
                int overlap = piece.Length - at;
                if (overlap < breaker.Length && piece[at..].SequenceEqual(breaker.AsSpan(0, overlap)))
                {
                    int[] tail = tokenizer.Encode(Encoding.UTF8.GetString(breaker, overlap, breaker.Length - overlap), addSpecialTokens: false, parseSpecialTokens: false);
                    breakers.Add(token, tail.Length > MaxTail ? tail[..MaxTail] : tail);
                }
            }
        }
    }

    private static int NextIndex(ReadOnlySpan<byte> piece, byte value, int after)
    {
        int next = piece[(after + 1)..].IndexOf(value);
        return next < 0 ? -1 : after + 1 + next;
    }
}
