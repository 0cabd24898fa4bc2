namespace QwenSharp.Sampling;

/// <summary>
/// Every token's bytes as it adds them to a text, in one block (what a constraint checks tokens against): from the
/// tokenizer's pieces, with no bytes for the tokens no constrained text may hold (special tokens, ids past the
/// tokenizer's vocabulary). Built once per model and shared by every sequence.
/// </summary>
public sealed class TokenBytes
{
    private readonly byte[] _bytes;
    private readonly int[] _starts;
    private readonly int[] _byFirstByte;
    private readonly int[] _firstByteStarts;

    /// <param name="pieces">Token id to its bytes, or null for a token with none.</param>
    public TokenBytes(IReadOnlyList<byte[]?> pieces)
    {
        ArgumentNullException.ThrowIfNull(pieces);
        _starts = new int[pieces.Count + 1];
        long total = 0;
        for (int t = 0; t < pieces.Count; t++)
        {
            _starts[t] = checked((int)total);
            total += pieces[t]?.Length ?? 0;
        }

        _starts[^1] = checked((int)total);
        Longest = pieces.Select(p => p?.Length ?? 0).DefaultIfEmpty(0).Max();
        _bytes = new byte[total];
        for (int t = 0; t < pieces.Count; t++)
        {
            pieces[t]?.CopyTo(_bytes, _starts[t]);
        }

        // The tokens with bytes, grouped by their first byte (in id order within a group).
        _byFirstByte = [.. Enumerable.Range(0, pieces.Count).Where(t => pieces[t] is { Length: > 0 }).OrderBy(t => pieces[t]![0]).ThenBy(t => t)];
        _firstByteStarts = new int[257];
        foreach (int t in _byFirstByte)
        {
            _firstByteStarts[pieces[t]![0] + 1]++;
        }

        for (int b = 0; b < 256; b++)
        {
            _firstByteStarts[b + 1] += _firstByteStarts[b];
        }
    }

    public int Count => _starts.Length - 1;

    /// <summary>The most bytes any one token has.</summary>
    public int Longest { get; }

    /// <summary>The tokens whose bytes begin with <paramref name="first"/> (tokens without bytes are in no group).</summary>
    public ReadOnlySpan<int> StartingWith(byte first) => _byFirstByte.AsSpan(_firstByteStarts[first], _firstByteStarts[first + 1] - _firstByteStarts[first]);

    public ReadOnlySpan<byte> Of(int token) => _bytes.AsSpan(_starts[token], _starts[token + 1] - _starts[token]);
}
