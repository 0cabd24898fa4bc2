namespace QwenSharp.Formats;

/// <summary>
/// A zero-copy view of one stored tensor: its bytes stay where they are (a memory-mapped file, or memory
/// owned by whoever made the view) and stay valid as long as that owner is alive.
/// </summary>
/// <param name="Name">The checkpoint name, e.g. <c>model.layers.0.self_attn.q_proj.weight</c>.</param>
/// <param name="Source">Where it came from (a file name), for error messages.</param>
/// <param name="DType">The stored element type.</param>
/// <param name="Shape">Row-major shape; <c>[out, in]</c> for a linear layer's weight.</param>
/// <param name="Data">Address of the first byte.</param>
public sealed record TensorView(string Name, string Source, DType DType, long[] Shape, nint Data)
{
    public long ElementCount
    {
        get
        {
            long count = 1;
            foreach (long dim in Shape)
            {
                count *= dim;
            }

            return count;
        }
    }

    public long ByteLength => DTypes.ByteLength(DType, ElementCount);

    /// <summary>The raw bytes (tensors over 2 GiB must be read through <see cref="Data"/> instead).</summary>
    public unsafe ReadOnlySpan<byte> Bytes => new((void*)Data, checked((int)ByteLength));

    public string ShapeText => Errors.QwenThrow.Shape(Shape);
}
