using System.Text.Json;
using QwenSharp.Errors;

namespace QwenSharp.Qwen2;

/// <summary>
/// How an embedding model compares two embeddings: <c>similarity_fn_name</c> in its
/// <c>config_sentence_transformers.json</c>, as sentence-transformers' <c>model.similarity</c> reads it (cosine where
/// the model names none). The larger, the more alike: the distances come negated, as sentence-transformers gives them.
/// </summary>
public enum EmbeddingSimilarity
{
    Cosine,
    Dot,
    Euclidean,
    Manhattan,
}

/// <summary>The similarity functions, in float64 over float32 embeddings.</summary>
public static class EmbeddingSimilarities
{
    private static readonly Dictionary<string, EmbeddingSimilarity> s_names = new(StringComparer.Ordinal)
    {
        ["cosine"] = EmbeddingSimilarity.Cosine,
        ["dot"] = EmbeddingSimilarity.Dot,
        ["euclidean"] = EmbeddingSimilarity.Euclidean,
        ["manhattan"] = EmbeddingSimilarity.Manhattan,
    };

    /// <summary>sentence-transformers' name of <paramref name="similarity"/>.</summary>
    public static string NameOf(EmbeddingSimilarity similarity) => s_names.First(n => n.Value == similarity).Key;

    /// <summary>How alike <paramref name="a"/> and <paramref name="b"/> are (two embeddings of one length).</summary>
    public static double Of(EmbeddingSimilarity similarity, ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (a.Length != b.Length)
        {
            throw new ArgumentException($"embeddings of {a.Length} and {b.Length} values cannot be compared", nameof(b));
        }

        double dot = 0, aa = 0, bb = 0, squares = 0, absolutes = 0;
        for (int i = 0; i < a.Length; i++)
        {
            double x = a[i], y = b[i];
            dot += x * y;
            aa += x * x;
            bb += y * y;
            squares += (x - y) * (x - y);
            absolutes += Math.Abs(x - y);
        }

        return similarity switch
        {
            // torch's cosine_similarity: each norm at least 1e-8, so a zero vector gives 0, not NaN.
            EmbeddingSimilarity.Cosine => dot / (Math.Max(Math.Sqrt(aa), 1e-8) * Math.Max(Math.Sqrt(bb), 1e-8)),
            EmbeddingSimilarity.Dot => dot,
            EmbeddingSimilarity.Euclidean => -Math.Sqrt(squares),
            _ => -absolutes,
        };
    }

    /// <summary>The folder's <c>similarity_fn_name</c>; cosine without the file or the field.</summary>
    public static EmbeddingSimilarity LoadOrCosine(string directory)
    {
        string path = Path.Combine(directory, EmbeddingPrompts.FileName);
        if (!File.Exists(path))
        {
            return EmbeddingSimilarity.Cosine;
        }

        using JsonDocument document = EmbeddingConfig.Parse(path);
        if (document.RootElement.ValueKind != JsonValueKind.Object || !document.RootElement.TryGetProperty("similarity_fn_name", out JsonElement name)
            || name.ValueKind == JsonValueKind.Null)
        {
            return EmbeddingSimilarity.Cosine;
        }

        if (name.ValueKind == JsonValueKind.String && s_names.TryGetValue(name.GetString()!, out EmbeddingSimilarity similarity))
        {
            return similarity;
        }

        QwenThrow.InvalidData($"{path}: similarity_fn_name is {name.GetRawText()}, expected one of {string.Join(", ", s_names.Keys)}");
        return default;
    }
}
