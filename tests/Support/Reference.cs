using System.Text.Json;

namespace QwenSharp.Tests.Support;

/// <summary>
/// A fixture's reference.json and reference.logits.f32, produced by an independent float64 implementation
/// of the Hugging Face forward pass (see tests/fixtures/README.md).
/// </summary>
internal sealed class Reference
{
    private Reference(string fixture)
    {
        using JsonDocument json = Fixtures.Json(fixture, "reference.json");
        JsonElement root = json.RootElement;
        PromptIds = [.. root.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32())];
        Positions = [.. root.GetProperty("positions").EnumerateArray().Select(p => new ReferencePosition(
            [.. p.GetProperty("top_ids").EnumerateArray().Select(e => e.GetInt32())],
            [.. p.GetProperty("top_logits").EnumerateArray().Select(e => e.GetDouble())],
            p.GetProperty("logsumexp").GetDouble(),
            p.TryGetProperty("next_id_logprob", out JsonElement next) && next.ValueKind == JsonValueKind.Number ? next.GetDouble() : null))];
        FullLogitsPositions = [.. root.GetProperty("full_logits_positions").EnumerateArray().Select(e => e.GetInt32())];
        GreedyNewIds = [.. root.GetProperty("greedy_new_ids").EnumerateArray().Select(e => e.GetInt32())];
        GreedyTop2Margins = [.. root.GetProperty("greedy_top2_margins").EnumerateArray().Select(e => e.GetDouble())];
        PromptMeanNll = root.GetProperty("prompt_mean_nll").GetDouble();
        PromptPerplexity = root.GetProperty("prompt_perplexity").GetDouble();
        byte[] raw = System.IO.File.ReadAllBytes(Fixtures.File(fixture, root.GetProperty("full_logits_file").GetString()!));
        FullLogits = new float[raw.Length / 4];
        Buffer.BlockCopy(raw, 0, FullLogits, 0, raw.Length);
    }

    public int[] PromptIds { get; }

    public ReferencePosition[] Positions { get; }

    public int[] FullLogitsPositions { get; }

    /// <summary>All vocab logits at each of <see cref="FullLogitsPositions"/>, one row after another.</summary>
    public float[] FullLogits { get; }

    public int[] GreedyNewIds { get; }

    public double[] GreedyTop2Margins { get; }

    public double PromptMeanNll { get; }

    public double PromptPerplexity { get; }

    public static Reference Load(string fixture) => new(fixture);
}

internal sealed record ReferencePosition(int[] TopIds, double[] TopLogits, double LogSumExp, double? NextIdLogprob);
