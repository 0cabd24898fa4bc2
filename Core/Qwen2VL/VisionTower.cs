using QwenSharp.Backend;
using QwenSharp.Formats;

namespace QwenSharp.Qwen2VL;

/// <summary>The vision tower's output for the pictures of one prompt, and (when asked) what came before the merger.</summary>
/// <param name="Features">[tokens, hidden]: one row per merged token, pictures in order; these replace the image pads' embeddings.</param>
/// <param name="PatchEmbeddings">[patches, embed] after the patch embedding, or null.</param>
/// <param name="PreMerger">[patches, embed] after the last block, or null.</param>
public sealed record VisionEncoding(float[] Features, int Tokens, float[]? PatchEmbeddings = null, float[]? PreMerger = null);

/// <summary>
/// Qwen2-VL's vision transformer (transformers' <c>Qwen2VisionTransformerPretrainedModel</c>), written against
/// <see cref="IBackend"/>: the Conv3d patch embedding as one matmul over all patches, <c>depth</c> pre-norm blocks
/// (LayerNorm, attention with 2-D rotary positions within each picture, LayerNorm, quick_gelu MLP), and the
/// merger (LayerNorm, each 2x2 group of patches concatenated, Linear, GELU, Linear to the text width).
/// </summary>
public sealed class VisionTower : IDisposable
{
    private readonly VisionWeights<DeviceWeight> _w;
    private readonly DeviceWeight[] _uploaded;
    private readonly AttentionShape _shape;
    private readonly double[] _inverseFrequencies;

    public VisionTower(VisionConfig config, ITensorSource source, IBackend backend)
    {
        Config = config;
        Backend = backend;
        Weights = VisionWeightBinder.Bind(config, source);
        var uploaded = new List<DeviceWeight>();
        _w = Weights.Select(view =>
        {
            DeviceWeight weight = backend.Upload(view);
            uploaded.Add(weight);
            return weight;
        });
        _uploaded = [.. uploaded];
        _shape = new AttentionShape(config.NumHeads, config.NumHeads, config.HeadDim, VisionConfig.RopeTheta);

        // VisionRotaryEmbedding(head_dim / 2): d/4 frequencies, the first half of each head's pairs rotated by
        // the patch's row, the second half by its column.
        _inverseFrequencies = RopeAngles.InverseFrequencies(config.HeadDim / 2, VisionConfig.RopeTheta);
    }

    public VisionConfig Config { get; }

    public IBackend Backend { get; }

    /// <summary>The stored tensors (for sizes in <c>info</c>).</summary>
    public VisionWeights<TensorView> Weights { get; }

    /// <summary>Floating-point operations of <see cref="Encode"/> on <paramref name="patches"/> patches in one picture (matmuls and attention).</summary>
    public double Flops(int patches)
    {
        VisionConfig c = Config;
        double perPatch = (double)c.PatchValues * c.EmbedDim
            + (c.Depth * ((4.0 * c.EmbedDim * c.EmbedDim) + (2.0 * c.EmbedDim * c.MlpDim)))
            + ((double)c.MergeUnit * c.EmbedDim * ((c.EmbedDim * c.MergeUnit) + c.HiddenSize) / c.MergeUnit);
        double attention = c.Depth * 2.0 * patches * (double)patches * c.EmbedDim;
        return (2.0 * perPatch * patches) + (2.0 * attention);
    }

    /// <summary>Runs the tower over the patches of <paramref name="images"/> together (one batch, attention kept within each picture).</summary>
    public VisionEncoding Encode(IReadOnlyList<ImagePatches> images, bool keepIntermediates = false)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (images.Count == 0)
        {
            return new VisionEncoding([], 0);
        }

        VisionConfig c = Config;
        IBackend b = Backend;
        int n = images.Sum(i => i.Patches), e = c.EmbedDim, unit = c.MergeUnit, tokens = n / unit;
        var starts = new List<int> { 0 };
        foreach (ImagePatches image in images)
        {
            if (image.PixelValues.Length != (long)image.Patches * c.PatchValues || image.GridH % c.SpatialMergeSize != 0 || image.GridW % c.SpatialMergeSize != 0)
            {
                throw new ArgumentException($"a picture's patches ({image.GridT}x{image.GridH}x{image.GridW}, {image.PixelValues.Length} values) do not fit this vision tower");
            }

            // cu_seqlens: each frame of each picture is its own attention segment.
            for (int t = 0; t < image.GridT; t++)
            {
                starts.Add(starts[^1] + (image.GridH * image.GridW));
            }
        }

