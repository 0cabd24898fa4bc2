using System.Text.Json;
using QwenSharp.Errors;
using QwenSharp.Formats;
using QwenSharp.Numerics;

namespace QwenSharp.Qwen2;

/// <summary>
/// The head of transformers' <c>Qwen2ForSequenceClassification</c> and <c>LlamaForSequenceClassification</c> (reward
/// models, classifiers, cross-encoder rerankers): <c>score.weight</c> [num_labels, hidden_size], no bias, takes the
/// final-normed hidden state of a text's last token that is not padding (<c>pad_token_id</c>) to one logit per label.
/// Such a model has no LM head: it scores texts, it does not generate. config.json names the labels
/// (<c>id2label</c>, else LABEL_0, LABEL_1, ...) and how its logits become scores (<c>problem_type</c>, see
/// <see cref="Scores"/>). The products are summed in float64: a vector per text, so exactness costs nothing.
/// </summary>
public sealed class ClassifierHead
{
    /// <summary>The head's tensor, as transformers names it.</summary>
    public const string TensorName = "score.weight";

    private readonly float[] _weight;

    private ClassifierHead(string source, string[] labels, int? padTokenId, string? problemType, float[] weight, int hiddenSize)
    {
        Source = source;
        Labels = labels;
        PadTokenId = padTokenId;
        ProblemType = problemType;
        _weight = weight;
        HiddenSize = hiddenSize;
    }

    /// <summary>config.json, for messages.</summary>
    public string Source { get; }

    /// <summary>The label of each logit, in order (config.json's id2label).</summary>
    public IReadOnlyList<string> Labels { get; }

    /// <summary>config.json's pad_token_id: trailing tokens of this id are not pooled (transformers' rule); null: none.</summary>
    public int? PadTokenId { get; }

    /// <summary>config.json's problem_type: regression, single_label_classification, multi_label_classification, or null.</summary>
    public string? ProblemType { get; }

    public int HiddenSize { get; }

    /// <summary>
    /// The position whose hidden state a text of <paramref name="ids"/> is classified by: its last token that is not
    /// padding, as transformers picks it (position 0 when every token is padding).
    /// </summary>
    public int PooledPosition(IReadOnlyList<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        int last = ids.Count - 1;
        while (PadTokenId is int pad && last > 0 && ids[last] == pad)
        {
            last--;
        }

        return Math.Max(last, 0);
    }

    /// <summary>The logits, W h, of one pooled hidden state of <see cref="HiddenSize"/> values.</summary>
    public float[] Logits(ReadOnlySpan<float> hidden)
    {
        if (hidden.Length != HiddenSize)
        {
            throw new ArgumentException($"{Source}: a hidden state of {hidden.Length} values into a score head of hidden_size {HiddenSize}", nameof(hidden));
        }

        var logits = new float[Labels.Count];
        for (int label = 0; label < logits.Length; label++)
        {
            logits[label] = (float)Float64Dot.Of(_weight.AsSpan(label * HiddenSize, HiddenSize), hidden);
        }

        return logits;
    }

    /// <summary>The index of the highest of <paramref name="scores"/> (the first, where several are highest): its label is the answer.</summary>
    public static int Best(IReadOnlyList<float> scores)
    {
        ArgumentNullException.ThrowIfNull(scores);
        int best = 0;
        for (int i = 1; i < scores.Count; i++)
        {
            best = scores[i] > scores[best] ? i : best;
        }

        return best;
    }

    /// <summary>How <see cref="Scores"/> come from the logits: "none" (regression), "sigmoid" (each) or "softmax" (over the labels).</summary>
    public string ScoreFunction => ProblemType == "regression" ? "none"
        : ProblemType == "multi_label_classification" || Labels.Count == 1 ? "sigmoid"
        : "softmax";

    /// <summary>
    /// The scores of <paramref name="logits"/> as transformers' text-classification pipeline gives them: the logits as they
    /// are for regression, a sigmoid of each for multi_label_classification or a single label, else their softmax.
    /// </summary>
    public float[] Scores(ReadOnlySpan<float> logits)
    {
        var scores = new float[logits.Length];
        switch (ScoreFunction)
        {
            case "none":
                logits.CopyTo(scores);
                break;
            case "sigmoid":
                for (int i = 0; i < scores.Length; i++)
                {
                    scores[i] = (float)(1 / (1 + Math.Exp(-(double)logits[i])));
                }

                break;
            default:
                // The largest subtracted first: logits of a few hundred would overflow exp.
                double max = double.NegativeInfinity;
                foreach (float v in logits)
                {
                    max = Math.Max(max, v);
                }

                double total = 0;
                foreach (float v in logits)
                {
                    total += Math.Exp(v - max);
                }

                for (int i = 0; i < scores.Length; i++)
                {
                    scores[i] = (float)(Math.Exp(logits[i] - max) / total);
                }

                break;
        }

        return scores;
    }

