using QwenSharp.Tokenization;
using static QwenSharp.Tests.Support.SafeTensorsWriter;

namespace QwenSharp.Tests.Support;

/// <summary>
/// A Qwen2 folder (the real Qwen2.5 tokenizer and chat template) whose greedy answer to any prompt is a
/// fixed text, then end-of-sequence: the layer's projections are zero, so the logits are the untied head
/// times the normalised embedding of the last token alone, and the embeddings and head rows form a chain:
/// every ordinary token points to the script's first token, each script token to the next, the last to
/// &lt;|im_end|&gt;. Lets tests see exactly what the server does with a known answer (tool calls).
/// </summary>
internal static class ScriptedModel
{
    private const int Vocabulary = 151936;
    private const int Hidden = 16;
    private const int EndOfTurn = 151645;

    public static string Write(string answer)
    {
        Tokenizer tokenizer = TestTokenizers.Qwen;
        int[] script = tokenizer.Encode(answer);
        if (script.Distinct().Count() != script.Length || script.Length + 1 > Hidden || script.Contains(EndOfTurn))
        {
            throw new ArgumentException($"the answer's tokens must be distinct and fewer than {Hidden}: {string.Join(",", script)}");
        }

        var embedding = new float[Vocabulary * Hidden];
        var head = new float[Vocabulary * Hidden];
        for (int t = 0; t < Vocabulary; t++)
        {
            // Direction 0: "an ordinary token".
            embedding[t * Hidden] = 1;
        }

        for (int i = 0; i < script.Length; i++)
        {
            // Script token i lives on direction i + 1, away from direction 0.
            Array.Clear(embedding, script[i] * Hidden, Hidden);
            embedding[(script[i] * Hidden) + i + 1] = 1;
            // The head row of script token i reads the direction of what comes before it.
            head[(script[i] * Hidden) + i] = 10;
        }

        head[(EndOfTurn * Hidden) + script.Length] = 10;

        string dir = Fixtures.TempDirectory();
        File.WriteAllText(Path.Combine(dir, "config.json"), $$"""
            {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": {{Hidden}}, "intermediate_size": 8,
             "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": {{Vocabulary}},
             "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": false,
             "hidden_act": "silu", "eos_token_id": {{EndOfTurn}}}
            """);
        File.WriteAllText(Path.Combine(dir, "generation_config.json"), $$"""{"eos_token_id": [{{EndOfTurn}}, 151643]}""");
        foreach (string file in (string[])["tokenizer.json", "tokenizer_config.json"])
        {
            File.CreateSymbolicLink(Path.Combine(dir, file), Path.Combine(TestTokenizers.QwenDirectory, file));
        }

        float[] ones = [.. Enumerable.Repeat(1f, Hidden)];
        SafeTensorsWriter.Write(Path.Combine(dir, "model.safetensors"),
        [
            new Entry("model.embed_tokens.weight", "F32", [Vocabulary, Hidden], F32(embedding)),
            new Entry("lm_head.weight", "F32", [Vocabulary, Hidden], F32(head)),
            new Entry("model.layers.0.input_layernorm.weight", "F32", [Hidden], F32(ones)),
            new Entry("model.layers.0.self_attn.q_proj.weight", "F32", [Hidden, Hidden], new byte[Hidden * Hidden * 4]),
            new Entry("model.layers.0.self_attn.q_proj.bias", "F32", [Hidden], new byte[Hidden * 4]),
            new Entry("model.layers.0.self_attn.k_proj.weight", "F32", [Hidden / 2, Hidden], new byte[Hidden * Hidden * 2]),
            new Entry("model.layers.0.self_attn.k_proj.bias", "F32", [Hidden / 2], new byte[Hidden * 2]),
            new Entry("model.layers.0.self_attn.v_proj.weight", "F32", [Hidden / 2, Hidden], new byte[Hidden * Hidden * 2]),
            new Entry("model.layers.0.self_attn.v_proj.bias", "F32", [Hidden / 2], new byte[Hidden * 2]),
            new Entry("model.layers.0.self_attn.o_proj.weight", "F32", [Hidden, Hidden], new byte[Hidden * Hidden * 4]),
            new Entry("model.layers.0.post_attention_layernorm.weight", "F32", [Hidden], F32(ones)),
            new Entry("model.layers.0.mlp.gate_proj.weight", "F32", [8, Hidden], new byte[8 * Hidden * 4]),
            new Entry("model.layers.0.mlp.up_proj.weight", "F32", [8, Hidden], new byte[8 * Hidden * 4]),
            new Entry("model.layers.0.mlp.down_proj.weight", "F32", [Hidden, 8], new byte[8 * Hidden * 4]),
            new Entry("model.norm.weight", "F32", [Hidden], F32(ones)),
        ]);
        return dir;
    }
}
