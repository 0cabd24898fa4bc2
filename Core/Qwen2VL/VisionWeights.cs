using QwenSharp.Errors;
using QwenSharp.Formats;
using QwenSharp.Qwen2;

namespace QwenSharp.Qwen2VL;

/// <summary>One ViT block of the vision tower (pre-norm attention and MLP, both with biases). Shapes are [out, in].</summary>
public sealed record VisionBlockWeights<T>(
    T Norm1, T Norm1Bias,          // [embed]
    T Q, T QBias,                   // [embed, embed]: rows 0..embed of attn.qkv
    T K, T KBias,                   // rows embed..2·embed
    T V, T VBias,                   // rows 2·embed..3·embed
    T Proj, T ProjBias,             // [embed, embed]
    T Norm2, T Norm2Bias,           // [embed]
    T Fc1, T Fc1Bias,               // [mlp, embed]
    T Fc2, T Fc2Bias)               // [embed, mlp]
    where T : class
{
    public IEnumerable<T> Tensors => [Norm1, Norm1Bias, Q, QBias, K, KBias, V, VBias, Proj, ProjBias, Norm2, Norm2Bias, Fc1, Fc1Bias, Fc2, Fc2Bias];

    public VisionBlockWeights<TOut> Select<TOut>(Func<T, TOut> map)
        where TOut : class => new(
            map(Norm1), map(Norm1Bias), map(Q), map(QBias), map(K), map(KBias), map(V), map(VBias),
            map(Proj), map(ProjBias), map(Norm2), map(Norm2Bias), map(Fc1), map(Fc1Bias), map(Fc2), map(Fc2Bias));
}

/// <summary>The vision tower's weights under the checkpoint's <c>visual.*</c> names, shape-checked against vision_config.</summary>
public sealed record VisionWeights<T>(
    T PatchEmbed,                   // [embed, channels·frames·patch·patch]: the Conv3d kernel flattened, a matmul
    IReadOnlyList<VisionBlockWeights<T>> Blocks,
    T MergerNorm, T MergerNormBias, // [embed]
    T MergerFc1, T MergerFc1Bias,   // [4·embed, 4·embed]
    T MergerFc2, T MergerFc2Bias)   // [hidden, 4·embed]
    where T : class
{
    public IEnumerable<T> Tensors =>
        new[] { PatchEmbed, MergerNorm, MergerNormBias, MergerFc1, MergerFc1Bias, MergerFc2, MergerFc2Bias }.Concat(Blocks.SelectMany(b => b.Tensors));

    public VisionWeights<TOut> Select<TOut>(Func<T, TOut> map)
        where TOut : class => new(
            map(PatchEmbed), [.. Blocks.Select(b => b.Select(map))], map(MergerNorm), map(MergerNormBias),
            map(MergerFc1), map(MergerFc1Bias), map(MergerFc2), map(MergerFc2Bias));
}

/// <summary>Binds <c>visual.*</c> tensors; the fused qkv projection is split into three row ranges of the stored tensor (no copy).</summary>
public static class VisionWeightBinder
{
    public static VisionWeights<TensorView> Bind(VisionConfig config, ITensorSource source) =>
        Bind(config, (name, shape, meaning, _) =>
        {
            if (!source.TryGetView(name, out TensorView? view))
            {
                QwenThrow.InvalidData($"{source.Description}: tensor '{name}' not found (model_type qwen2_vl needs the vision tower's weights)");
            }

            if (!view.Shape.AsSpan().SequenceEqual(shape))
            {
                QwenThrow.InvalidData($"{view.Source}: tensor '{view.Name}' has shape {view.ShapeText}, expected {QwenThrow.Shape(shape)} {meaning}");
            }

            return view;
        });

    /// <summary>Asks <paramref name="resolve"/> for every stored tensor the vision config implies (as the checkpoint stores them).</summary>
    public static VisionWeights<TensorView> Bind(VisionConfig config, TensorResolver resolve)
    {
        int e = config.EmbedDim, merged = e * config.MergeUnit;
        TensorView Get(string name, long[] shape, string meaning) => resolve(name, shape, meaning, null);

        TensorView patch = Get("visual.patch_embed.proj.weight",
            [e, config.InChannels, config.TemporalPatchSize, config.PatchSize, config.PatchSize],
            "(embed_dim, in_chans, temporal_patch_size, patch_size, patch_size)");
        patch = patch with { Shape = [e, config.PatchValues] };

        var blocks = new VisionBlockWeights<TensorView>[config.Depth];
        for (int i = 0; i < blocks.Length; i++)
        {
            string p = $"visual.blocks.{i}.";
            TensorView qkv = Get(p + "attn.qkv.weight", [3L * e, e], "(3*embed_dim, embed_dim)");
            TensorView qkvBias = Get(p + "attn.qkv.bias", [3L * e], "(3*embed_dim)");
            blocks[i] = new VisionBlockWeights<TensorView>(
                Get(p + "norm1.weight", [e], "(embed_dim)"), Get(p + "norm1.bias", [e], "(embed_dim)"),
                Rows(qkv, 0, e, "q"), Rows(qkvBias, 0, e, "q"),
                Rows(qkv, e, e, "k"), Rows(qkvBias, e, e, "k"),
                Rows(qkv, 2 * e, e, "v"), Rows(qkvBias, 2 * e, e, "v"),
                Get(p + "attn.proj.weight", [e, e], "(embed_dim, embed_dim)"), Get(p + "attn.proj.bias", [e], "(embed_dim)"),
                Get(p + "norm2.weight", [e], "(embed_dim)"), Get(p + "norm2.bias", [e], "(embed_dim)"),
                Get(p + "mlp.fc1.weight", [config.MlpDim, e], "(embed_dim*mlp_ratio, embed_dim)"), Get(p + "mlp.fc1.bias", [config.MlpDim], "(embed_dim*mlp_ratio)"),
                Get(p + "mlp.fc2.weight", [e, config.MlpDim], "(embed_dim, embed_dim*mlp_ratio)"), Get(p + "mlp.fc2.bias", [e], "(embed_dim)"));
        }

        return new VisionWeights<TensorView>(
            patch, blocks,
            Get("visual.merger.ln_q.weight", [e], "(embed_dim)"), Get("visual.merger.ln_q.bias", [e], "(embed_dim)"),
            Get("visual.merger.mlp.0.weight", [merged, merged], "(embed_dim*spatial_merge_size², embed_dim*spatial_merge_size²)"),
            Get("visual.merger.mlp.0.bias", [merged], "(embed_dim*spatial_merge_size²)"),
            Get("visual.merger.mlp.2.weight", [config.HiddenSize, merged], "(hidden_size, embed_dim*spatial_merge_size²)"),
            Get("visual.merger.mlp.2.bias", [config.HiddenSize], "(hidden_size)"));
    }

    /// <summary>Rows <paramref name="first"/>.. of a matrix (or elements of a vector) as a view of the same bytes.</summary>
    private static TensorView Rows(TensorView tensor, long first, long count, string part)
    {
        long cols = tensor.Shape.Length == 2 ? tensor.Shape[1] : 1;
        long offset = DTypes.ByteLength(tensor.DType, first * cols);
        long[] shape = tensor.Shape.Length == 2 ? [count, cols] : [count];
        return tensor with { Name = $"{tensor.Name}[{part}]", Shape = shape, Data = tensor.Data + (nint)offset };
    }
}
