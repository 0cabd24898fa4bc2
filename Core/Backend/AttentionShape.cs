namespace QwenSharp.Backend;

/// <summary>The head layout RoPE and attention need, fixed per model.</summary>
/// <param name="NumHeads">Query heads.</param>
/// <param name="NumKvHeads">Key/value heads; each serves NumHeads / NumKvHeads query heads.</param>
/// <param name="HeadDim">Width of one head.</param>
/// <param name="RopeTheta">RoPE base frequency.</param>
/// <param name="RopeScaling">How the rotary frequencies are stretched past the trained context; null for plain RoPE.</param>
public readonly record struct AttentionShape(int NumHeads, int NumKvHeads, int HeadDim, double RopeTheta, RopeScaling? RopeScaling = null)
{
    /// <summary>θᵢ of this shape's rotation, after its scaling.</summary>
    public double[] InverseFrequencies() => RopeScaling?.InverseFrequencies(HeadDim, RopeTheta) ?? RopeAngles.InverseFrequencies(HeadDim, RopeTheta);

    /// <summary>What cos and sin are multiplied by (YaRN's attention factor; 1 otherwise).</summary>
    public double RopeMagnitude => RopeScaling?.AttentionFactor ?? 1.0;

    public int GroupSize => NumHeads / NumKvHeads;
}
