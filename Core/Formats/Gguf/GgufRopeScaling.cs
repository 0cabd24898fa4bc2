using QwenSharp.Backend;
using QwenSharp.Errors;

namespace QwenSharp.Formats.Gguf;

/// <summary>
/// A GGUF file's RoPE scaling, with llama.cpp's keys and meanings (<c>llama_model::load_hparams</c>, <c>rope_yarn</c>):
/// <c>{arch}.rope.scaling.type</c> (<c>none</c>, <c>linear</c>, <c>yarn</c>; <c>linear</c> when absent),
/// <c>.factor</c> (or the older <c>{arch}.rope.scale_linear</c>), <c>.original_context_length</c>, <c>.attn_factor</c>,
/// and the <c>rope_freqs.weight</c> tensor of per-frequency divisors (Llama 3.1's scaling).
/// </summary>
public static class GgufRopeScaling
{
    public const string DivisorsTensor = "rope_freqs.weight";

    public static unsafe RopeScaling? Read(GgufFile file, string arch, int headDim, int contextLength)
    {
        string name = file.FileName;
        IReadOnlyDictionary<string, object> m = file.Metadata;
        string prefix = $"{arch}.rope.scaling";
        string type = GgufMetadata.Text(m, $"{prefix}.type", name) ?? "linear";
        double factor = GgufMetadata.Number(m, $"{prefix}.factor", name) ?? GgufMetadata.Number(m, $"{arch}.rope.scale_linear", name) ?? 0;
        double attention = GgufMetadata.Number(m, $"{prefix}.attn_factor", name) ?? 1;

        // llama.cpp reads factor 0 as "not scaled", and type "none" as no scaling whatever the factor.
        RopeScaling? scaling = null;
        if (type is "linear" or "yarn" && factor != 0)
        {
            if (!(factor >= 1) || double.IsInfinity(factor))
            {
                QwenThrow.InvalidData($"{name}: {prefix}.factor is {factor}; a RoPE scaling stretches the context, so it must be at least 1");
            }

            if (!(attention > 0) || double.IsInfinity(attention))
            {
                QwenThrow.InvalidData($"{name}: {prefix}.attn_factor is {attention}, expected a positive number");
            }

            long original = GgufMetadata.Integer(m, $"{prefix}.original_context_length", name) ?? contextLength;
            if (original is < 1 or > int.MaxValue)
            {
                QwenThrow.InvalidData($"{name}: {prefix}.original_context_length is {original}, expected a positive integer");
            }

            // llama.cpp scales cos and sin by attn_factor, and YaRN by 1 + 0.1 ln(factor) on top.
            scaling = type == "linear"
                ? new RopeScaling { Kind = RopeScalingKind.Linear, Factor = factor, AttentionFactor = attention }
                : new RopeScaling
                {
                    Kind = RopeScalingKind.Yarn, Factor = factor, OriginalContext = (int)original,
                    AttentionFactor = attention * RopeScaling.YarnAttentionFactor(factor),
                };
        }
        else if (type is not ("linear" or "yarn" or "none"))
        {
            QwenThrow.NotSupported($"{name}: {prefix}.type '{type}' is not supported (QwenSharp runs none, linear and yarn)");
        }

        if (!file.Tensors.TryGetValue(DivisorsTensor, out GgufTensorInfo? divisors))
        {
            return scaling;
        }

        if (scaling is not null)
        {
            QwenThrow.NotSupported($"{name}: '{DivisorsTensor}' together with {prefix}.type '{type}' is not supported");
        }

        if (divisors.Type != (int)GgmlType.F32 || divisors.Dimensions is not [long count] || count != headDim / 2)
        {
            QwenThrow.InvalidData($"{name}: tensor '{DivisorsTensor}' is {GgmlTypes.Name(divisors.Type)} [{string.Join(", ", divisors.Dimensions)}], expected F32 [{headDim / 2}] (one divisor per rotated pair)");
        }

        var values = new ReadOnlySpan<float>((void*)file.DataOf(divisors), headDim / 2);
        double[] read = new double[values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            if (!(values[i] > 0) || float.IsInfinity(values[i]))
            {
                QwenThrow.InvalidData($"{name}: tensor '{DivisorsTensor}' holds {values[i]} at {i}, expected positive divisors");
            }

            read[i] = values[i];
        }

        return new RopeScaling { Kind = RopeScalingKind.FrequencyDivisors, Divisors = read };
    }
}
