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
    public static string Write(string modelDirectory)
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
        if (config.EosTokenIds.Count > 0)
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
            if (arch == "llama" && (ggufName.Contains(".attn_q.", StringComparison.Ordinal) || ggufName.Contains(".attn_k.", StringComparison.Ordinal)))
            {
                int heads = ggufName.Contains(".attn_q.", StringComparison.Ordinal) ? config.NumAttentionHeads : config.NumKeyValueHeads;
                data = PermuteForInterleavedRope(data, view.Shape[0], heads);
            }

            writer.AddTensor(ggufName, GgmlTypes.Of(view.DType), view.Shape, data);
        }

        string path = Path.Combine(Fixtures.TempDirectory(), Path.GetFileName(modelDirectory) + ".gguf");
        writer.Write(path);
        return path;
    }

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
