using QwenSharp.Errors;
using QwenSharp.Qwen2;

namespace QwenSharp.Qwen2VL;

/// <summary>
/// A prompt with pictures, ready for the text model: its token ids with each picture's pad expanded to one
/// pad per merged patch, the 3-D rotary positions of every token, and the vision tower's features that replace
/// the pads' embeddings. Built once per prompt (the vision tower runs here); prefill reads rows of it.
/// </summary>
public sealed class VisionPrompt
{
    private readonly int[] _featureRow;

    private VisionPrompt(IReadOnlyList<int> tokens, MRopePositions positions, float[] features, int[] featureRow, int hidden)
    {
        Tokens = tokens;
        Positions = positions;
        Features = features;
        _featureRow = featureRow;
        Hidden = hidden;
    }

    public IReadOnlyList<int> Tokens { get; }

    public MRopePositions Positions { get; }

    /// <summary>[image tokens, hidden]: the vision tower's output, pictures in prompt order.</summary>
    public float[] Features { get; }

    private int Hidden { get; }

    /// <summary>How far generated tokens' rotary positions are from their index (M-RoPE's rope_deltas).</summary>
    public int RopeDelta => Positions.RopeDelta;

    /// <summary>
    /// Each <c>&lt;|image_pad|&gt;</c> of <paramref name="ids"/> (one per picture, as the chat template writes it) repeated
    /// once per merged patch of its picture, as Qwen2-VL's processor expands the text before tokenizing.
    /// </summary>
    public static List<int> ExpandImagePads(IReadOnlyList<int> ids, IReadOnlyList<ImagePatches> images, Qwen2Config config) =>
        ExpandImagePads(ids, [.. images.Select(i => i.Patches / config.Vision!.MergeUnit)], config);

    /// <summary>As <see cref="ExpandImagePads(IReadOnlyList{int}, IReadOnlyList{ImagePatches}, Qwen2Config)"/>, from each picture's token count.</summary>
    public static List<int> ExpandImagePads(IReadOnlyList<int> ids, IReadOnlyList<int> tokensPerImage, Qwen2Config config)
    {
        int pad = config.ImageTokenId ?? throw new NotSupportedException($"model_type {config.ModelType} takes no pictures");
        IReadOnlyList<int> images = tokensPerImage;
        var expanded = new List<int>(ids.Count + images.Sum());
        int image = 0;
        foreach (int id in ids)
        {
            if (id != pad)
            {
                expanded.Add(id);
                continue;
            }

            if (image == images.Count)
            {
                QwenThrow.Argument($"the prompt has more <|image_pad|> tokens than the {images.Count} pictures given", nameof(images));
            }

            expanded.AddRange(Enumerable.Repeat(pad, images[image++]));
        }

        if (image != images.Count)
        {
            QwenThrow.Argument($"{images.Count} pictures were given and the prompt has {image} <|image_pad|> tokens (one per picture)", nameof(images));
        }

        return expanded;
    }

    /// <summary>
    /// Runs the vision tower over <paramref name="images"/> and lays out <paramref name="tokens"/> (pads already
    /// expanded, see <see cref="ExpandImagePads"/>) for the text model.
    /// </summary>
    public static VisionPrompt Create(Qwen2Model model, IReadOnlyList<int> tokens, IReadOnlyList<ImagePatches> images)
    {
        ArgumentNullException.ThrowIfNull(model);
        Qwen2Config config = model.Config;
        VisionTower tower = model.Vision ?? throw new NotSupportedException($"this model (model_type {config.ModelType}) has no vision tower: it takes no pictures");
        MRopePositions positions = MRopePositions.For(tokens, [.. images.Select(i => (i.GridT, i.GridH, i.GridW))],
            config.ImageTokenId!.Value, config.VisionStartTokenId!.Value, config.Vision!.SpatialMergeSize);
        VisionEncoding encoding = tower.Encode(images);
        var featureRow = new int[tokens.Count];
        int next = 0;
        for (int i = 0; i < tokens.Count; i++)
        {
            featureRow[i] = tokens[i] == config.ImageTokenId ? next++ : -1;
        }

        if (next != encoding.Tokens)
        {
            QwenThrow.Argument($"the prompt has {next} image pads and its pictures give {encoding.Tokens} features", nameof(tokens));
        }

        return new VisionPrompt(tokens, positions, encoding.Features, featureRow, config.HiddenSize);
    }

    /// <summary>Adds token <paramref name="index"/> of the prompt to <paramref name="batch"/> with its rotary position and, for a pad, its feature row.</summary>
    public void AddToBatch(TokenBatch batch, int index, int slot, bool wantLogits)
    {
        int row = _featureRow[index];
        batch.Add(Tokens[index], index, slot, wantLogits, Positions.T[index], Positions.H[index], Positions.W[index],
            row < 0 ? null : Features, row < 0 ? 0 : row * Hidden);
    }

    /// <summary>Adds a generated token at sequence index <paramref name="position"/>: all three rotary rows at position + delta.</summary>
    public static void AddGenerated(TokenBatch batch, int token, int position, int slot, bool wantLogits, int ropeDelta)
    {
        int p = position + ropeDelta;
        batch.Add(token, position, slot, wantLogits, p, p, p);
    }
}
