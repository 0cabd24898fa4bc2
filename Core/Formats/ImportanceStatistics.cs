using System.Text.RegularExpressions;

namespace QwenSharp.Formats;

/// <summary>
/// llama-imatrix's <c>--show-statistics</c>: per tensor of an importance matrix, statistics of its columns' mean squared
/// activations (Σx² ÷ tokens, per expert), and per layer their averages weighted by the tensors' columns. As llama.cpp
/// says of its own, they describe the squared activations, not the activations.
/// </summary>
public static partial class ImportanceStatistics
{
    /// <summary>A mean squared activation at or below this counts as inactive (llama-imatrix's threshold).</summary>
    public const double ActiveThreshold = 1e-5;

    /// <summary>One tensor's statistics.</summary>
    /// <param name="Name">The GGUF tensor name (<c>blk.3.ffn_down.weight</c>).</param>
    /// <param name="Layer">The block number; -1 for a tensor outside the blocks (<c>output.weight</c>).</param>
    /// <param name="Tensor">The name within the block (<c>ffn_down</c>), or the whole name outside the blocks.</param>
    /// <param name="Sum">Σ of the mean squared activations (llama-imatrix's Σ(Act²)).</param>
    /// <param name="Min">The smallest.</param>
    /// <param name="Max">The largest.</param>
    /// <param name="Mean">Their mean (μ).</param>
    /// <param name="Deviation">Their population standard deviation (σ).</param>
    /// <param name="ActiveFraction">The fraction above <see cref="ActiveThreshold"/>.</param>
    /// <param name="Count">How many (N: columns × experts with tokens).</param>
    /// <param name="Entropy">Shannon entropy in bits of the values as a distribution (each ÷ <paramref name="Sum"/>).</param>
    /// <param name="NormalizedEntropy"><paramref name="Entropy"/> ÷ log₂ <paramref name="Count"/> (0 for one value).</param>
    /// <param name="ZdScore">The fraction more than one σ above the mean (Layer-Wise Quantization's z-score distribution, §3.1).</param>
    /// <param name="CosineSimilarity">
    /// Cosine similarity of the tensor's Σx² with the same tensor's in the block before; null in block 0, outside the blocks,
    /// or where the block before has no such tensor of the same size.
    /// </param>
    public sealed record TensorStatistics(string Name, int Layer, string Tensor, double Sum, double Min, double Max, double Mean, double Deviation,
        double ActiveFraction, int Count, double Entropy, double NormalizedEntropy, double ZdScore, double? CosineSimilarity);

    /// <summary>A block's averages over its tensors, each weighted by its <see cref="TensorStatistics.Count"/>.</summary>
    /// <param name="Layer">The block number.</param>
    /// <param name="Sum">The weighted mean of the tensors' <see cref="TensorStatistics.Sum"/> (llama-imatrix's μΣ(Act²)).</param>
    /// <param name="ZdScore">The weighted mean of their <see cref="TensorStatistics.ZdScore"/>.</param>
    /// <param name="CosineSimilarity">The weighted mean of their <see cref="TensorStatistics.CosineSimilarity"/> over the tensors that have one; null where none has.</param>
    public sealed record LayerStatistics(int Layer, double Sum, double ZdScore, double? CosineSimilarity);

    /// <summary>
    /// The statistics of every tensor of <paramref name="matrix"/> with tokens, by layer then name; the names of those
    /// without any (every count 0) go to <paramref name="empty"/>.
    /// </summary>
    public static IReadOnlyList<TensorStatistics> Of(ImportanceMatrix matrix, out IReadOnlyList<string> empty)
    {
        var tensors = new List<TensorStatistics>();
        var none = new List<string>();
        foreach ((string name, ImportanceMatrix.Entry entry) in matrix.Entries)
        {
            double[] values = MeanSquares(entry);
            if (values.Length == 0)
            {
                none.Add(name);
                continue;
            }

            (int layer, string tensor) = Split(name);
            double sum = 0, squares = 0, min = double.PositiveInfinity, max = double.NegativeInfinity;
            int active = 0;
            foreach (double v in values)
            {
                sum += v;
                squares += v * v;
                min = Math.Min(min, v);
                max = Math.Max(max, v);
                active += Math.Abs(v) > ActiveThreshold ? 1 : 0;
            }

            double mean = sum / values.Length;
            double deviation = Math.Sqrt(Math.Max(0, (squares / values.Length) - (mean * mean)));
            double entropy = 0;
            int above = 0;
            foreach (double v in values)
            {
                double p = sum > 0 ? v / sum : 0;
                entropy -= p > 0 ? p * Math.Log2(p) : 0;
                above += deviation > 0 && (v - mean) / deviation > 1 ? 1 : 0;
            }

            tensors.Add(new TensorStatistics(name, layer, tensor, sum, min, max, mean, deviation, (double)active / values.Length, values.Length, entropy,
                values.Length > 1 ? entropy / Math.Log2(values.Length) : 0, (double)above / values.Length,
                CosineWithLayerBefore(matrix, name, layer, entry)));
        }

        empty = none;
        return [.. tensors.OrderBy(t => t.Layer).ThenBy(t => t.Tensor, StringComparer.Ordinal)];
    }

