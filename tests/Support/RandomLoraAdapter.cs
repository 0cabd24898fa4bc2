using System.Runtime.InteropServices;
using System.Text.Json;
using QwenSharp.Formats.Gguf;
using QwenSharp.Lora;
using QwenSharp.Qwen2;

namespace QwenSharp.Tests.Support;

/// <summary>Random A and B for some projections of some layers, written in PEFT's and in llama.cpp's form.</summary>
internal sealed class RandomLoraAdapter
{
    private readonly List<(int Layer, LoraTarget Target, int Rank, float[] A, float[] B, int In, int Out)> _pairs = [];
    private int _rank;
    private double _alpha;

    public static RandomLoraAdapter Make(Qwen2Config config, int rank, double alpha, int seed, IReadOnlyList<LoraTarget> targets, IReadOnlyList<int>? layers,
        Func<int, LoraTarget, int>? rankOf = null)
    {
        var random = new Random(seed);
        var adapter = new RandomLoraAdapter { _rank = rank, _alpha = alpha };
        foreach (int layer in layers ?? Enumerable.Range(0, config.NumHiddenLayers).ToList())
        {
            foreach (LoraTarget target in targets)
            {
                (int outDim, int inDim) = LoraTargets.Shape(target, config);
                int r = rankOf?.Invoke(layer, target) ?? rank;
                // Sized so that the update moves the logits clearly but keeps them in the model's range.
                float[] a = [.. Enumerable.Range(0, r * inDim).Select(_ => (float)((random.NextDouble() * 2) - 1) * 0.3f)];
                float[] b = [.. Enumerable.Range(0, outDim * r).Select(_ => (float)((random.NextDouble() * 2) - 1) * 0.1f)];
                adapter._pairs.Add((layer, target, r, a, b, inDim, outDim));
            }
        }

        return adapter;
    }

    public string WritePeft(string folder, Dictionary<string, object>? extraConfig = null)
    {
        Directory.CreateDirectory(folder);
        var config = new Dictionary<string, object>
        {
            ["peft_type"] = "LORA", ["task_type"] = "CAUSAL_LM", ["r"] = _rank, ["lora_alpha"] = _alpha, ["bias"] = "none",
            ["target_modules"] = _pairs.Select(p => LoraTargets.ModuleName(p.Target).Split('.')[1]).Distinct().ToArray(),
            ["base_model_name_or_path"] = "stories260K", ["use_rslora"] = false, ["use_dora"] = false, ["fan_in_fan_out"] = false,
        };
        foreach ((string key, object value) in extraConfig ?? [])
        {
            config[key] = value;
        }

        File.WriteAllText(Path.Combine(folder, "adapter_config.json"), JsonSerializer.Serialize(config));
        SafeTensorsWriter.Write(Path.Combine(folder, "adapter_model.safetensors"), [.. _pairs.SelectMany(p =>
        {
            string module = $"base_model.model.model.layers.{p.Layer}.{LoraTargets.ModuleName(p.Target)}";
            return new[]
            {
                new SafeTensorsWriter.Entry($"{module}.lora_A.weight", "F32", [p.Rank, p.In], SafeTensorsWriter.F32(p.A)),
                new SafeTensorsWriter.Entry($"{module}.lora_B.weight", "F32", [p.Out, p.Rank], SafeTensorsWriter.F32(p.B)),
            };
        })]);
        return folder;
    }

    /// <summary>
    /// As convert_lora_to_gguf.py writes it: lora_a [r, in] and lora_b [out, r] under the base tensor's GGUF name, alpha
    /// in adapter.lora.alpha, and for a llama model B's rows of q and k in the order its converter permutes the weights'.
    /// With <paramref name="scaleOf"/> each B carries its module's scaling instead (alpha 0: llama.cpp's scale 1).
    /// </summary>
    public string WriteGguf(string path, Qwen2Config config, Func<int, LoraTarget, int, double>? scaleOf = null, string? architecture = null,
        bool f16 = false, bool f16Values = false)
    {
        string arch = architecture ?? config.ModelType;
        var writer = new GgufWriter()
            .Add("general.architecture", arch).Add("general.type", "adapter").Add("adapter.type", "lora")
            .Add("adapter.lora.alpha", scaleOf is null ? (float)_alpha : 0f);
        foreach ((int layer, LoraTarget target, int rank, float[] a, float[] b, int inDim, int outDim) in _pairs)
        {
            float[] stored = new float[b.Length];
            for (int o = 0; o < outDim; o++)
            {
                int row = arch == "llama" && target is LoraTarget.Q or LoraTarget.K ? PermutedRow(o, config.HeadDim) : o;
                for (int j = 0; j < rank; j++)
                {
                    stored[(row * rank) + j] = (float)(b[(o * rank) + j] * (scaleOf?.Invoke(layer, target, rank) ?? 1));
                }
            }

            string name = $"blk.{layer}.{LoraTargets.GgufName(target)}.weight";
            // f16 as convert_lora_to_gguf.py writes by default (its --outtype f16): each value rounded to nearest even.
            // f16Values: f32 tensors holding the f16 file's values (the same adapter without llama.cpp's f16 products).
            writer.AddTensor($"{name}.lora_a", f16 ? GgmlType.F16 : GgmlType.F32, [rank, inDim], Encode(a, f16, f16Values));
            writer.AddTensor($"{name}.lora_b", f16 ? GgmlType.F16 : GgmlType.F32, [outDim, rank], Encode(stored, f16, f16Values));
        }

        writer.Write(path);
        return path;
    }

    private static byte[] Encode(float[] values, bool f16, bool f16Values) => f16
        ? MemoryMarshal.AsBytes(values.Select(v => (Half)v).ToArray().AsSpan()).ToArray()
        : MemoryMarshal.AsBytes((f16Values ? values.Select(v => (float)(Half)v).ToArray() : values).AsSpan()).ToArray();

    /// <summary>Where llama.cpp's converter puts Hugging Face row <paramref name="row"/> of q or k: within a head, t * d/2 + j goes to 2j + t.</summary>
    private static int PermutedRow(int row, int headDim)
    {
        int half = headDim / 2, head = row / headDim, within = row % headDim;
        return (head * headDim) + (2 * (within % half)) + (within / half);
    }
}
