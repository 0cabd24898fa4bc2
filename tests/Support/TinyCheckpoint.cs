using static QwenSharp.Tests.Support.SafeTensorsWriter;

namespace QwenSharp.Tests.Support;

/// <summary>
/// A minimal Qwen2 model folder (hidden 8, one layer, 2 heads / 1 KV head, vocab 16, zero weights), written
/// from a hand-written tensor list, to break in exactly one place per test.
/// </summary>
internal static class TinyCheckpoint
{
    public const string Config = """
        {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": 8, "intermediate_size": 12,
         "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 16,
         "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": true,
         "hidden_act": "silu", "eos_token_id": 2}
        """;

    public static IEnumerable<(string Name, long[] Shape)> Tensors() =>
    [
        ("model.embed_tokens.weight", [16, 8]),
        ("model.layers.0.input_layernorm.weight", [8]),
        ("model.layers.0.self_attn.q_proj.weight", [8, 8]),
        ("model.layers.0.self_attn.q_proj.bias", [8]),
        ("model.layers.0.self_attn.k_proj.weight", [4, 8]),
        ("model.layers.0.self_attn.k_proj.bias", [4]),
        ("model.layers.0.self_attn.v_proj.weight", [4, 8]),
        ("model.layers.0.self_attn.v_proj.bias", [4]),
        ("model.layers.0.self_attn.o_proj.weight", [8, 8]),
        ("model.layers.0.post_attention_layernorm.weight", [8]),
        ("model.layers.0.mlp.gate_proj.weight", [12, 8]),
        ("model.layers.0.mlp.up_proj.weight", [12, 8]),
        ("model.layers.0.mlp.down_proj.weight", [8, 12]),
        ("model.norm.weight", [8]),
    ];

    /// <summary>
    /// Writes config.json and model.safetensors, leaving out <paramref name="skip"/>, giving <paramref name="reshape"/>
    /// another shape and filling <paramref name="fill"/> with one value (the rest is zero).
    /// </summary>
    public static string Write(string? skip = null, (string Name, long[] Shape)? reshape = null, string config = Config,
        (string Name, float Value)? fill = null)
    {
        string dir = Fixtures.TempDirectory();
        File.WriteAllText(Path.Combine(dir, "config.json"), config);
        var entries = new List<Entry>();
        foreach (var (name, original) in Tensors())
        {
            if (name == skip)
            {
                continue;
            }

            long[] shape = reshape is { } r && r.Name == name ? r.Shape : original;
            long count = shape.Aggregate(1L, (a, b) => a * b);
            byte[] data = fill is { } f && f.Name == name ? SafeTensorsWriter.F32([.. Enumerable.Repeat(f.Value, (int)count)]) : new byte[count * 4];
            entries.Add(new Entry(name, "F32", shape, data));
        }

        SafeTensorsWriter.Write(Path.Combine(dir, "model.safetensors"), [.. entries]);
        return dir;
    }
}
