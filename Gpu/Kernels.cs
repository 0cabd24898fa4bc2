using System.Runtime.InteropServices;

namespace QwenSharp.Gpu;

// The push-constant blocks of Shaders/*.comp, field for field in std430 order (64-bit addresses first).

[StructLayout(LayoutKind.Sequential)]
internal struct EmbedPush
{
    public ulong Table, Tokens, X;
    public uint Rows, Cols;
}

[StructLayout(LayoutKind.Sequential)]
internal struct RmsNormPush
{
    public ulong X, Weight, Y;
    public uint Rows, Cols;
    public float Eps;
}

[StructLayout(LayoutKind.Sequential)]
internal struct LinearPush
{
    // Up to three weights against one x (matvec.comp): 0 addresses and 0 rows past the last; Norm, NormOut and
    // Residual 0 unless an RMSNorm before or an add after is fused.
    public ulong X, W0, W1, W2, Bias0, Bias1, Bias2, Y0, Y1, Y2, Norm, NormOut, Residual;
    public uint Rows0, Rows1, Rows2, Cols;
    public float Eps;
    public uint Flags;
}

[StructLayout(LayoutKind.Sequential)]
internal struct GemmPush
{
    public ulong X, W, Bias, Y;
    public uint M, N, K, TilesN;
}

[StructLayout(LayoutKind.Sequential)]
internal struct SplitRowsPush
{
    public ulong X, Hi, Lo, Unscale;
    public uint Rows, Cols;
}

[StructLayout(LayoutKind.Sequential)]
internal struct CoopGemmPush
{
    public ulong Hi, Lo, Unscale, W, Bias, Y;
    public uint M, N, K, TilesN;
}

[StructLayout(LayoutKind.Sequential)]
internal struct RopePush
{
    // V, Keys, Values, SlotsPositions 0 unless the cache store is fused (rope.comp).
    public ulong Q, K, Angles, V, Keys, Values, SlotsPositions;
    public uint Rows, Heads, KvHeads, HeadDim, Capacity;
}

[StructLayout(LayoutKind.Sequential)]
internal struct KvStorePush
{
    public ulong K, V, Keys, Values, SlotsPositions;
    public uint Rows, KvDim, Capacity;
}

[StructLayout(LayoutKind.Sequential)]
internal struct KvStoreQuantizedPush
{
    public ulong K, V, Keys, Values, SlotsPositions;
    public uint Rows, KvDim, Capacity, HeadDim, KeyBlock, ValueBlock, RowBytes;
}

[StructLayout(LayoutKind.Sequential)]
internal struct AttentionPush
{
    public ulong Q, Keys, Values, SlotsPositions, Out;
    public uint Rows, Heads, GroupSize, HeadDim, Capacity, Splits, SplitLength;
    public float Scale;
    public uint Block, RowBytes, KeyBlock, ValueBlock;
}

[StructLayout(LayoutKind.Sequential)]
internal struct AttentionCombinePush
{
    public ulong Partial, Out;
    public uint Rows, Heads, HeadDim, Splits;
}

/// <summary>Two same-shaped f32 arrays, the first overwritten: x += y (add.comp), x *= y (multiply.comp), gate = silu(gate) * up (swiglu.comp).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct AddPush
{
    public ulong X, Y;
    public uint Count;
}

[StructLayout(LayoutKind.Sequential)]
internal struct GatherRowsPush
{
    public ulong Source, Rows, Destination;
    public uint Count, Cols;
}

[StructLayout(LayoutKind.Sequential)]
internal struct LayerNormPush
{
    public ulong X, Weight, Bias, Y;
    public uint Rows, Cols;
    public float Eps;
}

[StructLayout(LayoutKind.Sequential)]
internal struct GeluPush
{
    public ulong X;
    public uint Count, Kind;
}

[StructLayout(LayoutKind.Sequential)]
internal struct SegmentAttentionPush
{
    public ulong Q, K, V, Bounds, Out;
    public uint Rows, Heads, HeadDim;
    public float Scale;
    public uint KvHeads;
}
