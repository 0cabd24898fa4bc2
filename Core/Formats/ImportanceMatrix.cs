using QwenSharp.Errors;
using QwenSharp.Formats.Gguf;

namespace QwenSharp.Formats;

/// <summary>
/// An importance matrix as llama-imatrix computes it and llama-quantize reads it (<c>--imatrix</c>): for each matrix of
/// the model, by its GGUF name ("blk.0.attn_q.weight"), the sum over a text's tokens of each input column's squared
/// activation, and how many tokens went in. Quantizing with it weighs each column's rounding error by its mean squared
/// activation (<see cref="Numerics.ImportanceQuantizer"/>). Files: <see cref="ImportanceMatrixFile"/>.
/// </summary>
public sealed class ImportanceMatrix
{
    /// <param name="SumOfSquares">Σ x² per column (llama.cpp's <c>in_sum2</c>), one run of columns per expert (one for a dense model).</param>
    /// <param name="Sums">Σ x per column (<c>in_sum</c>), where the file has them.</param>
    /// <param name="Counts">Tokens per expert (<c>counts</c>): one for a dense model.</param>
    public sealed record Entry(float[] SumOfSquares, float[]? Sums, long[] Counts)
    {
        /// <summary>Columns of the matrix (the values per expert).</summary>
        public int Columns => SumOfSquares.Length / Counts.Length;
    }

    public ImportanceMatrix(IReadOnlyDictionary<string, Entry> entries, IReadOnlyList<string> datasets, int chunkCount, int chunkSize,
        bool legacy = false, string? path = null)
    {
        Entries = entries;
        Datasets = datasets;
        ChunkCount = chunkCount;
        ChunkSize = chunkSize;
        IsLegacy = legacy;
        Path = path;
    }

    /// <summary>The file it was read from (null for one collected here).</summary>
    public string? Path { get; }

    /// <summary>By GGUF tensor name, in name order.</summary>
    public IReadOnlyDictionary<string, Entry> Entries { get; }

    /// <summary>The text files it was computed on.</summary>
    public IReadOnlyList<string> Datasets { get; }

    /// <summary>Chunks of <see cref="ChunkSize"/> tokens it was computed on (llama-imatrix's <c>imatrix.chunk_count</c>).</summary>
    public int ChunkCount { get; }

    /// <summary>Tokens per chunk; 0 where the file does not say (the legacy format).</summary>
    public int ChunkSize { get; }

    /// <summary>
    /// Read from llama.cpp's first format (imatrix.dat), which stores each column's mean square times the number of
    /// chunks: <see cref="Entry.Counts"/> then holds the chunks.
    /// </summary>
    public bool IsLegacy { get; }

    /// <summary>
    /// llama-quantize's <c>--include-weights</c> / <c>--exclude-weights</c>: only the entries whose names contain one of
    /// <paramref name="include"/> (all when empty), less those whose names contain one of <paramref name="exclude"/>.
    /// </summary>
    public ImportanceMatrix Filter(IReadOnlyCollection<string> include, IReadOnlyCollection<string> exclude)
    {
        ArgumentNullException.ThrowIfNull(include);
        ArgumentNullException.ThrowIfNull(exclude);
        var kept = new SortedDictionary<string, Entry>(StringComparer.Ordinal);
        foreach ((string name, Entry entry) in Entries)
        {
            bool included = include.Count == 0 || include.Any(part => name.Contains(part, StringComparison.Ordinal));
            if (included && !exclude.Any(part => name.Contains(part, StringComparison.Ordinal)))
            {
                kept.Add(name, entry);
            }
        }

        return new ImportanceMatrix(kept, Datasets, ChunkCount, ChunkSize, IsLegacy, Path);
    }

