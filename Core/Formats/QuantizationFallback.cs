namespace QwenSharp.Formats;

/// <summary>
/// The type a matrix is quantized to when its rows are not whole blocks of the type asked for, as llama.cpp's quantize
/// falls back: a k-quant's rows must be whole 256-value super-blocks (Qwen2.5-0.5B's 896-wide ones are not), and then
/// Q2_K and Q3_K take Q4_0, Q4_K takes Q5_0, Q5_K takes Q5_1, Q6_K takes Q8_0 and IQ4_XS takes IQ4_NL, as llama.cpp's do (older llama.cpp gave
/// Q2_K and Q3_K IQ4_NL, which has no quantizer here). Rows that are not whole 32-value blocks either
/// keep their stored type (llama.cpp's F16; the stored type loses nothing).
/// </summary>
public static class QuantizationFallback
{
    /// <summary>What a matrix of <paramref name="columns"/> values a row, stored as <paramref name="stored"/>, becomes when asked for <paramref name="target"/>.</summary>
    public static DType For(DType target, DType stored, long columns)
    {
        if (columns % DTypes.BlockValues(target) == 0)
        {
            return target;
        }

        DType fallback = target switch
        {
            DType.Q2_K or DType.Q3_K => DType.Q4_0,
            DType.Q4_K => DType.Q5_0,
            DType.Q5_K => DType.Q5_1,
            DType.Q6_K => DType.Q8_0,
            DType.IQ4_XS or DType.IQ3_XXS or DType.IQ3_S or DType.IQ2_S or DType.IQ2_XS or DType.IQ2_XXS or DType.IQ1_S or DType.IQ1_M => DType.IQ4_NL,
            _ => stored,
        };
        return columns % DTypes.BlockValues(fallback) == 0 ? fallback : stored;
    }
}
