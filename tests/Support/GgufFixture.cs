using System.Text.Json;
using QwenSharp.Formats;
using QwenSharp.Formats.Gguf;
using QwenSharp.Qwen2;

namespace QwenSharp.Tests.Support;

/// <summary>
/// Writes a fixture model folder as one GGUF file the way llama.cpp's converter lays it out: its names, ggml's
/// dimension order, the hyperparameters under <c>{arch}.*</c> and, for a llama model, the q and k rows reordered
/// for interleaved RoPE (so reading it back must undo that).
/// </summary>
internal static class GgufFixture
{
    /// <param name="modelDirectory">A Hugging Face folder (its tokenizer.json, if any, goes into the metadata).</param>
    /// <param name="quantize">Q8_0: matrices whose rows are whole blocks are stored quantized, as llama.cpp's quantize does.</param>
    /// <param name="dequantized">With <paramref name="quantize"/>: store those matrices as F32 holding the quantized values
    /// (the same numbers, which llama.cpp then multiplies in f32).</param>
    public static string Write(string modelDirectory, DType? quantize = null, bool dequantized = false)
    {
        Qwen2Config config = Qwen2Config.Load(Path.Combine(modelDirectory, "config.json"));
        string arch = config.ModelType;
        var writer = new GgufWriter()
            .Add("general.architecture", arch)
            .Add($"{arch}.context_length", (uint)config.MaxPositionEmbeddings)
            .Add($"{arch}.embedding_length", (uint)config.HiddenSize)
            .Add($"{arch}.feed_forward_length", (uint)config.IntermediateSize)
            .Add($"{arch}.block_count", (uint)config.NumHiddenLayers)
            .Add($"{arch}.attention.head_count", (uint)config.NumAttentionHeads)
            .Add($"{arch}.attention.head_count_kv", (uint)config.NumKeyValueHeads)
            .Add($"{arch}.attention.layer_norm_rms_epsilon", (float)config.RmsNormEps)
            .Add($"{arch}.rope.freq_base", (float)config.RopeTheta);
        if (File.Exists(Path.Combine(modelDirectory, "tokenizer.json")))
        {
            AddTokenizer(writer, modelDirectory);
        }
        else if (config.EosTokenIds.Count > 0)
        {
            writer.Add("tokenizer.ggml.eos_token_id", (uint)config.EosTokenIds[0]);
        }

        using SafeTensorsCheckpoint checkpoint = SafeTensorsCheckpoint.Open(modelDirectory);
        foreach (string name in checkpoint.TensorNames.Order(StringComparer.Ordinal))
        {
            if (name == "lm_head.weight" && config.TieWordEmbeddings)
            {
                continue;
            }

            Assert.True(checkpoint.TryGetView(name, out TensorView? view));
            byte[] data = view.Bytes.ToArray();
            string ggufName = GgufCheckpoint.GgufName(name);
            if (arch == "llama" && IsRopeProjection(ggufName))
            {
                int heads = ggufName.Contains(".attn_q.", StringComparison.Ordinal) ? config.NumAttentionHeads : config.NumKeyValueHeads;
                data = PermuteForInterleavedRope(data, view.Shape[0], heads);
            }

            if (quantize is DType quantized && view.Shape.Length == 2 && view.Shape[1] % DTypes.BlockValues(quantized) == 0)
            {
                float[] values = [.. Widened(view)];
                var blocks = new byte[DTypes.ByteLength(quantized, values.Length)];
                Numerics.Q8_0Blocks.Quantize(values, blocks);
                GgmlType stored = GgmlTypes.Of(quantized);
                if (dequantized)
                {
                    Numerics.Q8_0Blocks.Dequantize(blocks, values);
                    blocks = System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
                    stored = GgmlType.F32;
                }

                writer.AddTensor(ggufName, stored, view.Shape, arch == "llama" && IsRopeProjection(ggufName)
                    ? PermuteForInterleavedRope(blocks, view.Shape[0], ggufName.Contains(".attn_q.", StringComparison.Ordinal) ? config.NumAttentionHeads : config.NumKeyValueHeads)
                    : blocks);
                continue;
            }

            // Dequantized: every tensor in F32, so llama.cpp multiplies exactly the numbers the quantized file holds.
            if ((view.Shape.Length == 1 || dequantized) && view.DType != DType.F32)
            {
                // llama.cpp's converter stores vectors (norms, biases) as F32, and its CPU kernels add only F32 biases.
                if (arch == "llama" && IsRopeProjection(ggufName) && view.Shape.Length == 2)
                {
                    int heads = ggufName.Contains(".attn_q.", StringComparison.Ordinal) ? config.NumAttentionHeads : config.NumKeyValueHeads;
                    float[] rows = [.. Widened(view)];
                    writer.AddTensor(ggufName, GgmlType.F32, view.Shape, PermuteForInterleavedRope(System.Runtime.InteropServices.MemoryMarshal.AsBytes(rows.AsSpan()).ToArray(), view.Shape[0], heads));
                    continue;
                }

                float[] widened = [.. Widened(view)];
                writer.AddTensor(ggufName, GgmlType.F32, view.Shape, System.Runtime.InteropServices.MemoryMarshal.AsBytes(widened.AsSpan()).ToArray());
                continue;
            }

            writer.AddTensor(ggufName, GgmlTypes.Of(view.DType), view.Shape, data);
        }

        string path = Path.Combine(Fixtures.TempDirectory(), Path.GetFileName(modelDirectory) + (quantize is null ? "" : "." + DTypes.Name(quantize.Value)) + (dequantized ? ".f32" : "") + ".gguf");
        writer.Write(path);
        return path;
    }

