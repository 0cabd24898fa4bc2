using System.Buffers.Binary;
using System.Runtime.Intrinsics.X86;
using QwenSharp.Numerics;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Q5_0 rows stored again at load as pairs of blocks, in the bytes the file holds them in (44 a pair), arranged so that
/// one GFNI affine transform (vgf2p8affineqb) puts every value's fifth bit in its byte (<see cref="Q5_0PairKernel"/>).
/// Q5_0 is what llama.cpp's Q4_K_M stores for matrices whose rows are not whole 256-value super-blocks: Qwen2.5-0.5B's
/// 896-wide q/k/v/o/gate/up, two thirds of its bytes. Widened to Q8_0 they are 34 bytes a block for 22. Q5_1 (Q5_K_M's
/// fallback for those rows) goes in the same pairs, its minimums apart (<see cref="RepackQ5_1"/>).
/// </summary>
/// <remarks>
/// <para>
/// A pair of blocks A and B (values 0-31 and 32-63 of its 64): block A as Q4_0 keeps a block (its f16 scale, then 16 bytes
/// of nibbles, value j's in byte j % 16, low nibbles for 0-15), block B the same, then 8 bytes of fifth bits: byte k holds
/// in bit c (c = 0..3) the fifth bit of block A's value 8c + k, and in bit 4 + c that of block B's value 8c + k. The stored
/// block's fifth bits are a 32-bit word (bit j for value j); this is each pair's two words transposed. A kernel broadcasts
/// the 8 bytes to the four 64-bit lanes of a 256-bit vector and, per block, one affine transform whose matrix in lane c
/// takes bit c (block A) or 4 + c (block B) of every byte to bit 4: byte 8c + k of the result is then 16 × value 8c + k's
/// fifth bit, in the order the nibbles split into (values 0-31).
/// </para>
/// <para>
/// Against Q5_0 as stored, whose 32 fifth bits llama.cpp spreads to bytes with a shuffle, an or, a compare and a mask per
/// block (a kernel so built ran slower than Q8_0 here, see bench/results/amd-epyc-zen5-2core-avx512/q5_0-widened-2026-12-05.md),
/// a block costs one affine transform more than Q4_0 (and its share of the 8-byte broadcast).
/// </para>
/// </remarks>
internal static class Q5_0Pairs
{
    /// <summary>Values per pair of blocks.</summary>
    public const int PairValues = 64;

    /// <summary>Bytes per pair: two Q4_0-like blocks of 18 and 8 bytes of fifth bits, as two stored Q5_0 blocks.</summary>
    public const int PairBytes = 2 * LegacyQuantBlocks.Q5_0BlockBytes;

    /// <summary>Bytes of one block's scale and nibbles (as Q4_0 stores a block).</summary>
    public const int BlockBytes = 18;

    /// <summary>Where a pair's fifth bits start.</summary>
    public const int FifthBitsAt = 2 * BlockBytes;

    /// <summary>Whether rows of <paramref name="cols"/> values are whole pairs of blocks.</summary>
    public static bool Fits(int cols) => cols > 0 && cols % PairValues == 0;

    /// <summary>
    /// Whether the CPU multiplies Q5_0 matrices as pairs (<see cref="Q5_0PairKernel"/>) on <paramref name="path"/>: AVX2, FMA and
    /// GFNI's 256-bit affine transform for one token, and integer Q8_0 panels (<see cref="QuantPanel.MultipliesInIntegers"/>)
    /// for several. Elsewhere they are widened to Q8_0 (<see cref="Formats.Widening"/>).
    /// </summary>
    public static bool Pays(KernelPath path) => HasKernel(path) && QuantPanel.MultipliesInIntegers(path, Formats.DType.Q8_0) && ThreadOverride<Switch>.Or(true);

    /// <summary>Whether <see cref="Q5_0PairKernel"/>'s vector kernel runs on <paramref name="path"/> (else its scalar reference).</summary>
    public static bool HasKernel(KernelPath path) => path != KernelPath.Scalar && Avx2.IsSupported && Fma.IsSupported && Gfni.V256.IsSupported;

    /// <summary>Until disposed, this thread takes <paramref name="pays"/> as <see cref="Pays"/>' answer where the CPU has the kernel (for tests and benches).</summary>
    public static ThreadOverride<Switch>.Scope Assume(bool pays) => ThreadOverride<Switch>.Set(pays);

    /// <summary>Stored Q5_0 rows (whole pairs of blocks) as pairs, into <paramref name="pairs"/> of the same length.</summary>
    public static void Repack(ReadOnlySpan<byte> stored, Span<byte> pairs)
    {
        if (stored.Length % PairBytes != 0 || pairs.Length != stored.Length)
        {
            throw new ArgumentException($"Q5_0 rows of whole pairs of blocks ({PairBytes} bytes) into as many bytes: {stored.Length} into {pairs.Length}");
        }

        RepackBlocks(stored, LegacyQuantBlocks.Q5_0BlockBytes, 2, pairs);
    }

