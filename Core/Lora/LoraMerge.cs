using QwenSharp.Formats;
using QwenSharp.Qwen2;

namespace QwenSharp.Lora;

/// <summary>
/// Adapters merged into a model's weights, W' = W + Σ scaleᵢ · Bᵢ · Aᵢ (PEFT's merge_and_unload, llama.cpp's export-lora):
/// for writing one model file that carries the fine-tuning, where no engine need apply an adapter.
/// </summary>
public static class LoraMerge
{
    /// <summary>Refuses adapters that do not fit <paramref name="config"/>'s model (architecture, layers, shapes), naming the projection.</summary>
    public static void Check(IReadOnlyList<LoraAdapter> adapters, Qwen2Config config)
    {
        ArgumentNullException.ThrowIfNull(adapters);
        foreach (LoraAdapter adapter in adapters)
        {
            LoraLayers.Check(adapter, config);
        }
    }

    /// <summary>
    /// The weight named <paramref name="name"/> (a checkpoint name: "model.layers.3.self_attn.q_proj.weight") with every
    /// adapter's update added, in f32; null when no adapter changes it (or every scale is 0).
    /// </summary>
    public static float[]? Merged(IReadOnlyList<LoraAdapter> adapters, Qwen2Config config, string name, TensorView weight)
    {
        ArgumentNullException.ThrowIfNull(adapters);
        ArgumentNullException.ThrowIfNull(weight);
        var updates = adapters
            .SelectMany(adapter => adapter.Pairs.Where(p => adapter.Scale != 0 && LoraTargets.ModulePath(p.Layer, p.Target) + ".weight" == name)
                .Select(pair => (Pair: pair, Scale: adapter.Scale * pair.Scale)))
            .ToList();
        if (updates.Count == 0)
        {
            return null;
        }

        float[] merged = TensorValues.ToSingle(weight);
        int rows = (int)weight.Shape[0], cols = (int)weight.Shape[1];
        foreach ((LoraPair pair, double scale) in updates)
        {
            float[] a = TensorValues.ToSingle(pair.A), b = pair.ScaledB(scale, config);
            int rank = pair.Rank;
            Parallel.For(0, rows, o =>
            {
                // Row o of B · A, summed over the rank in double, added once.
                Span<float> row = merged.AsSpan(o * cols, cols);
                for (int i = 0; i < cols; i++)
                {
                    double sum = 0;
                    for (int j = 0; j < rank; j++)
                    {
                        sum += (double)b[(o * rank) + j] * a[(j * cols) + i];
                    }

                    row[i] = (float)(row[i] + sum);
                }
            });
        }

        return merged;
    }
}
