namespace QwenSharp.Formats;

/// <summary>The element types QwenSharp computes with; weights stay in their stored type.</summary>
public enum DType
{
    F32,
    F16,
    BF16,

    /// <summary>GGUF's Q8_0: blocks of 32 values, an f16 scale and 32 int8 (34 bytes); value = scale × q.</summary>
    Q8_0,

    /// <summary>GGUF's Q4_0: blocks of 32 values, an f16 scale and 32 four-bit codes (18 bytes); value = scale × (q - 8).</summary>
    Q4_0,

    /// <summary>
    /// GGUF's Q5_0: blocks of 32 values, an f16 scale, 32 fifth bits and 32 four-bit codes (22 bytes); value = scale × (q - 16).
    /// llama.cpp's quantizer stores a k-quant file's matrices whose rows are not whole super-blocks in it (Qwen2.5-0.5B's
    /// 896-wide ones in Q4_K_M).
    /// </summary>
    Q5_0,

    /// <summary>GGUF's Q4_1: blocks of 32 values, an f16 scale, an f16 minimum and 32 four-bit codes (20 bytes); value = scale × q + minimum.</summary>
    Q4_1,

    /// <summary>
    /// GGUF's Q5_1: blocks of 32 values, an f16 scale, an f16 minimum, 32 fifth bits and 32 four-bit codes (24 bytes); value =
    /// scale × q + minimum. llama.cpp's quantizer stores a Q5_K file's matrices whose rows are not whole super-blocks in it
    /// (Qwen2.5-0.5B's 896-wide ones in Q5_K_M).
    /// </summary>
    Q5_1,

    /// <summary>
    /// GGUF's Q2_K: super-blocks of 256 values in 84 bytes, 2-bit codes under 4-bit scales and mins of 16 values and f16 d
    /// and dmin (value = d × sc × q - dmin × m). Read from GGUF files (llama.cpp's Q2_K), not written.
    /// </summary>
    Q2_K,

    /// <summary>
    /// GGUF's Q3_K: super-blocks of 256 values in 110 bytes, 3-bit codes under 6-bit scales of 16 values and an f16 d. Read
    /// from GGUF files (llama.cpp's Q3_K_S/M/L) and multiplied as stored.
    /// </summary>
    Q3_K,

    /// <summary>
    /// GGUF's IQ4_NL: blocks of 32 values, an f16 scale and 4-bit indices into a table of 16 int8 values (18 bytes). Read
    /// from GGUF files and multiplied as Q8_0, which holds every value (<see cref="Widening"/>).
    /// </summary>
    IQ4_NL,

    /// <summary>
    /// GGUF's IQ4_XS: super-blocks of 256 values in 136 bytes, IQ4_NL's 4-bit table indices under a 6-bit scale per 32
    /// values and an f16 d (<see cref="Numerics.Iq4XsBlocks"/>). Read from GGUF files (llama.cpp's IQ4_XS) and multiplied
    /// as stored.
    /// </summary>
    IQ4_XS,

    /// <summary>GGUF's Q4_K: super-blocks of 256 values in 144 bytes, 4-bit codes under 6-bit scales and mins (see <see cref="Numerics.KQuantBlocks"/>).</summary>
    Q4_K,

    /// <summary>GGUF's Q5_K: super-blocks of 256 values in 176 bytes, Q4_K with a fifth bit per code.</summary>
    Q5_K,

    /// <summary>GGUF's Q6_K: super-blocks of 256 values in 210 bytes, 6-bit codes under int8 scales of 16 values.</summary>
    Q6_K,

    /// <summary>
    /// GGUF's IQ3_XXS: super-blocks of 256 values in 98 bytes, groups of four magnitudes as one of 256 lattice points, 7 sign
    /// bits a group of eight and a 4-bit scale per 32 (<see cref="Numerics.Iq3Quantizer"/>). Written to GGUF files; a model
    /// holds it as the Q6_K that has every value (<see cref="Numerics.IqBlocks.ToQ6_K"/>).
    /// </summary>
    IQ3_XXS,

    /// <summary>
    /// GGUF's IQ3_S: super-blocks of 256 values in 110 bytes, groups of four magnitudes as one of 512 lattice points, a sign
    /// bit a value and a 4-bit scale per 32 (<see cref="Numerics.Iq3Quantizer"/>). Written to GGUF files (llama-quantize's
    /// IQ3_S, IQ3_M and IQ3_XS hold it); a model holds it as Q6_K, as for IQ3_XXS.
    /// </summary>
    IQ3_S,

    /// <summary>
    /// GGUF's IQ2_S: super-blocks of 256 values in 82 bytes, groups of eight magnitudes as one of 1024 lattice points, a sign
    /// bit a value and a 4-bit scale per 16 (<see cref="Numerics.Iq2Quantizer"/>). Written to GGUF files (llama-quantize's
    /// IQ2_M and IQ3_XXS hold it); a model holds it as Q8_0 of its values, as an IQ2 file's are.
    /// </summary>
    IQ2_S,

