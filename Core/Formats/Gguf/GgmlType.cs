namespace QwenSharp.Formats.Gguf;

/// <summary>The tensor types of GGUF (ggml's <c>ggml_type</c>), by their numbers in the file.</summary>
public enum GgmlType
{
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    Q8_K = 15,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ4_NL = 20,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ4_XS = 23,
    IQ1_M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
}

/// <summary>Block sizes of the GGUF tensor types: a row of n values takes n / BlockValues blocks of BlockBytes.</summary>
public static class GgmlTypes
{
    /// <summary>(values per block, bytes per block), as ggml's type traits; false for a number this reader does not know.</summary>
    public static bool TryGetBlock(int type, out int blockValues, out int blockBytes)
    {
        (blockValues, blockBytes) = (GgmlType)type switch
        {
            GgmlType.F32 => (1, 4),
            GgmlType.F16 => (1, 2),
            GgmlType.BF16 => (1, 2),
            GgmlType.Q4_0 => (32, 2 + 16),
            GgmlType.Q4_1 => (32, 2 + 2 + 16),
            GgmlType.Q5_0 => (32, 2 + 4 + 16),
            GgmlType.Q5_1 => (32, 2 + 2 + 4 + 16),
            GgmlType.Q8_0 => (32, 2 + 32),
            GgmlType.Q8_1 => (32, 4 + 4 + 32),
            GgmlType.Q2_K => (256, 16 + 64 + 2 + 2),
            GgmlType.Q3_K => (256, 32 + 64 + 12 + 2),
            GgmlType.Q4_K => (256, 2 + 2 + 12 + 128),
            GgmlType.Q5_K => (256, 2 + 2 + 12 + 32 + 128),
            GgmlType.Q6_K => (256, 128 + 64 + 16 + 2),
            GgmlType.Q8_K => (256, 4 + 256 + 32),
            GgmlType.IQ4_NL => (32, 2 + 16),
            GgmlType.IQ4_XS => (256, 2 + 2 + 4 + 128),

            // Types QwenSharp does not compute with, known by size so that a file holding them is read up to the one clear
            // refusal that names the tensor and its type (ggml's block_iq2_xxs ... block_tq2_0).
            GgmlType.IQ2_XXS => (256, 2 + 64),
            GgmlType.IQ2_XS => (256, 2 + 64 + 8),
            GgmlType.IQ3_XXS => (256, 2 + 96),
            GgmlType.IQ1_S => (256, 2 + 32 + 16),
            GgmlType.IQ3_S => (256, 2 + 64 + 8 + 32 + 4),
            GgmlType.IQ2_S => (256, 2 + 64 + 8 + 8),
            GgmlType.IQ1_M => (256, 32 + 16 + 8),
            GgmlType.TQ1_0 => (256, 48 + 4 + 2),
            GgmlType.TQ2_0 => (256, 64 + 2),
            _ => (0, 0),
        };
        return blockValues > 0;
    }

    /// <summary>"Q4_K", or "type 99" for a number this reader does not know.</summary>
    public static string Name(int type) => Enum.IsDefined((GgmlType)type) ? ((GgmlType)type).ToString() : $"type {type}";

    /// <summary>The element type QwenSharp computes with for a GGUF type, when it has one.</summary>
    public static bool TryGetDType(int type, out DType dtype)
    {
        switch ((GgmlType)type)
        {
            case GgmlType.F32: dtype = DType.F32; return true;
            case GgmlType.F16: dtype = DType.F16; return true;
            case GgmlType.BF16: dtype = DType.BF16; return true;
            case GgmlType.Q8_0: dtype = DType.Q8_0; return true;
            case GgmlType.Q4_0: dtype = DType.Q4_0; return true;
            case GgmlType.Q5_0: dtype = DType.Q5_0; return true;
            case GgmlType.Q4_1: dtype = DType.Q4_1; return true;
            case GgmlType.Q5_1: dtype = DType.Q5_1; return true;
            case GgmlType.Q2_K: dtype = DType.Q2_K; return true;
            case GgmlType.Q3_K: dtype = DType.Q3_K; return true;
            case GgmlType.IQ4_NL: dtype = DType.IQ4_NL; return true;
            case GgmlType.IQ4_XS: dtype = DType.IQ4_XS; return true;
            case GgmlType.Q4_K: dtype = DType.Q4_K; return true;
            case GgmlType.Q5_K: dtype = DType.Q5_K; return true;
            case GgmlType.Q6_K: dtype = DType.Q6_K; return true;
            default: dtype = default; return false;
        }
    }

    /// <summary>The GGUF type of a QwenSharp element type.</summary>
    public static GgmlType Of(DType dtype) => dtype switch
    {
        DType.F32 => GgmlType.F32,
        DType.F16 => GgmlType.F16,
        DType.BF16 => GgmlType.BF16,
        DType.Q8_0 => GgmlType.Q8_0,
        DType.Q4_0 => GgmlType.Q4_0,
        DType.Q5_0 => GgmlType.Q5_0,
        DType.Q4_1 => GgmlType.Q4_1,
        DType.Q5_1 => GgmlType.Q5_1,
        DType.Q2_K => GgmlType.Q2_K,
        DType.Q3_K => GgmlType.Q3_K,
        DType.IQ4_NL => GgmlType.IQ4_NL,
        DType.IQ4_XS => GgmlType.IQ4_XS,
        DType.Q4_K => GgmlType.Q4_K,
        DType.Q5_K => GgmlType.Q5_K,
        DType.Q6_K => GgmlType.Q6_K,
        DType.IQ3_XXS => GgmlType.IQ3_XXS,
        DType.IQ3_S => GgmlType.IQ3_S,
        DType.IQ2_S => GgmlType.IQ2_S,
        DType.IQ2_XS => GgmlType.IQ2_XS,
        DType.IQ2_XXS => GgmlType.IQ2_XXS,
        DType.IQ1_S => GgmlType.IQ1_S,
        DType.IQ1_M => GgmlType.IQ1_M,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "no GGUF type"),
    };
}