    /// <summary>
    /// The tokenizer keys llama.cpp's converter writes from a tokenizer.json: every token by id with its type
    /// (control for special added tokens, user-defined for the others, byte for &lt;0x..&gt;), merges "left right",
    /// the end and begin ids, add_bos_token and the chat template. A byte-level BPE (Qwen2) is "gpt2" with pre
    /// "qwen2"; a sentencepiece-style one is "llama", scored by merge order (earlier merges score higher).
    /// </summary>
    private static void AddTokenizer(GgufWriter writer, string directory)
    {
        using JsonDocument json = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(directory, "tokenizer.json")));
        JsonElement model = json.RootElement.GetProperty("model");
        var byId = new SortedDictionary<int, (string Token, int Type)>();
        foreach (JsonProperty entry in model.GetProperty("vocab").EnumerateObject())
        {
            bool isByte = entry.Name.StartsWith("<0x", StringComparison.Ordinal) && entry.Name.EndsWith('>') && entry.Name.Length == 6;
            byId[entry.Value.GetInt32()] = (entry.Name, isByte ? 6 : 1);
        }

        foreach (JsonElement added in json.RootElement.GetProperty("added_tokens").EnumerateArray())
        {
            byId[added.GetProperty("id").GetInt32()] = (added.GetProperty("content").GetString()!, added.GetProperty("special").GetBoolean() ? 3 : 4);
        }

        Assert.Equal(byId.Count, byId.Keys.Max() + 1);

        // As llama.cpp's converter: ids past the tokenizer's up to the embedding's rows are unused "[PAD{id}]" tokens.
        int vocabSize = Qwen2Config.Load(Path.Combine(directory, "config.json")).VocabSize;
        for (int id = byId.Count; id < vocabSize; id++)
        {
            byId[id] = ($"[PAD{id}]", 5);
        }

        string[] merges = [.. model.GetProperty("merges").EnumerateArray()
            .Select(m => m.ValueKind == JsonValueKind.String ? m.GetString()! : $"{m[0].GetString()} {m[1].GetString()}")];
        bool byteLevel = json.RootElement.GetProperty("decoder").GetProperty("type").GetString() == "ByteLevel";
        writer.Add("tokenizer.ggml.model", byteLevel ? "gpt2" : "llama");
        if (byteLevel)
        {
            writer.Add("tokenizer.ggml.pre", "qwen2");
        }

        writer.Add("tokenizer.ggml.tokens", [.. byId.Values.Select(t => t.Token)]);
        writer.Add("tokenizer.ggml.token_type", [.. byId.Values.Select(t => t.Type)]);
        if (byteLevel)
        {
            writer.Add("tokenizer.ggml.merges", merges);
        }
        else
        {
            var rank = merges.Select((m, i) => (Token: m.Replace(" ", "", StringComparison.Ordinal), Rank: i)).GroupBy(m => m.Token).ToDictionary(g => g.Key, g => g.Min(m => m.Rank));
            writer.Add("tokenizer.ggml.scores", [.. byId.Values.Select(t => rank.TryGetValue(t.Token, out int r) ? -(float)r : 0f)]);
        }

        using JsonDocument tokenizerConfig = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(directory, "tokenizer_config.json")));
        int IdOf(string text) => byId.First(t => t.Value.Token == text).Key;
        JsonElement root = tokenizerConfig.RootElement;
        foreach ((string field, string key) in new[] { ("eos_token", "eos"), ("bos_token", "bos"), ("pad_token", "padding") })
        {
            if (root.TryGetProperty(field, out JsonElement token) && token.ValueKind == JsonValueKind.String)
            {
                writer.Add($"tokenizer.ggml.{key}_token_id", (uint)IdOf(token.GetString()!));
            }
        }

        if (root.TryGetProperty("add_bos_token", out JsonElement addBos) && addBos.ValueKind is JsonValueKind.True or JsonValueKind.False)
        {
            writer.Add("tokenizer.ggml.add_bos_token", addBos.GetBoolean());
        }

        if (root.TryGetProperty("chat_template", out JsonElement template) && template.ValueKind == JsonValueKind.String)
        {
            writer.Add("tokenizer.chat_template", template.GetString()!);
        }
    }

    private static IEnumerable<float> Widened(TensorView view)
    {
        if (view.DType == DType.F32)
        {
            return System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(view.Bytes).ToArray();
        }

        ushort[] bits = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(view.Bytes).ToArray();
        return view.DType == DType.BF16 ? bits.Select(Numerics.BFloat16Bits.ToSingle) : bits.Select(Numerics.HalfBits.ToSingle);
    }

    private static bool IsRopeProjection(string ggufName) =>
        ggufName.Contains(".attn_q.", StringComparison.Ordinal) || ggufName.Contains(".attn_k.", StringComparison.Ordinal);

    /// <summary>llama.cpp's converter's <c>permute</c>: Hugging Face row t * d/2 + j of each head goes to row 2j + t.</summary>
    private static byte[] PermuteForInterleavedRope(byte[] data, long rows, int heads)
    {
        long rowBytes = data.Length / rows, headDim = rows / heads, half = headDim / 2;
        var result = new byte[data.Length];
        for (long h = 0; h < heads; h++)
        {
            for (long t = 0; t < 2; t++)
            {
                for (long j = 0; j < half; j++)
                {
                    long from = (h * headDim) + (t * half) + j, to = (h * headDim) + (2 * j) + t;
                    Array.Copy(data, from * rowBytes, result, to * rowBytes, rowBytes);
                }
            }
        }

        return result;
    }
}
