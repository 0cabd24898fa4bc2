using QwenSharp.Backend;
using QwenSharp.Qwen2;

namespace QwenSharp.Generation;

/// <summary>
/// One batch of inputs being embedded (<see cref="Embedder.Start"/>): its own KV cache of as many slots of the longest
/// input as fit one step's tokens, and where each input has got to. Inputs start in order as slots come free. With
/// bidirectional attention each input is read whole in one step (several short ones together) and nothing is cached.
/// </summary>
public sealed class EmbeddingRun : IDisposable
{
    private readonly Embedder _embedder;
    private readonly IReadOnlyList<IReadOnlyList<int>> _inputs;
    private readonly int _dimensions;
    private readonly KvCache? _cache;
    private readonly int[] _slotInput;      // the input each slot is reading, or -1
    private readonly int[] _slotFed;        // tokens of it read so far
    private readonly int[] _rowInput;       // per output row of a step, its input
    private readonly double[][] _sums;      // mean pooling's running sums, per input until it ends
    private readonly float[][] _results;
    private int _nextInput;
    private int _done;

    internal EmbeddingRun(Embedder embedder, IReadOnlyList<IReadOnlyList<int>> inputs, EmbeddingPooling pooling, bool normalize, int dimensions,
        bool bidirectional, float[]? adapterScales)
    {
        Bidirectional = bidirectional;
        AdapterScales = adapterScales;
        Pooling = pooling;
        Normalized = normalize;
        _dimensions = dimensions;
        _embedder = embedder;
        _inputs = inputs;
        TokenCount = inputs.Sum(t => (long)t.Count);

        // Slots enough for a step of average texts, each as long as the longest (the cache's slots are all one size),
        // but no more positions than 8 steps' worth: many short texts beside one long one still share steps, and the
        // cache stays small (2,048 positions at the default step, 230 MB for a 7B model in f32).
        int longest = inputs.Max(t => t.Count);
        int byStep = (int)(embedder.ChunkTokens / ((double)TokenCount / inputs.Count));
        int byMemory = 8 * embedder.ChunkTokens / longest;
        int slots = Math.Clamp(Math.Min(byStep, byMemory), 1, inputs.Count);
        _cache = bidirectional ? null : embedder.Model.CreateKvCache(slots, longest);
        _slotInput = [.. Enumerable.Repeat(-1, slots)];
        _slotFed = new int[slots];
        _rowInput = new int[embedder.Rows];
        _sums = new double[inputs.Count][];
        _results = new float[inputs.Count][];
    }

    public EmbeddingPooling Pooling { get; }

    /// <summary>Whether every token attends to every token of its text (each read whole in one step).</summary>
    public bool Bidirectional { get; }

    /// <summary>Whether each vector is scaled to unit length.</summary>
    public bool Normalized { get; }

    /// <summary>Tokens of all inputs together (what the API reports as usage).</summary>
    public long TokenCount { get; }

    public bool IsDone => _done == _inputs.Count;

    /// <summary>The scale of each of the model's LoRA adapters for these inputs (a server's request), or null for the adapters' own.</summary>
    public float[]? AdapterScales { get; }

    internal bool IsDisposed { get; private set; }

    /// <summary>Each input's embedding, in the inputs' order; complete once <see cref="IsDone"/>.</summary>
    public float[][] Results => _results;

    /// <summary>Runs one forward step over the next tokens of the inputs; true once every input is embedded.</summary>
    public bool Step()
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        if (IsDone)
        {
            return true;
        }

        if (Bidirectional)
        {
            return StepWhole();
        }

        TokenBatch batch = _embedder.Batch;
        batch.Clear();
        int budget = _embedder.ChunkTokens;
        for (int slot = 0; slot < _slotInput.Length && budget > 0; slot++)
        {
            if (_slotInput[slot] < 0)
            {
                if (_nextInput == _inputs.Count)
                {
                    continue;
                }

                _slotInput[slot] = _nextInput++;
                _slotFed[slot] = 0;
            }

            IReadOnlyList<int> tokens = _inputs[_slotInput[slot]];
            int end = Math.Min(tokens.Count, _slotFed[slot] + budget);
            for (int p = _slotFed[slot]; p < end; p++)
            {
                bool output = OutputAt(p, tokens.Count);
                if (output)
                {
                    _rowInput[batch.LogitCount] = _slotInput[slot];
                }

                batch.Add(tokens[p], p, slot, wantLogits: output, AdapterScales);
            }

            budget -= end - _slotFed[slot];
            _slotFed[slot] = end;
        }