        using DeviceBuffer pixels = b.Allocate(n, c.PatchValues), x = b.Allocate(n, e), xb = b.Allocate(n, e);
        using DeviceBuffer q = b.Allocate(n, e), k = b.Allocate(n, e), v = b.Allocate(n, e), attn = b.Allocate(n, e);
        using DeviceBuffer mlp = b.Allocate(n, c.MlpDim);
        using DeviceBuffer merged = b.Allocate(tokens, e * unit), mergedHidden = b.Allocate(tokens, e * unit), output = b.Allocate(tokens, c.HiddenSize);
        Activation px = pixels.Rows(n), hx = x.Rows(n), hb = xb.Rows(n), hq = q.Rows(n), hk = k.Rows(n), hv = v.Rows(n), ha = attn.Rows(n), hm = mlp.Rows(n);

        int row = 0;
        foreach (ImagePatches image in images)
        {
            b.WriteRows(image.PixelValues, px, row);
            row += image.Patches;
        }

        // Patch embedding: Conv3d with kernel = stride = (2, 14, 14) over each patch is a matmul with the flattened kernel.
        b.Linear(px, _w.PatchEmbed, null, hx);
        float[]? patchEmbeddings = keepIntermediates ? Download(hx) : null;

        (float[] cos, float[] sin) = RotaryTables(images, n);
        int[] segments = [.. starts];
        foreach (VisionBlockWeights<DeviceWeight> w in _w.Blocks)
        {
            // Attention: pre-norm, q/k/v with biases, 2-D RoPE, bidirectional within each picture, projection, residual.
            b.LayerNorm(hx, w.Norm1, w.Norm1Bias, (float)VisionConfig.LayerNormEps, hb);
            b.QkvProjection(hb, w.Q, w.QBias, hq, w.K, w.KBias, hk, w.V, w.VBias, hv);
            b.RopeTable(hq, hk, cos, sin, _shape);
            b.SegmentAttention(hq, hk, hv, segments, _shape, ha);
            b.Linear(ha, w.Proj, w.ProjBias, hb);
            b.Add(hx, hb);

            // MLP: pre-norm, fc1, quick_gelu, fc2, residual.
            b.LayerNorm(hx, w.Norm2, w.Norm2Bias, (float)VisionConfig.LayerNormEps, hb);
            b.Linear(hb, w.Fc1, w.Fc1Bias, hm);
            b.Activate(hm, ActivationFunction.QuickGelu);
            b.Linear(hm, w.Fc2, w.Fc2Bias, hb);
            b.Add(hx, hb);
        }

        float[]? preMerger = keepIntermediates ? Download(hx) : null;

        // Merger: LayerNorm per patch, then each group of 2x2 consecutive patches (merge-major order) as one row of
        // 4·embed: the same bytes read with another row width.
        b.LayerNorm(hx, _w.MergerNorm, _w.MergerNormBias, (float)VisionConfig.LayerNormEps, hb);
        float[] normed = Download(hb);
        Activation mx = merged.Rows(tokens), mh = mergedHidden.Rows(tokens), ox = output.Rows(tokens);
        b.Write(normed, mx);
        b.Linear(mx, _w.MergerFc1, _w.MergerFc1Bias, mh);
        b.Activate(mh, ActivationFunction.Gelu);
        b.Linear(mh, _w.MergerFc2, _w.MergerFc2Bias, ox);
        return new VisionEncoding(Download(ox), tokens, patchEmbeddings, preMerger);
    }

    private float[] Download(Activation a)
    {
        var values = new float[(long)a.Rows * a.Cols];
        Backend.Download(a, values);
        return values;
    }

    /// <summary>
    /// cos and sin [patches, head_dim/2] of each patch's 2-D rotary angles (transformers' <c>rot_pos_emb</c>): pair i
    /// &lt; d/4 turns by the patch row times θᵢ, pair d/4 + i by the patch column times θᵢ; rows in merge-major order.
    /// </summary>
    private (float[] Cos, float[] Sin) RotaryTables(IReadOnlyList<ImagePatches> images, int patches)
    {
        int half = Config.HeadDim / 2, quarter = half / 2, m = Config.SpatialMergeSize;
        var cos = new float[patches * half];
        var sin = new float[patches * half];
        int row = 0;
        foreach (ImagePatches image in images)
        {
            for (int t = 0; t < image.GridT; t++)
            {
                for (int bh = 0; bh < image.GridH / m; bh++)
                {
                    for (int bw = 0; bw < image.GridW / m; bw++)
                    {
                        for (int mh = 0; mh < m; mh++)
                        {
                            for (int mw = 0; mw < m; mw++, row++)
                            {
                                int h = (bh * m) + mh, w = (bw * m) + mw;
                                Span<float> c = cos.AsSpan(row * half, half), s = sin.AsSpan(row * half, half);
                                RopeAngles.Compute(h, _inverseFrequencies, c[..quarter], s[..quarter]);
                                RopeAngles.Compute(w, _inverseFrequencies, c[quarter..], s[quarter..]);
                            }
                        }
                    }
                }
            }
        }

        return (cos, sin);
    }

    public void Dispose()
    {
        foreach (DeviceWeight weight in _uploaded)
        {
            weight.Dispose();
        }
    }
}
