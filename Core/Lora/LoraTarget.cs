using QwenSharp.Qwen2;

namespace QwenSharp.Lora;

/// <summary>The projections of a decoder layer a LoRA adapter can change.</summary>
public enum LoraTarget
{
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

/// <summary>Each target's name in a Hugging Face checkpoint (PEFT's module names) and in a GGUF file, and its shape.</summary>
internal static class LoraTargets
{
    public static readonly LoraTarget[] All = Enum.GetValues<LoraTarget>();

    /// <summary>The module under <c>model.layers.N.</c>: "self_attn.q_proj", "mlp.down_proj".</summary>
    public static string ModuleName(LoraTarget target) => target switch
    {
        LoraTarget.Q => "self_attn.q_proj",
        LoraTarget.K => "self_attn.k_proj",
        LoraTarget.V => "self_attn.v_proj",
        LoraTarget.O => "self_attn.o_proj",
        LoraTarget.Gate => "mlp.gate_proj",
        LoraTarget.Up => "mlp.up_proj",
        _ => "mlp.down_proj",
    };

    /// <summary>The projection's module in a Hugging Face checkpoint: "model.layers.3.self_attn.q_proj" (its weight adds ".weight").</summary>
    public static string ModulePath(int layer, LoraTarget target) =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture, $"model.layers.{layer}.{ModuleName(target)}");

    /// <summary>The tensor under <c>blk.N.</c> in a GGUF file: "attn_q", "ffn_down".</summary>
    public static string GgufName(LoraTarget target) => target switch
    {
        LoraTarget.Q => "attn_q",
        LoraTarget.K => "attn_k",
        LoraTarget.V => "attn_v",
        LoraTarget.O => "attn_output",
        LoraTarget.Gate => "ffn_gate",
        LoraTarget.Up => "ffn_up",
        _ => "ffn_down",
    };

    public static bool TryParseModule(string module, out LoraTarget target) => TryFind(module, ModuleName, out target);

    public static bool TryParseGguf(string name, out LoraTarget target) => TryFind(name, GgufName, out target);

    /// <summary>The projection's weight shape, [out, in], in <paramref name="config"/>'s model.</summary>
    public static (int Out, int In) Shape(LoraTarget target, Qwen2Config config) => target switch
    {
        LoraTarget.Q => (config.QDim, config.HiddenSize),
        LoraTarget.K or LoraTarget.V => (config.KvDim, config.HiddenSize),
        LoraTarget.O => (config.HiddenSize, config.QDim),
        LoraTarget.Gate or LoraTarget.Up => (config.IntermediateSize, config.HiddenSize),
        _ => (config.HiddenSize, config.IntermediateSize),
    };

    /// <summary>Whether the target's output rows are rotated by RoPE (their order differs in llama-architecture GGUF files).</summary>
    public static bool IsRotated(LoraTarget target) => target is LoraTarget.Q or LoraTarget.K;

    private static bool TryFind(string name, Func<LoraTarget, string> naming, out LoraTarget target)
    {
        foreach (LoraTarget candidate in All)
        {
            if (naming(candidate) == name)
            {
                target = candidate;
                return true;
            }
        }

        target = default;
        return false;
    }
}
