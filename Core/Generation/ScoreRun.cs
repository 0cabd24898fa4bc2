using QwenSharp.Backend;
using QwenSharp.Errors;
using QwenSharp.Qwen2;

namespace QwenSharp.Generation;

/// <summary>
/// One sequence being scored (<see cref="Scorer"/>), a forward step of up to a chunk of its tokens at a time, so that a
/// server reads a long one between its generation steps; <see cref="Result"/> once <see cref="Step"/> says it is done.
/// </summary>
public sealed class ScoreRun : IDisposable
{
    private readonly Qwen2Model _model;
    private readonly IReadOnlyList<int> _tokens;
    private readonly int _top;
    private readonly Qwen2VL.VisionPrompt? _vision;
    private readonly float[]? _adapterScales;
    private readonly int _chunk;
    private readonly KvCache _cache;
    private readonly ForwardState _state;
    private readonly TokenBatch _batch;
    private readonly PositionScore[] _positions;
    private double _nllSum;
    private int _targets;
    private int _next;

    /// <inheritdoc cref="Scorer.Score"/>
    public ScoreRun(Qwen2Model model, IReadOnlyList<int> tokens, int top, int chunkTokens = Scorer.DefaultChunkTokens,
        Qwen2VL.VisionPrompt? vision = null, float[]? adapterScales = null)
    {
        if (vision is not null && !vision.Tokens.SequenceEqual(tokens))
        {
            QwenThrow.Argument("the tokens differ from their vision prompt's", nameof(vision));
        }

        if (tokens.Count == 0)
        {
            QwenThrow.Argument("there are no tokens to score", nameof(tokens));
        }

        if (tokens.Count > model.Config.MaxPositionEmbeddings)
        {
            QwenThrow.Argument(
                $"the sequence has {tokens.Count} tokens, more than the model's context of {model.Config.MaxPositionEmbeddings} (max_position_embeddings)",
                nameof(tokens));
        }

        model.ValidateTokens(tokens, "sequence");
        (_model, _tokens, _top, _vision, _adapterScales) = (model, tokens, top, vision, adapterScales);
        _chunk = Math.Min(chunkTokens, tokens.Count);
        _cache = model.CreateKvCache(slots: 1, capacity: tokens.Count);
        _state = model.CreateState(_chunk, _chunk);
        _batch = new TokenBatch(_chunk);
        _positions = new PositionScore[tokens.Count];
    }

    /// <summary>The scores, once every token is read.</summary>
    public ScoreResult Result => _next == _tokens.Count
        ? new ScoreResult(_positions, _targets > 0 ? _nllSum / _targets : null)
        : throw new InvalidOperationException($"{_next} of {_tokens.Count} tokens are scored so far");

    /// <summary>Reads the next chunk of tokens; true once all are read.</summary>
    public bool Step()
    {
        int start = _next, end = Math.Min(start + _chunk, _tokens.Count);
        _batch.Clear();
        for (int p = start; p < end; p++)
        {
            if (_vision is null)
            {
                _batch.Add(_tokens[p], p, slot: 0, wantLogits: true, _adapterScales);
            }
            else
            {
                _vision.AddToBatch(_batch, p, slot: 0, wantLogits: true);
                _batch.SetAdapterScales(_batch.Count - 1, _adapterScales);
            }
        }

        _model.Forward(_batch, _cache, _state);
        for (int p = start; p < end; p++)
        {
            ReadOnlySpan<float> logits = _state.LogitsOf(p - start);
            double logSumExp = LogProbs.LogSumExp(logits);
            int? next = p + 1 < _tokens.Count ? _tokens[p + 1] : null;

            // A picture's pads are not text to predict: no log-prob, and not in the mean (as transformers' labels mask them).
            bool scored = next is int n && !(_vision is not null && n == _model.Config.ImageTokenId);
            double? nextLogprob = scored ? logits[next!.Value] - logSumExp : null;
            _nllSum -= nextLogprob ?? 0;
            _targets += scored ? 1 : 0;
            _positions[p] = new PositionScore(next, nextLogprob, LogProbs.Top(logits, _top, logSumExp), logSumExp);
        }

        _next = end;
        return _next == _tokens.Count;
    }

    public void Dispose()
    {
        _state.Dispose();
        _cache.Dispose();
    }
}
