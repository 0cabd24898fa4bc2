namespace QwenSharp.Backend;

/// <summary>The head layout RoPE and attention need, fixed per model.</summary>
/// <param name="NumHeads">Query heads.</param>
/// <param name="NumKvHeads">Key/value heads; each serves NumHeads / NumKvHeads query heads.</param>
/// <param name="HeadDim">Width of one head.</param>
/// <param name="RopeTheta">RoPE base frequency.</param>
public readonly record struct AttentionShape(int NumHeads, int NumKvHeads, int HeadDim, double RopeTheta)
{
    public int GroupSize => NumHeads / NumKvHeads;
}
