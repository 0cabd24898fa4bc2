using QwenSharp.Backend;
using QwenSharp.Qwen2;

namespace QwenSharp.Tests.Support;

/// <summary>
/// Decode steps of two sequences side by side, as generation runs them: slot 0 holds an 8-token prompt, and each
/// step feeds one token to slot 0 at position p and one to slot 1 at p - 8. For tests of what one step costs.
/// </summary>
internal sealed class TwoSequenceDecode : IDisposable
{
    private readonly Qwen2Model _model;
    private readonly KvCache _cache;
    private readonly ForwardState _state;
    private readonly TokenBatch _batch = new(8);

    public TwoSequenceDecode(Qwen2Model model)
    {
        _model = model;
        _cache = model.CreateKvCache(2, 64);
        _state = model.CreateState(8, 2);
        for (int p = 0; p < 8; p++)
        {
            _batch.Add(100 + p, p, 0, wantLogits: p == 7);
        }

        model.Forward(_batch, _cache, _state);
    }

    /// <summary>The first position <see cref="Step"/> takes.</summary>
    public const int FirstPosition = 8;

    public void Step(int position)
    {
        _batch.Clear();
        _batch.Add(5, position, 0, wantLogits: true);
        _batch.Add(6, position - 8, 1, wantLogits: true);
        _model.Forward(_batch, _cache, _state);
    }

    public void Dispose()
    {
        _state.Dispose();
        _cache.Dispose();
    }
}
