using QwenSharp.Formats;

namespace QwenSharp.Bench;

/// <summary>A linear layer's weight, [out, in], named as in Qwen2.5-0.5B.</summary>
public sealed record WeightShape(string Name, int Rows, int Cols)
{
    /// <summary>The weights of Qwen2.5-0.5B a decode step reads: q/o, gate/up, down, and the tied LM head.</summary>
    public static IEnumerable<WeightShape> Qwen25HalfB =>
    [
        new("q_proj", 896, 896),
        new("gate_proj", 4864, 896),
        new("down_proj", 896, 4864),
        new("lm_head", 151936, 896),
    ];

    public long Bytes(DType type) => (long)Rows * Cols * DTypes.SizeOf(type);

    public override string ToString() => $"{Name} {Rows}x{Cols}";
}
