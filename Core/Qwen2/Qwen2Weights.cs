using QwenSharp.Backend;
using QwenSharp.Errors;
using QwenSharp.Formats;

namespace QwenSharp.Qwen2;

/// <summary>
/// The weights of one decoder layer, under the checkpoint's names. <typeparamref name="T"/> is a stored
/// <see cref="TensorView"/> after binding, a backend weight after upload. Shapes are [out, in].
/// </summary>
public sealed record Qwen2LayerWeights<T>(
    T InputLayernorm,          // [hidden]
    T QProj,                   // [heads * head_dim, hidden]
    T? QBias,                  // [heads * head_dim], Qwen2 only
    T KProj,                   // [kv_heads * head_dim, hidden]
    T? KBias,                  // [kv_heads * head_dim]
    T VProj,                   // [kv_heads * head_dim, hidden]
    T? VBias,                  // [kv_heads * head_dim]
    T OProj,                   // [hidden, heads * head_dim]
    T? OBias,                  // [hidden], Llama with attention_bias only
    T PostAttentionLayernorm,  // [hidden]
    T GateProj,                // [intermediate, hidden]
    T UpProj,                  // [intermediate, hidden]
    T DownProj)                // [hidden, intermediate]
    where T : class
{
    /// <summary>Every weight of the layer that exists (absent biases left out).</summary>
    public IEnumerable<T> Tensors =>
        new[] { InputLayernorm, QProj, QBias, KProj, KBias, VProj, VBias, OProj, OBias, PostAttentionLayernorm, GateProj, UpProj, DownProj }
            .OfType<T>();

    public Qwen2LayerWeights<TOut> Select<TOut>(Func<T, TOut> map)
        where TOut : class => new(
            map(InputLayernorm), map(QProj), QBias is null ? null : map(QBias), map(KProj), KBias is null ? null : map(KBias),
            map(VProj), VBias is null ? null : map(VBias), map(OProj), OBias is null ? null : map(OBias),
            map(PostAttentionLayernorm), map(GateProj), map(UpProj), map(DownProj));
}

/// <summary>What the stored weights of a model cost per decode step.</summary>
public static class Qwen2WeightBytes
{
    /// <summary>
    /// Bytes a one-token decode step reads: every layer matrix and the head, each whole, once (the embedding only one row,
    /// not counted; the norms and biases are too small to count). Decode GB/s is this times steps per second.
    /// </summary>
    public static long PerDecodeStep(Qwen2Weights<TensorView> weights) =>
        weights.LmHead.ByteLength + weights.Layers.SelectMany(layer => layer.Tensors).Where(t => t.Shape.Length == 2).Sum(t => t.ByteLength);

    /// <summary>
    /// <see cref="PerDecodeStep(Qwen2Weights{TensorView})"/> for weights on a backend: what its one-token products read of
    /// each matrix (<see cref="DeviceWeight.DecodeStepBytes"/>), which may be a copy laid out for its kernels.
    /// </summary>
    public static long PerDecodeStep(Qwen2Weights<DeviceWeight> weights) =>
        weights.LmHead.DecodeStepBytes + weights.Layers.SelectMany(layer => layer.Tensors).Where(w => w.Rows > 1).Sum(w => w.DecodeStepBytes);
}

/// <summary>All weights of a Qwen2/Llama causal LM, bound by name once and shape-checked against the config.</summary>
public sealed record Qwen2Weights<T>(
    T EmbedTokens,                          // [vocab, hidden]
    IReadOnlyList<Qwen2LayerWeights<T>> Layers,
    T Norm,                                 // [hidden]
    T LmHead)                               // [vocab, hidden]; the embedding table itself when tied
    where T : class
{
    /// <summary>Every weight once (a tied head is the embedding table itself).</summary>
    public IReadOnlyCollection<T> DistinctTensors()
    {
        var all = new HashSet<T>(ReferenceEqualityComparer.Instance) { EmbedTokens, Norm, LmHead };
        all.UnionWith(Layers.SelectMany(layer => layer.Tensors));
        return all;
    }

    public Qwen2Weights<TOut> Select<TOut>(Func<T, TOut> map)
        where TOut : class
    {
        TOut embed = map(EmbedTokens);
        return new(embed, [.. Layers.Select(layer => layer.Select(map))], map(Norm),
            ReferenceEquals(LmHead, EmbedTokens) ? embed : map(LmHead));
    }
}

