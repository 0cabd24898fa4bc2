using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using QwenSharp.Formats;
using QwenSharp.Numerics;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Q4_K rows for one-token decode on the 32-byte integer kernel, with each byte's two codes from the same sub-block: the
/// stored super-block (144 bytes) with only its 128 code bytes rearranged, and the activations' codes rearranged to match
/// (<see cref="PairActivations"/>), so that a chunk of 64 values needs one vpmaddwd by its scales, not two.
/// </summary>
/// <remarks>
/// <para>
/// As stored, chunk c's 32 bytes hold sub-block 2c's values in their low nibbles and 2c + 1's in their high ones (A and B
/// below). vpmaddubsw of the low nibbles against A's activations gives sixteen 16-bit sums of A's products, of the high
/// ones sixteen of B's, and each set then needs its own vpmaddwd by its scale (and a vpshufb to spread that scale): four of
/// each per super-block beyond the eight vpmaddubsw. Here 32-bit lane 2e of the chunk holds A's values 8e..8e + 3 (low
/// nibbles) and 8e + 4..8e + 7 (high nibbles), lane 2e + 1 B's values 8e + 4..8e + 7 (low) and 8e..8e + 3 (high). Both
/// nibbles' products are then A's in the even lanes and B's in the odd ones: one vpaddw adds the two vpmaddubsw (each sum
/// at most 4 × 15 × 127, far inside 16 bits) and one vpmaddwd weights lane pairs by (A's scale, B's scale). The
/// activations' codes move whole 32-bit lanes (<see cref="PairActivations"/>), once per product for every row; the sums of
/// each sub-block's codes (the mins' term) do not change.
/// </para>
/// <para>
/// The integer unit, not memory, held AVX2's Q4_K kernel on Zen 3: from L2 it ran at 19.5 GB/s where memory gave one core
/// 22-24, and with the scales' four vpmaddwd and four vpshufb gone (the result then wrong) at 22.5; 512 MiB from memory
/// streamed at 75-78% of a plain sum as stored against 84-85% so (<c>bench stream --type q4_k</c>, 1536 wide, 3 runs
/// each, one core of a 2-vCPU EPYC Milan). Fewer operations of every kind, so every core that runs the 32-byte kernel takes
/// it. The rearranged copy takes the place of the stored rows in decode, which then leaves the file's pages alone, so a
/// step's bytes and the memory it keeps resident stay as they were.
/// </para>
/// </remarks>
internal static class Q4KPairedNibbles
{
    private const int BlockBytes = 144;
    private const int CodesAt = 16;
    private const uint Low = 0x0F0F0F0F;

    /// <summary>
    /// Whether one-token decode on <paramref name="path"/> reads Q4_K from paired rows: where the 32-byte kernel runs (the
    /// 512-bit path with 64-byte products, or with GFNI and AVX-VNNI's fused vpdpwssd, keeps its own kernels).
    /// </summary>
    public static bool Pays(KernelPath path)
    {
        if (path == KernelPath.Scalar || !Avx2.IsSupported || !Fma.IsSupported)
        {
            return false;
        }

        bool ownKernel = VectorUnits.Wide(path) || (path == KernelPath.Vector512 && Avx512BW.IsSupported && Gfni.V256.IsSupported && ByteDots.Vnni(path));
        return ThreadOverride<Switch>.Or(!ownKernel);
    }

    /// <summary>Until disposed, this thread takes <paramref name="pays"/> as the CPU's answer (for tests; any AVX2 path runs the kernel).</summary>
    public static ThreadOverride<Switch>.Scope Assume(bool pays) => ThreadOverride<Switch>.Set(pays);

    /// <summary>
    /// Whole Q4_K super-blocks as stored (<paramref name="stored"/>) into <paramref name="paired"/>, the same length (or the
    /// same span: each pair of lanes is read before it is written): scales and mins as they are, each chunk's eight 32-bit
    /// lanes of codes rearranged (see the class).
    /// </summary>
    public static void Repack(ReadOnlySpan<byte> stored, Span<byte> paired)
    {
        if (stored.Length % BlockBytes != 0 || paired.Length != stored.Length)
        {
            throw new ArgumentException($"Q4_K rows are whole super-blocks of {BlockBytes} bytes: {stored.Length} in, {paired.Length} out");
        }

        for (int b = 0; b < stored.Length; b += BlockBytes)
        {
            stored.Slice(b, CodesAt).CopyTo(paired.Slice(b, CodesAt));
            for (int lane = b + CodesAt; lane < b + BlockBytes; lane += 8)
            {
                // Lanes 2e and 2e + 1 of a chunk: bytes 8e..8e + 3 and 8e + 4..8e + 7, A's codes low, B's high.
                uint first = BinaryPrimitives.ReadUInt32LittleEndian(stored[lane..]), second = BinaryPrimitives.ReadUInt32LittleEndian(stored[(lane + 4)..]);
                BinaryPrimitives.WriteUInt32LittleEndian(paired[lane..], (first & Low) | ((second & Low) << 4));
                BinaryPrimitives.WriteUInt32LittleEndian(paired[(lane + 4)..], ((second >> 4) & Low) | (first & ~Low));
            }
        }
    }

    /// <summary>
    /// Activation codes (whole 256-value blocks) rearranged for paired rows: of each 64 values (A's 32, then B's), first the
    /// activations the low nibbles meet (lane 2e: A's lane 2e; lane 2e + 1: B's lane 2e + 1), then those the high nibbles
    /// meet (lane 2e: A's lane 2e + 1; lane 2e + 1: B's lane 2e).
    /// </summary>
    public static void PairActivations(ReadOnlySpan<sbyte> codes, Span<sbyte> paired)
    {
        if (codes.Length % KQuantBlocks.BlockValues != 0 || paired.Length != codes.Length)
        {
            throw new ArgumentException($"Q8_K codes are whole blocks of {KQuantBlocks.BlockValues}: {codes.Length} in, {paired.Length} out");
        }

        ReadOnlySpan<uint> from = MemoryMarshal.Cast<sbyte, uint>(codes);
        Span<uint> to = MemoryMarshal.Cast<sbyte, uint>(paired);
        for (int chunk = 0; chunk < from.Length; chunk += 16)
        {
            ReadOnlySpan<uint> a = from.Slice(chunk, 8), b = from.Slice(chunk + 8, 8);
            Span<uint> lows = to.Slice(chunk, 8), highs = to.Slice(chunk + 8, 8);
            for (int e = 0; e < 8; e += 2)
            {
                lows[e] = a[e];
                lows[e + 1] = b[e + 1];
                highs[e] = a[e + 1];
                highs[e + 1] = b[e];
            }
        }
    }

    /// <summary>Names this switch's <see cref="ThreadOverride{TSwitch}"/>.</summary>
    internal readonly struct Switch
    {
    }
}
