namespace QwenSharp.Tokenization.Models;

/// <summary>Token strings and ids, both ways; lookups by span allocate nothing.</summary>
internal sealed class Vocabulary
{
    private readonly Dictionary<string, int> _ids;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _idsBySpan;
    private readonly string?[] _tokens;

    public Vocabulary(Dictionary<string, int> ids)
    {
        _ids = ids;
        _idsBySpan = ids.GetAlternateLookup<ReadOnlySpan<char>>();
        int size = ids.Count == 0 ? 0 : ids.Values.Max() + 1;
        _tokens = new string?[size];
        foreach ((string token, int id) in ids)
        {
            _tokens[id] = token;
        }
    }

    /// <summary>One more than the largest id.</summary>
    public int Size => _tokens.Length;

    public bool TryGetId(ReadOnlySpan<char> token, out int id) => _idsBySpan.TryGetValue(token, out id);

    public string? TokenOf(int id) => (uint)id < (uint)_tokens.Length ? _tokens[id] : null;
}
