using QwenSharp.Formats;

namespace QwenSharp.Backend;

/// <summary>
/// Which heads of a quantized KV cache every backend rotates, and by what, as llama.cpp does (its <c>attn_rot_k</c> and
/// <c>attn_rot_v</c>, on by default for quantized caches since April 2026): each head's keys and queries, and its values, are
/// multiplied by an orthonormal Walsh-Hadamard matrix H (Sylvester's, H[i][j] = (-1)^popcount(i &amp; j) / sqrt(n), so
/// H = Hᵀ and H·H = I) before the keys and values are stored, and each head's output by H again after attention. Scores
/// are unchanged, (Hq)·(Hk) = q·k, and the output is Σ p_j H v_j = H o; but one large element of a head no longer sets the
/// scale of its whole block of 32 codes: it is spread over n elements. Keys rotate in blocks of the largest power of two
/// that divides the head (64 or 128 for Qwen2's 64 and 128), values in blocks of 64; heads that are not a multiple of 64 do
/// not rotate, as in llama.cpp. The CPU's transform is <c>Cpu/Kernels/KvRotation.cs</c>, the GPU's is in its shaders.
/// </summary>
internal static class KvCacheRotation
{
    /// <summary>Values of a value rotation block, and the smallest block of either.</summary>
    public const int ValueBlock = 64;

    /// <summary>Whether a cache of <paramref name="type"/> rotates heads of <paramref name="headDim"/> values: q8_0 or q4_0, and whole multiples of 64.</summary>
    public static bool Applies(DType type, int headDim) => KvCache.IsQuantized(type) && headDim % ValueBlock == 0;

    /// <summary>The key rotation block for heads of <paramref name="headDim"/> (a multiple of 64): the largest power of two that divides it.</summary>
    public static int KeyBlock(int headDim) => headDim & -headDim;
}
