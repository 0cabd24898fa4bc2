namespace QwenSharp.Tests.Support;

/// <summary>A random Llama model whose rows are multiples of 256 (so llama.cpp uses the k-quants), with the demo model's tokenizer.</summary>
internal static class RandomKQuantModel
{
    /// <summary>The model as a Hugging Face folder (F32 safetensors and the demo model's tokenizer).</summary>
    public static readonly Lazy<string> Folder = new(() =>
    {
        const int hidden = 256, intermediate = 512, vocabulary = 512;
        string dir = Fixtures.TempDirectory();
        File.WriteAllText(Path.Combine(dir, "config.json"), $$"""
            {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": {{hidden}}, "intermediate_size": {{intermediate}},
             "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": {{vocabulary}},
             "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false,
             "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2}
            """);
        var random = new Random(20261130);
        SafeTensorsWriter.Entry Matrix(string name, int rows, int columns, float scale) =>
            new(name, "F32", [rows, columns], SafeTensorsWriter.F32([.. Enumerable.Range(0, rows * columns).Select(_ => (float)((random.NextDouble() - 0.5) * 2 * scale))]));
        SafeTensorsWriter.Entry Norm(string name) =>
            new(name, "F32", [hidden], SafeTensorsWriter.F32([.. Enumerable.Range(0, hidden).Select(_ => (float)(1 + ((random.NextDouble() - 0.5) * 0.2)))]));
        var entries = new List<SafeTensorsWriter.Entry> { Matrix("model.embed_tokens.weight", vocabulary, hidden, 1f), Matrix("lm_head.weight", vocabulary, hidden, 0.1f), Norm("model.norm.weight") };
        for (int l = 0; l < 2; l++)
        {
            string p = $"model.layers.{l}.";
            entries.AddRange(
            [
                Norm(p + "input_layernorm.weight"), Norm(p + "post_attention_layernorm.weight"),
                Matrix(p + "self_attn.q_proj.weight", hidden, hidden, 0.1f), Matrix(p + "self_attn.k_proj.weight", hidden / 2, hidden, 0.1f),
                Matrix(p + "self_attn.v_proj.weight", hidden / 2, hidden, 0.1f), Matrix(p + "self_attn.o_proj.weight", hidden, hidden, 0.1f),
                Matrix(p + "mlp.gate_proj.weight", intermediate, hidden, 0.1f), Matrix(p + "mlp.up_proj.weight", intermediate, hidden, 0.1f),
                Matrix(p + "mlp.down_proj.weight", hidden, intermediate, 0.05f),
            ]);
        }

        SafeTensorsWriter.Write(Path.Combine(dir, "model.safetensors"), [.. entries]);
        return TestTokenizers.WithTokenizer(dir, Fixtures.DemoModel);
    });

    public static readonly Lazy<string> Gguf = new(() => GgufFixture.Write(Folder.Value));
}