        Forward(batch);

        for (int slot = 0; slot < _slotInput.Length; slot++)
        {
            if (_slotInput[slot] is int input && input >= 0 && _slotFed[slot] == _inputs[input].Count)
            {
                Finish(input);
                _slotInput[slot] = -1;
            }
        }

        return IsDone;
    }

    /// <summary>One step of whole inputs, in order, as many as the step holds (the embedder holds the longest).</summary>
    private bool StepWhole()
    {
        TokenBatch batch = _embedder.Batch;
        batch.Clear();
        int first = _nextInput;
        while (_nextInput < _inputs.Count && batch.Count + _inputs[_nextInput].Count <= batch.Capacity)
        {
            int input = _nextInput++;
            IReadOnlyList<int> tokens = _inputs[input];
            for (int p = 0; p < tokens.Count; p++)
            {
                bool output = OutputAt(p, tokens.Count);
                if (output)
                {
                    _rowInput[batch.LogitCount] = input;
                }

                batch.Add(tokens[p], p, slot: input - first, wantLogits: output, AdapterScales);
            }
        }

        Forward(batch);
        for (int input = first; input < _nextInput; input++)
        {
            Finish(input);
        }

        return IsDone;
    }

    /// <summary>Whether the hidden state at <paramref name="position"/> of a text of <paramref name="length"/> tokens is pooled.</summary>
    private bool OutputAt(int position, int length) => Pooling switch
    {
        EmbeddingPooling.Mean => true,
        EmbeddingPooling.Cls => position == 0,
        _ => position == length - 1,
    };

    /// <summary>The step through the model, and each output row into its input's pooling.</summary>
    private void Forward(TokenBatch batch)
    {
        float[] hidden = _embedder.Hidden;
        int size = _embedder.Model.Config.HiddenSize;
        _embedder.Model.ForwardHidden(batch, _cache, _embedder.State, hidden, Bidirectional);
        for (int r = 0; r < batch.LogitCount; r++)
        {
            Pool(_rowInput[r], hidden.AsSpan(r * size, size));
        }
    }

    private void Pool(int input, ReadOnlySpan<float> row)
    {
        // Whole rows: a Dense module maps all of the pooled vector, and only its output is cut to the dimensions asked.
        if (Pooling != EmbeddingPooling.Mean)
        {
            _results[input] = row.ToArray();
            return;
        }

        double[] sum = _sums[input] ??= new double[row.Length];
        for (int i = 0; i < sum.Length; i++)
        {
            sum[i] += row[i];
        }
    }

    private void Finish(int input)
    {
        if (Pooling == EmbeddingPooling.Mean)
        {
            double[] sum = _sums[input];
            double count = _inputs[input].Count;
            _results[input] = [.. sum.Select(v => (float)(v / count))];
            _sums[input] = null!;
        }

        foreach (EmbeddingDense dense in _embedder.Model.EmbeddingConfig.Dense)
        {
            _results[input] = dense.Apply(_results[input]);
        }

        if (_results[input].Length > _dimensions)
        {
            _results[input] = _results[input][.._dimensions];
        }

        if (Normalized)
        {
            Normalize(_results[input]);
        }

        _done++;
    }

    /// <summary>Scales to unit length, as sentence-transformers' <c>Normalize</c> (a zero vector stays zero).</summary>
    public static void Normalize(Span<float> vector)
    {
        double squares = 0;
        foreach (float v in vector)
        {
            squares += (double)v * v;
        }

        double scale = 1 / Math.Max(Math.Sqrt(squares), 1e-12);
        for (int i = 0; i < vector.Length; i++)
        {
            vector[i] = (float)(vector[i] * scale);
        }
    }

    public void Dispose()
    {
        if (!IsDisposed)
        {
            IsDisposed = true;
            _cache?.Dispose();
        }
    }
}
