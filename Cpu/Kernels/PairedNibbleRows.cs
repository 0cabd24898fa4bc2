using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using QwenSharp.Formats;
using QwenSharp.Numerics;

namespace QwenSharp.Cpu.Kernels;

/// <summary>How <see cref="KQuantIntegerKernel.DotRows"/> finds its rows: as stored, or paired (<see cref="PairedNibbleRows"/>) with their scales as stored or deposited.</summary>
internal enum PairedLayout
{
    None,
    StoredScales,
    DepositedScales,
}

/// <summary>
/// Q4_K and Q5_K rows for one-token decode on the 32-byte integer kernel, with each byte's two codes from the same
/// sub-block: the stored super-block (144 or 176 bytes) with only its code bytes (and Q5_K's fifth bits) rearranged, and the
/// activations' codes rearranged to match (<see cref="PairActivations"/>), so that a chunk of 64 values needs one vpmaddwd
/// by its scales, not two.
/// </summary>
/// <remarks>
/// <para>
/// As stored, chunk c's 32 bytes hold sub-block 2c's values in their low nibbles and 2c + 1's in their high ones (A and B
/// below). vpmaddubsw of the low nibbles against A's activations gives sixteen 16-bit sums of A's products, of the high
/// ones sixteen of B's, and each set then needs its own vpmaddwd by its scale (and a vpshufb to spread that scale): four of
/// each per super-block beyond the eight vpmaddubsw. Here 32-bit lane 2e of the chunk holds A's values 8e..8e + 3 (low
/// nibbles) and 8e + 4..8e + 7 (high nibbles), lane 2e + 1 B's values 8e + 4..8e + 7 (low) and 8e..8e + 3 (high). Both
/// nibbles' products are then A's in the even lanes and B's in the odd ones: one vpaddw adds the two vpmaddubsw (each sum
/// at most 4 × 31 × 127, inside 16 bits) and one vpmaddwd weights lane pairs by (A's scale, B's scale). Q5_K's fifth bits
/// (bit 2c of qh byte l: A's value l; bit 2c + 1: B's) move with their values, so that bit 2c of a byte of qh is again the
/// fifth bit of the low nibble of that byte of every chunk and bit 2c + 1 of the high one. The activations' codes move
/// whole 32-bit lanes (<see cref="PairActivations"/>), once per product for every row; the sums of each sub-block's codes
/// (the mins' term) do not change.
/// </para>
/// <para>
/// The integer unit, not memory, held AVX2's Q4_K kernel on Zen 3: from L2 it ran at 19.5 GB/s where memory gave one core
/// 22-24, and with the scales' four vpmaddwd and four vpshufb gone (the result then wrong) at 22.5; 512 MiB from memory
/// streamed at 78-82% of a plain sum as stored against 86-88% paired (<c>bench stream --type q4_k --paired off|on</c>,
/// 1536 wide, 3 alternations, one core of a 2-vCPU EPYC Milan), and a Q4_K_M 1.5B decoded 15.0 → 16.9 tokens/s on one
/// thread; Q5_K (whose fifth bits cost the same either way) 73-78% → 75-78% from memory and its Q5_K_M 1.5B 15.1 → 16.1
/// (bench/results/amd-epyc-zen3-2core-avx2/q4_k-q5_k-paired-rows-2026-12-07.md). Fewer operations of every kind, so
/// every core that runs the 32-byte kernel takes it. Where pdep is fast the copy's scales and mins are two runs of 6-bit
/// fields (<see cref="DepositedScalesAndMins"/>), which took Q4_K from memory from 82% to 88% of a plain sum, and the Q4_K_M
/// 1.5B from 17.4 (as stored) and 19.3 (paired) to 19.8 tokens/s on one thread, 29.2 to 33.1 on two (as stored against
/// both), Q5_K_M 15.2 → 16.3 and 25.7 → 28.0. The rearranged copy takes the place of the stored rows in decode, so a
/// step reads as many bytes; it is held besides them and the panels (a Q4_K_M 1.5B's peak resident memory in bench 2.41 →
/// 3.04 GB). From a GGUF file a Q4_K matrix's stored rows are then read only at load (and for a tied table's embedding
/// rows), so their pages leave memory once it is uploaded (<see cref="CpuWeight.ProductsReadCopies"/>): 2.43 GB.
/// </para>
/// </remarks>
internal static class PairedNibbleRows
{
    private const int HeaderBytes = 16;
    private const uint Low = 0x0F0F0F0F;
    private const uint EvenBits = 0x55555555;

    /// <summary>
    /// Whether one-token decode on <paramref name="path"/> reads <paramref name="type"/> (Q4_K or Q5_K) from paired rows: where
    /// its 32-byte kernel runs (the 512-bit path keeps its own kernels where it has 64-byte products, or GFNI and AVX-VNNI's
    /// fused vpdpwssd). Zen 4 (GFNI without AVX-VNNI) pairs Q5_K too: 1536-wide rows streamed from memory at 55-60% of a
    /// plain sum through the 512-bit path's GFNI kernel against 85-89% paired with deposited scales (<c>bench stream
    /// --paired</c>, two alternations, EPYC family 19h model 11h), and a Q5_K-shaped 1.5B decoded 12.6-20.1 → 17.4-21.8
    /// tokens/s on one thread and 23.4-27.5 → 28.6-31.5 on two (3 alternating runs each, each won).
    /// </summary>
    public static bool Pays(KernelPath path, DType type)
    {
        if (type is not (DType.Q4_K or DType.Q5_K) || path == KernelPath.Scalar || !Avx2.IsSupported || !Fma.IsSupported)
        {
            return false;
        }

        bool gfni512 = path == KernelPath.Vector512 && Avx512BW.IsSupported && Gfni.V256.IsSupported;
        bool ownKernel = VectorUnits.Wide(path) || (gfni512 && ByteDots.Vnni(path));
        return ThreadOverride<Switch>.Or(!ownKernel);
    }

