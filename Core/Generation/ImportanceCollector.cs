using QwenSharp.Backend;
using QwenSharp.Formats;
using QwenSharp.Qwen2;

namespace QwenSharp.Generation;

/// <summary>
/// Collects an importance matrix as llama-imatrix does (<see cref="ImportanceMatrix"/>): given as the forward pass's
/// <see cref="Tap"/>, it adds up each column's x and x² over every token of every step at the input of each of the
/// layers' products, under the GGUF names of the matrices that read that input (q, k and v share theirs; so do gate and
/// up). The LM head's input only when asked for and the head is a matrix of its own: llama-imatrix's
/// <c>--process-output</c> sees a head tied to the embedding under the embedding's name and leaves it out. Sums in f64.
/// </summary>
public sealed class ImportanceCollector
{
    private static readonly Dictionary<string, string[]> s_readers = new(StringComparer.Ordinal)
    {
        ["attn_norm"] = ["attn_q", "attn_k", "attn_v"],
        ["attn_out"] = ["attn_output"],
        ["ffn_norm"] = ["ffn_gate", "ffn_up"],
        ["ffn_act"] = ["ffn_down"],
    };

    private readonly Dictionary<(string Tap, int Layer), Sums> _sums = [];
    private readonly bool _output;
    private float[] _download = [];

    /// <param name="processOutput">Also the LM head's input (<c>output.weight</c>), where <paramref name="config"/> has a head of its own.</param>
    public ImportanceCollector(Qwen2Config config, bool processOutput)
    {
        ArgumentNullException.ThrowIfNull(config);
        _output = processOutput && !config.TieWordEmbeddings;
    }

    /// <summary>The tap to hand <see cref="Qwen2Model.Forward"/>.</summary>
    public ActivationTap Tap => Observe;

    /// <summary>Tokens seen so far (rows through the layers).</summary>
    public long Tokens => _sums.TryGetValue(("attn_norm", 0), out Sums? first) ? first.Count : 0;

    private void Observe(string name, int layer, Activation value, IBackend backend)
    {
        if (!s_readers.ContainsKey(name) && !(_output && name == "final_norm"))
        {
            return;
        }

        int rows = value.Rows, cols = value.Buffer.Cols;
        float[]? values = value.Buffer.HostArray;
        if (values is null)
        {
            if (_download.Length < rows * cols)
            {
                _download = new float[rows * cols];
            }

            backend.Download(value, _download.AsSpan(0, rows * cols));
            values = _download;
        }

        if (!_sums.TryGetValue((name, layer), out Sums? sums))
        {
            sums = new Sums(cols);
            _sums.Add((name, layer), sums);
        }

        sums.Add(values.AsSpan(0, rows * cols), rows);
    }

    /// <summary>What was collected, each matrix under its GGUF name, for a text of <paramref name="datasets"/> read in <paramref name="chunks"/> chunks of <paramref name="chunkSize"/> tokens.</summary>
    public ImportanceMatrix ToMatrix(IReadOnlyList<string> datasets, int chunks, int chunkSize)
    {
        var entries = new SortedDictionary<string, ImportanceMatrix.Entry>(StringComparer.Ordinal);
        foreach (((string tap, int layer), Sums sums) in _sums)
        {
            string[] names = tap == "final_norm" ? ["output.weight"] : [.. s_readers[tap].Select(m => $"blk.{layer}.{m}.weight")];
            foreach (string name in names)
            {
                entries[name] = new ImportanceMatrix.Entry([.. sums.Squares.Select(v => (float)v)], [.. sums.Values.Select(v => (float)v)], [sums.Count]);
            }
        }

        return new ImportanceMatrix(entries, datasets, chunks, chunkSize);
    }

    private sealed class Sums(int cols)
    {
        public double[] Squares { get; } = new double[cols];

        public double[] Values { get; } = new double[cols];

        public long Count { get; private set; }

        /// <summary>Each row's values and squares added in f64, SIMD-wide (a step of a 7B model adds half a billion).</summary>
        public void Add(ReadOnlySpan<float> rows, int count)
        {
            int cols = Squares.Length, wide = System.Numerics.Vector<float>.Count;
            Span<System.Numerics.Vector<double>> values = System.Runtime.InteropServices.MemoryMarshal.Cast<double, System.Numerics.Vector<double>>(Values.AsSpan());
            Span<System.Numerics.Vector<double>> squares = System.Runtime.InteropServices.MemoryMarshal.Cast<double, System.Numerics.Vector<double>>(Squares.AsSpan());
            int vectorCols = cols / wide * wide;
            for (int r = 0; r < count; r++)
            {
                ReadOnlySpan<float> row = rows.Slice(r * cols, cols);
                ReadOnlySpan<System.Numerics.Vector<float>> x = System.Runtime.InteropServices.MemoryMarshal.Cast<float, System.Numerics.Vector<float>>(row[..vectorCols]);
                for (int v = 0; v < x.Length; v++)
                {
                    System.Numerics.Vector.Widen(x[v], out System.Numerics.Vector<double> low, out System.Numerics.Vector<double> high);
                    values[2 * v] += low;
                    values[(2 * v) + 1] += high;
                    squares[2 * v] += low * low;
                    squares[(2 * v) + 1] += high * high;
                }

                for (int j = vectorCols; j < cols; j++)
                {
                    double value = row[j];
                    Values[j] += value;
                    Squares[j] += value * value;
                }
            }

            Count += count;
        }
    }
}
