namespace QwenSharp.Formats.Gguf;

/// <summary>One tensor of a GGUF file as its header describes it.</summary>
/// <param name="Name">"blk.0.attn_q.weight".</param>
/// <param name="Dimensions">ggml order: <c>Dimensions[0]</c> is the contiguous one (the columns of a matrix).</param>
/// <param name="Type">The <see cref="GgmlType"/> number.</param>
/// <param name="Offset">From the start of the data section (of its part's file, for a split model).</param>
/// <param name="ByteLength">Bytes its values take.</param>
public sealed record GgufTensorInfo(string Name, long[] Dimensions, int Type, long Offset, long ByteLength)
{
    /// <summary>Which file of a split model holds it (0: the first, or the only file).</summary>
    public int Part { get; init; }

    /// <summary>Row-major shape, outermost first (PyTorch's order: [out, in] for a matrix).</summary>
    public long[] Shape => [.. Dimensions.Reverse()];
}
