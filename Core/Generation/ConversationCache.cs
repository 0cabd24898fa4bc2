using QwenSharp.Backend;
using QwenSharp.Qwen2;

namespace QwenSharp.Generation;

/// <summary>
/// A KV cache kept between generations of one conversation: the tokens it holds, so the next turn only
/// reads what is new. A prompt that starts with those tokens reuses them; where it diverges, the cache
/// is cut back to the common prefix. Not thread-safe: one generation at a time.
/// </summary>
public sealed class ConversationCache : IDisposable
{
    private const int InitialCapacity = 4096;
    private readonly List<int> _tokens = [];
    private float[]? _adapterScales;

    public KvCache? Cache { get; private set; }

    /// <summary>The tokens whose keys and values the cache holds, in order.</summary>
    public IReadOnlyList<int> Tokens => _tokens;

    /// <summary>
    /// Makes the cache ready for <paramref name="prompt"/> with room for <paramref name="capacity"/> positions;
    /// returns how many of its first tokens are already there (never all: the last must be read for its logits).
    /// What was computed at other LoRA adapter scales than <paramref name="adapterScales"/> (null: the adapters' own) is not reused.
    /// </summary>
    public int Prepare(Qwen2Model model, IReadOnlyList<int> prompt, int capacity, float[]? adapterScales = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(prompt);
        if (Cache is null || Cache.Capacity < capacity)
        {
            // Room for a growing conversation: 4096 positions (or the model's context) at first, then doubling.
            // A cache that has to grow starts empty, so that turn reads its whole prompt once.
            int size = Math.Min(model.Config.MaxPositionEmbeddings, Math.Max(capacity, Cache is null ? InitialCapacity : 2 * Cache.Capacity));
            Cache?.Dispose();
            Cache = model.CreateKvCache(1, Math.Max(size, capacity));
            _tokens.Clear();
        }

        int common = 0;
        bool sameScales = TokenBatch.SameAdapterScales(_adapterScales, adapterScales);
        _adapterScales = adapterScales;
        int limit = sameScales ? Math.Min(_tokens.Count, prompt.Count - 1) : 0;
        while (common < limit && _tokens[common] == prompt[common])
        {
            common++;
        }

        Cache.Truncate(0, common);
        _tokens.RemoveRange(common, _tokens.Count - common);
        return common;
    }

    /// <summary>Records what the cache holds after a generation: the prompt and every new token but the last (never fed back).</summary>
    public void Commit(IReadOnlyList<int> prompt, IReadOnlyList<int> generated)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(generated);
        _tokens.Clear();
        _tokens.AddRange(prompt);
        for (int i = 0; i < generated.Count - 1; i++)
        {
            _tokens.Add(generated[i]);
        }
    }

    /// <summary>
    /// Writes the tokens the cache holds and their keys and values to <paramref name="stream"/> as a slot file
    /// (<see cref="SlotFile"/>, what llama-server's slot save writes here too); the bytes written.
    /// </summary>
    public long Save(Qwen2Model model, Stream stream)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (Cache is null)
        {
            // Nothing held yet: a file of no positions, of this model's shape.
            using KvCache empty = model.CreateKvCache(1, 1);
            return SlotFile.Write(stream, empty, 0, [], null);
        }

        // The scales as numbers: null here means the adapters' own, which a later load must not read as none.
        float[]? scales = _adapterScales ?? (model.Adapters.Count > 0 ? [.. model.Adapters.Select(a => a.Scale)] : null);
        return SlotFile.Write(stream, Cache, 0, _tokens, scales);
    }

    /// <summary>
    /// Replaces what the cache holds with a slot file's tokens, keys and values, read from <paramref name="stream"/>
    /// (<paramref name="name"/> in errors): checked whole before anything is kept (<see cref="SlotFile.ReadHeader"/>), then
    /// its last position computed again by <paramref name="model"/> and compared (<see cref="SlotFile.Verify"/>), so a file
    /// of another model is refused. The cache is made to fit the file, with room to grow. Returns the positions restored;
    /// on an error the cache holds nothing.
    /// </summary>
    public int Load(Qwen2Model model, Stream stream, string name)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(stream);
        int context = model.Config.MaxPositionEmbeddings;
        var shape = new SlotFile.Shape(model.Config.NumHiddenLayers, model.Config.KvDim, model.KvCacheType, context);
        SlotFile.Header header = SlotFile.ReadHeader(stream, name, shape, model.Config.VocabSize, model.Adapters.Count);

        int n = header.Tokens.Length;
        int size = Math.Min(context, Math.Max(InitialCapacity, n + 1));
        if (Cache is null || Cache.Capacity < size)
        {
            Cache?.Dispose();
            Cache = null;
            Cache = model.CreateKvCache(1, size);
        }

        _tokens.Clear();
        Cache.Reset(0);
        try
        {
            using ForwardState state = model.CreateState(1, 1);
            (_, float[]? scales) = SlotFile.Restore(stream, name, header, Cache, 0, model, state, new TokenBatch(1));
            _tokens.AddRange(header.Tokens);
            _adapterScales = scales is not null && scales.AsSpan().SequenceEqual([.. model.Adapters.Select(a => a.Scale)]) ? null : scales;
            return n;
        }
        catch
        {
            Cache.Reset(0);
            _tokens.Clear();
            throw;
        }
    }

    public void Dispose()
    {
        Cache?.Dispose();
        Cache = null;
        _tokens.Clear();
    }
}