    /// <summary>
    /// Several matrices as one, as llama-imatrix's <c>--in-file</c> loads them into its sums: each entry's sums of
    /// squares, sums and token counts added (a legacy file's mean squares × calls become sums over
    /// <paramref name="chunkSize"/>-token calls: its values × chunk size, its calls × chunk size tokens; a single count
    /// spread over an entry's experts), the datasets listed in order, and the chunks the largest count makes. Sums
    /// (<c>in_sum</c>) are kept where every matrix has them. An entry of another size in one of them is an error naming
    /// the file and the entry.
    /// </summary>
    public static ImportanceMatrix Combine(IReadOnlyList<ImportanceMatrix> matrices, int chunkSize)
    {
        ArgumentNullException.ThrowIfNull(matrices);
        ArgumentOutOfRangeException.ThrowIfLessThan(chunkSize, 1);
        var squares = new SortedDictionary<string, double[]>(StringComparer.Ordinal);
        var sums = new Dictionary<string, double[]?>(StringComparer.Ordinal);
        var counts = new Dictionary<string, long[]>(StringComparer.Ordinal);
        var datasets = new List<string>();
        foreach (ImportanceMatrix matrix in matrices)
        {
            string source = matrix.Path ?? "the matrix collected here";
            long scale = matrix.IsLegacy ? chunkSize : 1;
            foreach ((string name, Entry entry) in matrix.Entries)
            {
                if (!squares.TryGetValue(name, out double[]? total))
                {
                    squares[name] = total = new double[entry.SumOfSquares.Length];
                    sums[name] = entry.Sums is null ? null : new double[entry.Sums.Length];
                    counts[name] = new long[entry.Counts.Length];
                }
                else if (total.Length != entry.SumOfSquares.Length)
                {
                    QwenThrow.InvalidData($"{source}: entry '{name}' has {entry.SumOfSquares.Length} values where the matrices before it have {total.Length}: they were computed for different models");
                }

                long[] tokens = counts[name];
                if (tokens.Length == 1 && entry.Counts.Length > 1)
                {
                    counts[name] = tokens = [.. Enumerable.Repeat(tokens[0], entry.Counts.Length)];
                }
                else if (tokens.Length != entry.Counts.Length && entry.Counts.Length != 1)
                {
                    QwenThrow.InvalidData($"{source}: entry '{name}' has {entry.Counts.Length} experts' counts where the matrices before it have {tokens.Length}");
                }

                for (int j = 0; j < total.Length; j++)
                {
                    total[j] += (double)entry.SumOfSquares[j] * scale;
                }

                if (sums[name] is double[] sum)
                {
                    if (entry.Sums is null)
                    {
                        sums[name] = null;
                    }
                    else
                    {
                        for (int j = 0; j < sum.Length; j++)
                        {
                            sum[j] += entry.Sums[j];
                        }
                    }
                }

                for (int e = 0; e < tokens.Length; e++)
                {
                    tokens[e] += entry.Counts[entry.Counts.Length == 1 ? 0 : e] * scale;
                }
            }

            datasets.AddRange(matrix.Datasets);
        }

        var entries = new SortedDictionary<string, Entry>(StringComparer.Ordinal);
        foreach ((string name, double[] total) in squares)
        {
            entries[name] = new Entry([.. total.Select(v => (float)v)], sums[name] is double[] sum ? [.. sum.Select(v => (float)v)] : null, counts[name]);
        }

        long most = counts.Values.SelectMany(c => c).DefaultIfEmpty(0).Max();
        return new ImportanceMatrix(entries, datasets, (int)Math.Min(most / chunkSize, int.MaxValue), chunkSize);
    }

    /// <summary>
    /// Adds the keys llama-quantize writes into a file it quantized with an importance matrix: the matrix's file and first
    /// dataset (at most 127 bytes each, as its overrides hold them), how many entries it used and over how many chunks.
    /// </summary>
    public void AddQuantizeKeys(GgufWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.Add("quantize.imatrix.file", Clip(Path ?? ""));
        if (Datasets.Count > 0)
        {
            writer.Add("quantize.imatrix.dataset", Clip(Datasets[0]));
        }

        writer.Add("quantize.imatrix.entries_count", (uint)Entries.Count);
        if (ChunkCount > 0)
        {
            writer.Add("quantize.imatrix.chunks_count", (uint)ChunkCount);
        }
    }

    private static string Clip(string text)
    {
        byte[] bytes = System.Text.Encoding.UTF8.GetBytes(text);
        return bytes.Length <= 127 ? text : System.Text.Encoding.UTF8.GetString(bytes, 0, 127);
    }

    /// <summary>
    /// The weights llama-quantize gives the quantizer of <paramref name="tensor"/> (each column's mean squared activation;
    /// 1 for an expert no token reached), or null where the matrix has no entry for it (llama-quantize then quantizes it
    /// unweighted). A entry of another width than the tensor's <paramref name="columns"/> is an error naming both.
    /// </summary>
    public float[]? ImportanceOf(string tensor, long columns, string source)
    {
        if (!Entries.TryGetValue(tensor, out Entry? entry))
        {
            return null;
        }

        if (entry.Counts.Length != 1 || entry.SumOfSquares.Length != columns)
        {
            QwenThrow.InvalidData($"{source}: the importance matrix's entry for tensor '{tensor}' has {entry.SumOfSquares.Length} values{(entry.Counts.Length == 1 ? "" : $" for {entry.Counts.Length} experts")}, the tensor {columns} columns: it was computed for another model");
        }

        long count = entry.Counts[0];
        var weights = new float[columns];
        for (int j = 0; j < weights.Length; j++)
        {
            weights[j] = count > 0 ? entry.SumOfSquares[j] / count : IsLegacy ? entry.SumOfSquares[j] : 1f;
        }

        return weights;
    }
}