    /// <summary>Each block's averages over its tensors' statistics (<paramref name="tensors"/> from <see cref="Of"/>), by layer.</summary>
    public static IReadOnlyList<LayerStatistics> PerLayer(IReadOnlyList<TensorStatistics> tensors) =>
        [.. tensors.Where(t => t.Layer >= 0).GroupBy(t => t.Layer).OrderBy(g => g.Key).Select(g =>
        {
            double count = g.Sum(t => (double)t.Count);
            TensorStatistics[] withCosine = [.. g.Where(t => t.CosineSimilarity is not null)];
            double cosineCount = withCosine.Sum(t => (double)t.Count);
            return new LayerStatistics(g.Key, g.Sum(t => t.Count * t.Sum) / count, g.Sum(t => t.Count * t.ZdScore) / count,
                withCosine.Length == 0 ? null : withCosine.Sum(t => t.Count * t.CosineSimilarity!.Value) / cosineCount);
        })];

    /// <summary>Each column's Σx² ÷ its expert's tokens, leaving out the experts without any.</summary>
    private static double[] MeanSquares(ImportanceMatrix.Entry entry)
    {
        int columns = entry.Columns;
        var values = new List<double>(entry.SumOfSquares.Length);
        for (int e = 0; e < entry.Counts.Length; e++)
        {
            if (entry.Counts[e] > 0)
            {
                for (int j = 0; j < columns; j++)
                {
                    values.Add(entry.SumOfSquares[(e * columns) + j] / (double)entry.Counts[e]);
                }
            }
        }

        return [.. values];
    }

    /// <summary><c>blk.N.NAME.weight</c> → (N, NAME); any other name → (-1, the name without <c>.weight</c>).</summary>
    private static (int Layer, string Tensor) Split(string name)
    {
        Match match = BlockName().Match(name);
        return match.Success && int.TryParse(match.Groups[1].ValueSpan, out int layer)
            ? (layer, match.Groups[2].Value)
            : (-1, name.EndsWith(".weight", StringComparison.Ordinal) ? name[..^".weight".Length] : name);
    }

    /// <summary>The cosine of the entry's Σx² and the same tensor's in block <paramref name="layer"/> − 1, where there is one of the same size.</summary>
    private static double? CosineWithLayerBefore(ImportanceMatrix matrix, string name, int layer, ImportanceMatrix.Entry entry)
    {
        if (layer <= 0)
        {
            return null;
        }

        // The same name after "blk.N.", in block N − 1.
        string before = $"blk.{layer - 1}.{name[(name.IndexOf('.', "blk.".Length) + 1)..]}";
        if (!matrix.Entries.TryGetValue(before, out ImportanceMatrix.Entry? previous) || previous.SumOfSquares.Length != entry.SumOfSquares.Length)
        {
            return null;
        }

        double dot = 0, a = 0, b = 0;
        for (int i = 0; i < entry.SumOfSquares.Length; i++)
        {
            dot += (double)entry.SumOfSquares[i] * previous.SumOfSquares[i];
            a += (double)entry.SumOfSquares[i] * entry.SumOfSquares[i];
            b += (double)previous.SumOfSquares[i] * previous.SumOfSquares[i];
        }

        return a > 0 && b > 0 ? dot / Math.Sqrt(a * b) : null;
    }

    [GeneratedRegex(@"^blk\.(\d+)\.(.+?)(\.weight)?$")]
    private static partial Regex BlockName();
}