    /// <summary>Until disposed, this thread takes <paramref name="pays"/> as the CPU's answer (for tests; any AVX2 path runs the kernels).</summary>
    public static ThreadOverride<Switch>.Scope Assume(bool pays) => ThreadOverride<Switch>.Set(pays);

    /// <summary>
    /// Whole <paramref name="type"/> (Q4_K or Q5_K) super-blocks as stored (<paramref name="stored"/>) into
    /// <paramref name="paired"/>, the same length (or the same span: each pair of lanes is read before it is written): each
    /// chunk's eight 32-bit lanes of codes (and Q5_K's fifth bits) rearranged (see the class); the scales and mins as they
    /// are, or with <paramref name="depositScales"/> as two runs of 6-bit fields (<see cref="DepositedScalesAndMins"/>).
    /// </summary>
    public static void Repack(DType type, ReadOnlySpan<byte> stored, Span<byte> paired, bool depositScales = false)
    {
        int blockBytes = type == DType.Q5_K ? 176 : 144;
        if (type is not (DType.Q4_K or DType.Q5_K) || stored.Length % blockBytes != 0 || paired.Length != stored.Length)
        {
            throw new ArgumentException($"paired rows are whole Q4_K or Q5_K super-blocks ({type}, {blockBytes} bytes): {stored.Length} in, {paired.Length} out");
        }

        int codesAt = type == DType.Q5_K ? HeaderBytes + 32 : HeaderBytes;
        for (int b = 0; b < stored.Length; b += blockBytes)
        {
            stored.Slice(b, HeaderBytes).CopyTo(paired.Slice(b, HeaderBytes));
            if (depositScales)
            {
                WriteScaleFields(paired.Slice(b + 4, 12));
            }
            if (type == DType.Q5_K)
            {
                // qh: the fifth bits of each chunk's low nibbles (bits 2c) and high ones (2c + 1), byte for byte as the codes.
                PairLanes(stored.Slice(b + HeaderBytes, 32), paired.Slice(b + HeaderBytes, 32), EvenBits, 1);
            }

            PairLanes(stored.Slice(b + codesAt, 128), paired.Slice(b + codesAt, 128), Low, 4);
        }
    }

    /// <summary>Six bits of each byte: where <see cref="DepositedScalesAndMins"/> puts the fields.</summary>
    private const ulong SixBits = 0x3F3F3F3F3F3F3F3F;

    /// <summary>
    /// A super-block's 12 bytes of packed scales and mins (<see cref="KQuantIntegerKernel.UnpackScalesAndMins"/>) rewritten in
    /// place as the 8 scales' 6-bit fields one after another (48 bits, from bit 0 of the first byte), then the 8 mins'.
    /// </summary>
    private static void WriteScaleFields(Span<byte> packed)
    {
        (ulong scales, ulong mins) = KQuantIntegerKernel.UnpackScalesAndMins(ref MemoryMarshal.GetReference(packed));
        ulong scaleFields = 0, minFields = 0;
        for (int j = 0; j < 8; j++)
        {
            scaleFields |= ((scales >> (8 * j)) & 0x3F) << (6 * j);
            minFields |= ((mins >> (8 * j)) & 0x3F) << (6 * j);
        }

        Span<byte> fields = stackalloc byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(fields, scaleFields);
        BinaryPrimitives.WriteUInt64LittleEndian(fields[6..], minFields);
        fields[..12].CopyTo(packed);
    }

    /// <summary>
    /// The 8 scales and 8 mins (a byte each) of a paired super-block whose scales were deposited
    /// (<see cref="Repack"/>), from its 12 bytes at <paramref name="packed"/>: one pdep each, where the stored packing takes
    /// some twenty scalar operations for both (<see cref="KQuantIntegerKernel.UnpackScalesAndMins"/>). Only where pdep is fast
    /// (<see cref="KQuantIntegerKernel.DepositsScales"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static (ulong Scales, ulong Mins) DepositedScalesAndMins(ref byte packed) =>
        (Bmi2.X64.ParallelBitDeposit(Unsafe.ReadUnaligned<ulong>(ref packed), SixBits),
         Bmi2.X64.ParallelBitDeposit(Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref packed, 4)) >> 16, SixBits));

    /// <summary>
    /// Each two 32-bit lanes (first, second: bytes 8e..8e + 3 and 8e + 4..8e + 7 of a chunk) of bit fields of A (under
    /// <paramref name="aBits"/>) and of B (the same bits <paramref name="shift"/> higher) into lane 2e: A's of first, then
    /// A's of second moved up; lane 2e + 1: B's of second moved down, then B's of first.
    /// </summary>
    private static void PairLanes(ReadOnlySpan<byte> stored, Span<byte> paired, uint aBits, int shift)
    {
        for (int lane = 0; lane < stored.Length; lane += 8)
        {
            uint first = BinaryPrimitives.ReadUInt32LittleEndian(stored[lane..]), second = BinaryPrimitives.ReadUInt32LittleEndian(stored[(lane + 4)..]);
            BinaryPrimitives.WriteUInt32LittleEndian(paired[lane..], (first & aBits) | ((second & aBits) << shift));
            BinaryPrimitives.WriteUInt32LittleEndian(paired[(lane + 4)..], ((second >> shift) & aBits) | (first & ~aBits));
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
