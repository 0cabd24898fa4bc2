namespace QwenSharp.Tests.Support;

/// <summary>
/// A random Llama model whose rows are multiples of 256 (so llama.cpp uses the k-quants), with the demo model's tokenizer;
/// and the same shape as a Qwen2 model (<see cref="Qwen2Folder"/>). Heads are 64 values.
/// </summary>
internal static class RandomKQuantModel
{
    /// <summary>The model as a Hugging Face folder (F32 safetensors and the demo model's tokenizer).</summary>
    public static readonly Lazy<string> Folder = new(() => Write(qwen2: false));

    public static readonly Lazy<string> Gguf = new(() => GgufFixture.Write(Folder.Value));

    /// <summary>
    /// The shape as Qwen2 (biases on the query, key and value projections, other random numbers): its GGUF keeps each
    /// head's keys in the order ours does (llama.cpp's <c>qwen2</c> rotates halves, so no rows are permuted, as they are for
    /// a Llama file). Its values are made for a quantized cache's rotation (llama.cpp's, H_64 on every 64 values of a
    /// head): once rotated, the first value of every 32 is about <see cref="OutlierScale"/> times the others, so a block of
    /// 32 stored as 8-bit codes of its largest value loses far more than rounding elsewhere, and loses the same in every
    /// engine that rotates and stores them alike (and far less in one that does not).
    /// </summary>
    public static readonly Lazy<string> Qwen2Folder = new(() => Write(qwen2: true));

    public static readonly Lazy<string> Qwen2Gguf = new(() => GgufFixture.Write(Qwen2Folder.Value));

    /// <summary>How much larger the rotated value that starts each block of 32 is in <see cref="Qwen2Folder"/>.</summary>
    public const float OutlierScale = 64;

    /// <summary>
    /// The shape with 160-wide rows (whole 32-value blocks, not 256-value super-blocks) beside 512-wide ones (the down
    /// projection's), as Qwen2.5-0.5B's 896 beside 4864: a k-quant there takes llama.cpp's fallback type.
    /// </summary>
    public static readonly Lazy<string> NarrowFolder = new(() => Write(qwen2: false, hidden: 160));

    /// <summary>
    /// The Llama shape with 12 layers and one key/value head for the four query heads: enough for llama-quantize's mixes to
    /// store some layers' value and down projections with more bits than others (the first eighth, the last eighth, every
    /// third between), and for its rules for 4 or more query heads a key/value head.
    /// </summary>
    public static readonly Lazy<string> TwelveLayerFolder = new(() => Write(qwen2: false, layers: 12, kvHeads: 1));

    private static string Write(bool qwen2, int hidden = 256, int layers = 2, int kvHeads = 2)
    {
        int kvRows = kvHeads * hidden / 4;
        const int intermediate = 512, vocabulary = 512;
        string dir = Fixtures.TempDirectory();
        string architecture = qwen2 ? "\"model_type\": \"qwen2\", \"architectures\": [\"Qwen2ForCausalLM\"]" : "\"model_type\": \"llama\", \"architectures\": [\"LlamaForCausalLM\"]";
        File.WriteAllText(Path.Combine(dir, "config.json"), $$"""
            {{{architecture}}, "hidden_size": {{hidden}}, "intermediate_size": {{intermediate}},
             "num_hidden_layers": {{layers}}, "num_attention_heads": 4, "num_key_value_heads": {{kvHeads}}, "vocab_size": {{vocabulary}},
             "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false,
             "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2}
            """);
        var random = new Random(qwen2 ? 20261205 : 20261130);
        SafeTensorsWriter.Entry Matrix(string name, int rows, int columns, float scale) =>
            new(name, "F32", [rows, columns], SafeTensorsWriter.F32([.. Enumerable.Range(0, rows * columns).Select(_ => (float)((random.NextDouble() - 0.5) * 2 * scale))]));

        // Rows whose every 64 are H_64 (Sylvester's, normalized) times rows of which each 32nd is OutlierScale times larger.
        SafeTensorsWriter.Entry SpikyOnceRotated(string name, int rows, int columns, float scale)
        {
            double[] spiky = [.. Enumerable.Range(0, rows * columns).Select(i => (random.NextDouble() - 0.5) * 2 * scale * (i / columns % 32 == 0 ? OutlierScale : 1))];
            var mixed = new float[rows * columns];
            for (int r = 0; r < rows; r++)
            {
                int group = r / 64 * 64;
                for (int c = 0; c < columns; c++)
                {
                    double sum = 0;
                    for (int s = 0; s < 64; s++)
                    {
                        sum += (int.PopCount(r % 64 & s) % 2 == 0 ? 1 : -1) * spiky[((group + s) * columns) + c];
                    }

                    mixed[(r * columns) + c] = (float)(sum / 8);
                }
            }

            return new(name, "F32", [rows, columns], SafeTensorsWriter.F32(mixed));
        }

        SafeTensorsWriter.Entry Bias(string name, int length) =>
            new(name, "F32", [length], SafeTensorsWriter.F32([.. Enumerable.Range(0, length).Select(_ => (float)((random.NextDouble() - 0.5) * 0.2))]));
        SafeTensorsWriter.Entry Norm(string name) =>
            new(name, "F32", [hidden], SafeTensorsWriter.F32([.. Enumerable.Range(0, hidden).Select(_ => (float)(1 + ((random.NextDouble() - 0.5) * 0.2)))]));
        var entries = new List<SafeTensorsWriter.Entry> { Matrix("model.embed_tokens.weight", vocabulary, hidden, 1f), Matrix("lm_head.weight", vocabulary, hidden, 0.1f), Norm("model.norm.weight") };
        for (int l = 0; l < layers; l++)
        {
            string p = $"model.layers.{l}.";
            entries.AddRange(
            [
                Norm(p + "input_layernorm.weight"), Norm(p + "post_attention_layernorm.weight"),
                Matrix(p + "self_attn.q_proj.weight", hidden, hidden, 0.1f), Matrix(p + "self_attn.k_proj.weight", kvRows, hidden, 0.1f),
                qwen2 ? SpikyOnceRotated(p + "self_attn.v_proj.weight", kvRows, hidden, 0.1f) : Matrix(p + "self_attn.v_proj.weight", kvRows, hidden, 0.1f), Matrix(p + "self_attn.o_proj.weight", hidden, hidden, 0.1f),
                Matrix(p + "mlp.gate_proj.weight", intermediate, hidden, 0.1f), Matrix(p + "mlp.up_proj.weight", intermediate, hidden, 0.1f),
                Matrix(p + "mlp.down_proj.weight", hidden, intermediate, 0.05f),
            ]);
            if (qwen2)
            {
                entries.AddRange([Bias(p + "self_attn.q_proj.bias", hidden), Bias(p + "self_attn.k_proj.bias", kvRows), Bias(p + "self_attn.v_proj.bias", kvRows)]);
            }
        }

        SafeTensorsWriter.Write(Path.Combine(dir, "model.safetensors"), [.. entries]);
        return TestTokenizers.WithTokenizer(dir, Fixtures.DemoModel);
    }
}