    /// <summary>
    /// Stored Q5_1 rows (whole pairs of blocks) as pairs of their scales and codes (0..31, which the kernels then take
    /// without Q5_0's offset of 16), each block's minimum to <paramref name="minimums"/>[b × <paramref name="minimumStride"/>]
    /// (<see cref="BlockMinimums"/>): value = code × scale + minimum, as stored.
    /// </summary>
    public static void RepackQ5_1(ReadOnlySpan<byte> stored, Span<byte> pairs, Span<float> minimums, int minimumStride)
    {
        int blocks = stored.Length / LegacyQuantBlocks.Q5_1BlockBytes;
        if (stored.Length % (2 * LegacyQuantBlocks.Q5_1BlockBytes) != 0 || pairs.Length != blocks / 2 * PairBytes)
        {
            throw new ArgumentException($"Q5_1 rows of whole pairs of blocks ({2 * LegacyQuantBlocks.Q5_1BlockBytes} bytes) into {PairBytes} bytes a pair: {stored.Length} into {pairs.Length}");
        }

        RepackBlocks(stored, LegacyQuantBlocks.Q5_1BlockBytes, 4, pairs);
        for (int b = 0; b < blocks; b++)
        {
            minimums[b * minimumStride] = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(stored[((b * LegacyQuantBlocks.Q5_1BlockBytes) + 2)..]));
        }
    }

    /// <summary>
    /// Blocks of <paramref name="blockBytes"/> (an f16 scale first, the 32-bit fifth-bit word at <paramref name="fifthAt"/>,
    /// the 16 bytes of nibbles last) as pairs: each block's scale and nibbles as Q4_0 lays a block out, the pair's two
    /// fifth-bit words transposed after them.
    /// </summary>
    private static void RepackBlocks(ReadOnlySpan<byte> stored, int blockBytes, int fifthAt, Span<byte> pairs)
    {
        for (int p = 0; p < stored.Length / (2 * blockBytes); p++)
        {
            ReadOnlySpan<byte> a = stored.Slice(2 * p * blockBytes, blockBytes), b = stored.Slice(((2 * p) + 1) * blockBytes, blockBytes);
            Span<byte> pair = pairs.Slice(p * PairBytes, PairBytes);
            a[..2].CopyTo(pair);
            a[(fifthAt + 4)..].CopyTo(pair[2..]);
            b[..2].CopyTo(pair[BlockBytes..]);
            b[(fifthAt + 4)..].CopyTo(pair[(BlockBytes + 2)..]);
            uint fifthA = BinaryPrimitives.ReadUInt32LittleEndian(a[fifthAt..]), fifthB = BinaryPrimitives.ReadUInt32LittleEndian(b[fifthAt..]);
            for (int k = 0; k < 8; k++)
            {
                int bits = 0;
                for (int c = 0; c < 4; c++)
                {
                    bits |= (int)(((fifthA >> ((8 * c) + k)) & 1) << c);
                    bits |= (int)(((fifthB >> ((8 * c) + k)) & 1) << (4 + c));
                }

                pair[FifthBitsAt + k] = (byte)bits;
            }
        }
    }

    /// <summary>Value <paramref name="j"/> (0..63) of the pair at <paramref name="pair"/> as its code, 0..31 (the value is (code − 16) × the block's scale).</summary>
    public static int Code(ReadOnlySpan<byte> pair, int j)
    {
        int block = j / 32, i = j % 32;
        byte packed = pair[(block * BlockBytes) + 2 + (i % 16)];
        int nibble = i < 16 ? packed & 0x0F : packed >> 4;
        int fifth = (pair[FifthBitsAt + (i % 8)] >> ((4 * block) + (i / 8))) & 1;
        return nibble | (fifth << 4);
    }

    /// <summary>Block <paramref name="block"/>'s (0 or 1) f16 scale bits in the pair at <paramref name="pair"/>.</summary>
    public static ushort Scale(ReadOnlySpan<byte> pair, int block) => BinaryPrimitives.ReadUInt16LittleEndian(pair[(block * BlockBytes)..]);

    /// <summary>
    /// Rows of pairs as f32: value = (code − <paramref name="offset"/>) × scale, as <see cref="LegacyQuantBlocks.DequantizeQ5_0"/>
    /// gives the stored blocks (offset 16); with offset 0 (a Q5_1 matrix's codes), the value before its block's minimum is added.
    /// </summary>
    public static void Dequantize(ReadOnlySpan<byte> pairs, Span<float> values, int offset = 16)
    {
        for (int p = 0; p < values.Length / PairValues; p++)
        {
            ReadOnlySpan<byte> pair = pairs.Slice(p * PairBytes, PairBytes);
            float scaleA = HalfBits.ToSingle(Scale(pair, 0)), scaleB = HalfBits.ToSingle(Scale(pair, 1));
            for (int j = 0; j < PairValues; j++)
            {
                values[(p * PairValues) + j] = (Code(pair, j) - offset) * (j < 32 ? scaleA : scaleB);
            }
        }
    }

    /// <summary>
    /// Rows of pairs as Q8_0 blocks without loss (each block's scale, codes − <paramref name="offset"/>), as
    /// <see cref="LegacyQuantBlocks.WidenQ5_0ToQ8_0"/> widens the stored blocks (offset 16; 0 for a Q5_1 matrix's codes, as
    /// <see cref="LegacyQuantBlocks.SplitMinimums"/> keeps them): for the Q8_0 panels that many tokens multiply.
    /// </summary>
    public static void ToQ8_0(ReadOnlySpan<byte> pairs, Span<byte> q8Blocks, int offset = 16)
    {
        for (int p = 0; p < pairs.Length / PairBytes; p++)
        {
            ReadOnlySpan<byte> pair = pairs.Slice(p * PairBytes, PairBytes);
            for (int block = 0; block < 2; block++)
            {
                Span<byte> wide = q8Blocks.Slice(((2 * p) + block) * Q8_0Blocks.BlockBytes, Q8_0Blocks.BlockBytes);
                BinaryPrimitives.WriteUInt16LittleEndian(wide, Scale(pair, block));
                for (int i = 0; i < 32; i++)
                {
                    wide[2 + i] = (byte)(sbyte)(Code(pair, (32 * block) + i) - offset);
                }
            }
        }
    }

    /// <summary>Names this switch's <see cref="ThreadOverride{TSwitch}"/>.</summary>
    internal readonly struct Switch
    {
    }
}