    /// <summary>GGUF's IQ2_XS: super-blocks of 256 values in 74 bytes, eight magnitudes as one of 512 points with 7 sign bits, a 4-bit scale per 16 (with an importance matrix only; held as Q8_0).</summary>
    IQ2_XS,

    /// <summary>GGUF's IQ2_XXS: super-blocks of 256 values in 66 bytes, eight magnitudes as one of 256 points, 7 sign bits a group of eight, a 4-bit scale per 32 (with an importance matrix only; held as Q8_0).</summary>
    IQ2_XXS,

    /// <summary>GGUF's IQ1_S: super-blocks of 256 values in 50 bytes, eight values of -1, 0, 1 (shifted by ±1/8) as one of 2048 points, a 3-bit scale per 32 (with an importance matrix only; held as the Q6_K that has its values).</summary>
    IQ1_S,

    /// <summary>GGUF's IQ1_M: super-blocks of 256 values in 56 bytes, IQ1_S's points with a shift sign a group of eight, a 3-bit scale per 16, the f16 d in the scale words (with an importance matrix only; held as Q6_K).</summary>
    IQ1_M,
}

/// <summary>safetensors dtype names and element sizes.</summary>
public static class DTypes
{
    /// <summary>Bytes per element of a float type (F32, F16, BF16); block types have <see cref="BlockBytes"/> instead.</summary>
    public static int SizeOf(DType type) => type switch
    {
        DType.F32 => 4,
        DType.F16 => 2,
        DType.BF16 => 2,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "a block-quantized type has no size per element"),
    };

    /// <summary>Values per block: 1 for the float types, 32 for Q8_0, 256 for the k-quants.</summary>
    public static int BlockValues(DType type) => type switch
    {
        DType.Q8_0 or DType.Q4_0 or DType.Q5_0 or DType.Q4_1 or DType.Q5_1 or DType.IQ4_NL => 32,
        DType.Q2_K or DType.Q3_K or DType.IQ4_XS or DType.Q4_K or DType.Q5_K or DType.Q6_K or DType.IQ3_XXS or DType.IQ3_S or DType.IQ2_S or DType.IQ2_XS or DType.IQ2_XXS or DType.IQ1_S or DType.IQ1_M => 256,
        _ => 1,
    };

    /// <summary>Bytes per block: the element size for the float types, 34 for Q8_0, 18 for Q4_0, 22 for Q5_0, 20 for Q4_1, 24 for Q5_1, 84 for Q2_K, 110 for Q3_K, 18 for IQ4_NL, 136 for IQ4_XS, 144 for Q4_K, 176 for Q5_K, 210 for Q6_K, 98 for IQ3_XXS, 110 for IQ3_S, 82 for IQ2_S, 74 for IQ2_XS, 66 for IQ2_XXS, 50 for IQ1_S, 56 for IQ1_M.</summary>
    public static int BlockBytes(DType type) => type switch
    {
        DType.Q8_0 => 34,
        DType.Q4_0 => 18,
        DType.Q5_0 => 22,
        DType.Q4_1 => 20,
        DType.Q5_1 => 24,
        DType.Q2_K => 84,
        DType.Q3_K => 110,
        DType.IQ4_NL => 18,
        DType.IQ4_XS => 136,
        DType.Q4_K => 144,
        DType.Q5_K => 176,
        DType.Q6_K => 210,
        DType.IQ3_XXS => Numerics.Iq3Quantizer.Iq3XxsBlockBytes,
        DType.IQ3_S => Numerics.Iq3Quantizer.Iq3SBlockBytes,
        DType.IQ2_S => Numerics.Iq2Quantizer.Iq2SBlockBytes,
        DType.IQ2_XS => Numerics.Iq2Quantizer.Iq2XsBlockBytes,
        DType.IQ2_XXS => Numerics.Iq2Quantizer.Iq2XxsBlockBytes,
        DType.IQ1_S => Numerics.Iq1Quantizer.Iq1SBlockBytes,
        DType.IQ1_M => Numerics.Iq1Quantizer.Iq1MBlockBytes,
        _ => SizeOf(type),
    };

    /// <summary>The lattice i-quant <paramref name="type"/> is (IQ1-IQ3, which <see cref="Numerics.IqBlocks"/> reads), or null.</summary>
    public static Numerics.IqType? IqTypeOf(DType type) => type switch
    {
        DType.IQ3_XXS => Numerics.IqType.Iq3Xxs,
        DType.IQ3_S => Numerics.IqType.Iq3S,
        DType.IQ2_S => Numerics.IqType.Iq2S,
        DType.IQ2_XS => Numerics.IqType.Iq2Xs,
        DType.IQ2_XXS => Numerics.IqType.Iq2Xxs,
        DType.IQ1_S => Numerics.IqType.Iq1S,
        DType.IQ1_M => Numerics.IqType.Iq1M,
        _ => null,
    };

    /// <summary>Whether the type stores blocks of values with a shared scale (GGUF's quantized types).</summary>
    public static bool IsQuantized(DType type) => type is DType.Q8_0 or DType.Q4_0 or DType.Q5_0 or DType.Q4_1 or DType.Q5_1 or DType.Q2_K or DType.Q3_K or DType.IQ4_NL or DType.IQ4_XS or DType.Q4_K or DType.Q5_K or DType.Q6_K or DType.IQ3_XXS or DType.IQ3_S or DType.IQ2_S or DType.IQ2_XS or DType.IQ2_XXS or DType.IQ1_S or DType.IQ1_M;

    /// <summary>Bytes of <paramref name="values"/> values (a whole number of blocks) in the type.</summary>
    public static long ByteLength(DType type, long values) => values / BlockValues(type) * BlockBytes(type);

    /// <summary>The name safetensors and Hugging Face use ("BF16"), also accepted in lower case on the command line.</summary>
    public static string Name(DType type) => type switch
    {
        DType.F32 => "F32",
        DType.F16 => "F16",
        DType.BF16 => "BF16",
        DType.Q8_0 => "Q8_0",
        DType.Q4_0 => "Q4_0",
        DType.Q5_0 => "Q5_0",
        DType.Q4_1 => "Q4_1",
        DType.Q5_1 => "Q5_1",
        DType.Q2_K => "Q2_K",
        DType.Q3_K => "Q3_K",
        DType.IQ4_NL => "IQ4_NL",
        DType.IQ4_XS => "IQ4_XS",
        DType.Q4_K => "Q4_K",
        DType.Q5_K => "Q5_K",
        DType.Q6_K => "Q6_K",
        DType.IQ3_XXS => "IQ3_XXS",
        DType.IQ3_S => "IQ3_S",
        DType.IQ2_S => "IQ2_S",
        DType.IQ2_XS => "IQ2_XS",
        DType.IQ2_XXS => "IQ2_XXS",
        DType.IQ1_S => "IQ1_S",
        DType.IQ1_M => "IQ1_M",
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "unknown dtype"),
    };

    /// <summary>Parses a supported dtype name ("BF16", "bf16", "bfloat16", "float32", ...).</summary>
    public static bool TryParse(string name, out DType type)
    {
        switch (name.ToUpperInvariant())
        {
            case "F32" or "FLOAT32" or "FP32": type = DType.F32; return true;
            case "F16" or "FLOAT16" or "FP16": type = DType.F16; return true;
            case "BF16" or "BFLOAT16": type = DType.BF16; return true;
            case "Q8_0": type = DType.Q8_0; return true;
            case "Q4_0": type = DType.Q4_0; return true;
            case "Q5_0": type = DType.Q5_0; return true;
            case "Q4_1": type = DType.Q4_1; return true;
            case "Q5_1": type = DType.Q5_1; return true;
            case "Q4_K": type = DType.Q4_K; return true;
            case "Q5_K": type = DType.Q5_K; return true;
            case "Q6_K": type = DType.Q6_K; return true;
            case "Q2_K": type = DType.Q2_K; return true;
            case "Q3_K": type = DType.Q3_K; return true;
            case "IQ4_NL": type = DType.IQ4_NL; return true;
            case "IQ4_XS": type = DType.IQ4_XS; return true;
            case "IQ3_XXS": type = DType.IQ3_XXS; return true;
            case "IQ3_S": type = DType.IQ3_S; return true;
            case "IQ2_S": type = DType.IQ2_S; return true;
            case "IQ2_XS": type = DType.IQ2_XS; return true;
            case "IQ2_XXS": type = DType.IQ2_XXS; return true;
            case "IQ1_S": type = DType.IQ1_S; return true;
            case "IQ1_M": type = DType.IQ1_M; return true;
            default: type = default; return false;
        }
    }

    /// <summary>The exact dtype names a safetensors header uses for the types we compute with.</summary>
    public static bool TryParseSafeTensorsName(string name, out DType type)
    {
        switch (name)
        {
            case "F32": type = DType.F32; return true;
            case "F16": type = DType.F16; return true;
            case "BF16": type = DType.BF16; return true;
            default: type = default; return false;
        }
    }

    /// <summary>
    /// Element size of every dtype the safetensors format defines, so that tensors we do not compute with
    /// are still validated at load; null for a name the format does not define.
    /// </summary>
    internal static int? SafeTensorsElementSize(string name) => name switch
    {
        "BOOL" or "U8" or "I8" or "F8_E5M2" or "F8_E4M3" or "F8_E8M0" => 1,
        "I16" or "U16" or "F16" or "BF16" => 2,
        "I32" or "U32" or "F32" => 4,
        "I64" or "U64" or "F64" => 8,
        _ => null,
    };
}
