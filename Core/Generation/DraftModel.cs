using QwenSharp.Backend;
using QwenSharp.Qwen2;

namespace QwenSharp.Generation;

/// <summary>
/// Speculative decoding with a draft model (llama.cpp's <c>--model-draft</c>, vLLM's draft-model speculation,
/// transformers' <c>assistant_model</c>): a smaller model with the same tokenizer guesses the next tokens greedily,
/// and the model checks them in one step with its newest token, as it checks <see cref="PromptLookup"/>'s guesses: each
/// row is chosen from exactly as a step of its own would be, so the tokens are those of plain decoding, sampled or
/// greedy. A step of k + 1 rows reads the large model's weights once; the draft's k one-token steps read its small ones.
/// </summary>
/// <remarks>
/// The draft keeps its own KV cache, one slot per sequence, across generations: each call keeps the longest prefix of
/// what the slot already read that the text still starts with, and reads only the rest (so a conversation's next turn
/// reads only its new tokens, and guesses the model did not take are dropped).
/// </remarks>
public sealed class DraftModel : IDisposable
{
    /// <summary>Rows of one draft step when it catches up with the text (a prompt, in chunks).</summary>
    private const int ChunkRows = 256;

    private readonly ForwardState _state;
    private readonly TokenBatch _batch = new(ChunkRows);
    private KvCache? _cache;
    private List<int>[] _read = [];

    /// <summary>Guesses with <paramref name="model"/>, which the caller keeps and disposes.</summary>
    public DraftModel(Qwen2Model model)
    {
        ArgumentNullException.ThrowIfNull(model);
        Model = model;
        _state = model.CreateState(ChunkRows, 1);
    }

    public Qwen2Model Model { get; }

    /// <summary>Tokens guessed so far, over every call.</summary>
    public long Guessed { get; private set; }

    /// <summary>Makes room for <paramref name="slots"/> sequences of up to <paramref name="positions"/> tokens (kept when they fit).</summary>
    public void Begin(int slots, int positions)
    {
        positions = Math.Min(positions, Model.Config.MaxPositionEmbeddings);
        if (_cache is not null && _cache.Slots >= slots && _cache.Capacity >= positions)
        {
            return;
        }

        int keptSlots = Math.Max(slots, _cache?.Slots ?? 0), keptPositions = Math.Max(positions, _cache?.Capacity ?? 0);
        _cache?.Dispose();
        _cache = null;
        _cache = Model.CreateKvCache(keptSlots, keptPositions);
        _read = [.. Enumerable.Range(0, keptSlots).Select(_ => new List<int>())];
    }

    /// <summary>
    /// Greedy guesses of the tokens after <paramref name="prompt"/> + <paramref name="generated"/> in sequence
    /// <paramref name="slot"/>, up to <paramref name="draft"/>'s length; fewer where the draft's context ends or it
    /// guesses an id at or past <paramref name="vocabulary"/> (the model's). Returns how many.
    /// </summary>
    public int Draft(int slot, IReadOnlyList<int> prompt, IReadOnlyList<int> generated, Span<int> draft, int vocabulary)
    {
        KvCache cache = _cache ?? throw new InvalidOperationException("DraftModel.Begin was not called");
        int length = prompt.Count + generated.Count;
        int room = cache.Capacity - length + 1;   // guess i is read at position length + i - 1 (the last guess is not)
        if (room <= 0 || draft.IsEmpty)
        {
            return 0;
        }

        draft = draft[..Math.Min(draft.Length, room)];

        // Keep what the slot read that the text still starts with, but read the text's last token again: its logits guess.
        List<int> read = _read[slot];
        int kept = 0;
        while (kept < read.Count && kept < length - 1 && read[kept] == At(prompt, generated, kept))
        {
            kept++;
        }

        read.RemoveRange(kept, read.Count - kept);
        cache.Truncate(slot, Math.Min(kept, cache.LengthOf(slot)));
        for (int start = kept; start < length; start += ChunkRows)
        {
            int end = Math.Min(length, start + ChunkRows);
            for (int p = start; p < end; p++)
            {
                int token = At(prompt, generated, p);
                _batch.Add(token, p, slot, wantLogits: p == length - 1);
                read.Add(token);
            }

            Step(cache);
        }

        for (int i = 0; ; i++)
        {
            int next = LogProbs.ArgMax(_state.LogitsOf(0));
            if (next >= vocabulary)
            {
                return i;
            }

            draft[i] = next;
            Guessed++;
            if (i == draft.Length - 1)
            {
                return draft.Length;
            }

            _batch.Add(next, length + i, slot, wantLogits: true);
            read.Add(next);
            Step(cache);
        }
    }

    private void Step(KvCache cache)
    {
        Model.Forward(_batch, cache, _state);
        _batch.Clear();
    }

    private static int At(IReadOnlyList<int> prompt, IReadOnlyList<int> generated, int i) =>
        i < prompt.Count ? prompt[i] : generated[i - prompt.Count];

    public void Dispose()
    {
        _cache?.Dispose();
        _state.Dispose();
    }
}
