namespace QwenSharp.Formats;

/// <summary>
/// Stored types the backends multiply as a wider type that holds every one of their values (the same scales and codes,
/// the same float operations: dequantizing the wider block gives the stored one's values bit for bit): Q5_0 and IQ4_NL as
/// Q8_0. Each backend stores such a matrix again at upload (<see cref="Numerics.LegacyQuantBlocks"/>,
/// <see cref="Numerics.WidenedBlocks"/>), where it then reads the wider type's bytes. (A CPU with GFNI and AVX-VNNI keeps
/// Q5_0's bytes instead, its blocks rearranged in pairs: the CPU backend's <c>Q5_0Pairs</c>; one with AVX-VNNI keeps
/// IQ4_NL's as stored: <c>Iq4NlRows</c>. <see cref="Backend.IBackend.MultipliesAs"/> says which.) (Q3_K was stored again as Q6_K, at
/// 210 bytes a super-block for 110, until the CPU's kernels and the GPU's shaders read it as stored.)
/// </summary>
public static class Widening
{
    /// <summary>The type a matrix stored as <paramref name="stored"/> is multiplied as; null where it is multiplied as stored.</summary>
    public static DType? Target(DType stored) => stored switch
    {
        DType.Q5_0 or DType.IQ4_NL => DType.Q8_0,
        _ => null,
    };

    /// <summary>Bytes a backend holds for <paramref name="tensor"/>: the wider type's for a matrix it widens, else as stored.</summary>
    public static long HeldBytes(TensorView tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        return tensor.Shape.Length == 2 && Target(tensor.DType) is DType target ? DTypes.ByteLength(target, tensor.ElementCount) : tensor.ByteLength;
    }
}