/// <summary>
/// Finds the tensor a weight needs: <paramref name="name"/> as in the checkpoint, <paramref name="shape"/>
/// the shape the config implies, <paramref name="meaning"/> that shape in config.json's terms
/// ("(num_attention_heads*head_dim, hidden_size)"), <paramref name="whyNeeded"/> a note for a missing-tensor error.
/// </summary>
public delegate TensorView TensorResolver(string name, long[] shape, string meaning, string? whyNeeded);

/// <summary>Binds checkpoint tensors to the model's weights, with an error naming any missing or misshapen one.</summary>
public static class Qwen2WeightBinder
{
    /// <summary>Binds the tensors of <paramref name="source"/>, checking each one's shape against the config.</summary>
    public static Qwen2Weights<TensorView> Bind(Qwen2Config config, ITensorSource source) =>
        Bind(config, (name, shape, meaning, whyNeeded) =>
        {
            if (!source.TryGetView(name, out TensorView? view))
            {
                string why = whyNeeded is null ? "" : $" ({whyNeeded})";
                QwenThrow.InvalidData($"{source.Description}: tensor '{name}' not found{why}");
            }

            if (!view.Shape.AsSpan().SequenceEqual(shape))
            {
                QwenThrow.InvalidData(
                    $"{view.Source}: tensor '{view.Name}' has shape {view.ShapeText}, expected {QwenThrow.Shape(shape)} {meaning}");
            }

            return view;
        });

    /// <summary>Asks <paramref name="resolve"/> for every tensor the config implies, in checkpoint order.</summary>
    public static Qwen2Weights<TensorView> Bind(Qwen2Config config, TensorResolver resolve)
    {
        int hidden = config.HiddenSize;
        var (vocab, inter, q, kv) = (config.VocabSize, config.IntermediateSize, config.QDim, config.KvDim);
        const string H = "hidden_size", V = "vocab_size", I = "intermediate_size";
        const string Q = "num_attention_heads*head_dim", KV = "num_key_value_heads*head_dim";
        TensorView Vector(string name, long length, string lengthName) => resolve(name, [length], $"({lengthName})", null);
        TensorView Matrix(string name, long rows, string rowsName, long cols, string colsName, string? why = null) =>
            resolve(name, [rows, cols], $"({rowsName}, {colsName})", why);

        TensorView embed = Matrix("model.embed_tokens.weight", vocab, V, hidden, H);
        var layers = new Qwen2LayerWeights<TensorView>[config.NumHiddenLayers];
        for (int i = 0; i < layers.Length; i++)
        {
            string p = $"model.layers.{i}.";
            layers[i] = new Qwen2LayerWeights<TensorView>(
                InputLayernorm: Vector(p + "input_layernorm.weight", hidden, H),
                QProj: Matrix(p + "self_attn.q_proj.weight", q, Q, hidden, H),
                QBias: config.QkvBias ? Vector(p + "self_attn.q_proj.bias", q, Q) : null,
                KProj: Matrix(p + "self_attn.k_proj.weight", kv, KV, hidden, H),
                KBias: config.QkvBias ? Vector(p + "self_attn.k_proj.bias", kv, KV) : null,
                VProj: Matrix(p + "self_attn.v_proj.weight", kv, KV, hidden, H),
                VBias: config.QkvBias ? Vector(p + "self_attn.v_proj.bias", kv, KV) : null,
                OProj: Matrix(p + "self_attn.o_proj.weight", hidden, H, q, Q),
                OBias: config.OProjBias ? Vector(p + "self_attn.o_proj.bias", hidden, H) : null,
                PostAttentionLayernorm: Vector(p + "post_attention_layernorm.weight", hidden, H),
                GateProj: Matrix(p + "mlp.gate_proj.weight", inter, I, hidden, H),
                UpProj: Matrix(p + "mlp.up_proj.weight", inter, I, hidden, H),
                DownProj: Matrix(p + "mlp.down_proj.weight", hidden, H, inter, I));
        }

        TensorView norm = Vector("model.norm.weight", hidden, H);

        // transformers ties the head to the embedding whenever tie_word_embeddings is set, ignoring any stored lm_head. A
        // sequence classifier has no LM head (its score head is a ClassifierHead): the embedding stands in, and is never
        // multiplied by, since such a model does not give next-token logits.
        TensorView head = config.TieWordEmbeddings || config.IsSequenceClassifier
            ? embed
            : Matrix("lm_head.weight", vocab, V, hidden, H, "tie_word_embeddings is false, so the model needs its own LM head");
        return new Qwen2Weights<TensorView>(embed, layers, norm, head);
    }
}