    /// <summary>
    /// The head of a model whose config.json is <paramref name="configPath"/>, its weight read from
    /// <paramref name="source"/> (F32, F16 or BF16). What is missing or contradicts itself is a load error naming the file.
    /// </summary>
    public static ClassifierHead Load(string configPath, ITensorSource source, int hiddenSize)
    {
        ArgumentNullException.ThrowIfNull(source);
        string[]? labels;
        int? pad;
        string? problemType;
        using (JsonDocument document = EmbeddingConfig.Parse(configPath))
        {
            JsonElement root = document.RootElement;
            labels = root.TryGetProperty("id2label", out JsonElement id2label) && id2label.ValueKind != JsonValueKind.Null ? ReadLabels(id2label, configPath) : null;
            pad = root.TryGetProperty("pad_token_id", out JsonElement p) && p.ValueKind != JsonValueKind.Null
                ? p.ValueKind == JsonValueKind.Number && p.TryGetInt32(out int id) && id >= 0 ? id
                    : throw new InvalidDataException($"{configPath}: pad_token_id is {p.GetRawText()}, expected a token id")
                : null;
            problemType = root.TryGetProperty("problem_type", out JsonElement t) && t.ValueKind != JsonValueKind.Null
                ? t.ValueKind == JsonValueKind.String && t.GetString() is "regression" or "single_label_classification" or "multi_label_classification" ? t.GetString()
                    : throw new InvalidDataException($"{configPath}: problem_type is {t.GetRawText()}, expected regression, single_label_classification or multi_label_classification")
                : null;
        }

        if (!source.TryGetView(TensorName, out TensorView? view))
        {
            QwenThrow.InvalidData($"{source.Description}: tensor '{TensorName}' not found (a sequence classifier's head: one row of hidden_size per label)");
        }

        if (view.Shape.Length != 2 || view.Shape[1] != hiddenSize || view.Shape[0] is < 1 or > 1 << 16 || view.DType is not (DType.F32 or DType.F16 or DType.BF16))
        {
            QwenThrow.InvalidData($"{view.Source}: tensor '{TensorName}' is {view.DType} {view.ShapeText}, expected F32, F16 or BF16 [num_labels, {hiddenSize}] (hidden_size)");
        }

        int count = (int)view.Shape[0];
        if (labels is not null && labels.Length != count)
        {
            QwenThrow.InvalidData($"{configPath}: id2label names {labels.Length} label(s), and '{TensorName}' has {count} rows (one per label)");
        }

        labels ??= [.. Enumerable.Range(0, count).Select(i => $"LABEL_{i}")];
        return new ClassifierHead(configPath, labels, pad, problemType, TensorValues.ToSingle(view), hiddenSize);
    }

    /// <summary>id2label: {"0": "negative", "1": "positive"}, every id from 0 to count-1 once.</summary>
    private static string[] ReadLabels(JsonElement id2label, string configPath)
    {
        if (id2label.ValueKind != JsonValueKind.Object)
        {
            QwenThrow.InvalidData($"{configPath}: id2label is {id2label.GetRawText()}, expected an object of label ids to names");
        }

        var byId = new SortedDictionary<int, string>();
        foreach (JsonProperty entry in id2label.EnumerateObject())
        {
            if (!int.TryParse(entry.Name, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int id)
                || entry.Value.ValueKind != JsonValueKind.String || !byId.TryAdd(id, entry.Value.GetString()!))
            {
                QwenThrow.InvalidData($"{configPath}: id2label entry \"{entry.Name}\": {entry.Value.GetRawText()} is not a label id (0, 1, ...) and its name, each id once");
            }
        }

        if (byId.Count == 0 || byId.Keys.Last() != byId.Count - 1)
        {
            QwenThrow.InvalidData($"{configPath}: id2label's ids are {string.Join(", ", byId.Keys)}, expected 0 to {Math.Max(byId.Count - 1, 0)} with none missing");
        }

        return [.. byId.Values];
    }
}
