using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace QwenSharp.Numerics;

/// <summary>
/// GGUF's 1-3-bit i-quants (ggml's <c>block_iq2_xxs</c> ... <c>block_iq1_m</c>), super-blocks of 256 weights in groups of 8
/// (IQ3: two groups of 4) that each index a lattice point (<see cref="IqGrids"/>), dequantized as ggml's reference
/// <c>dequantize_row_iq*</c> defines them, and stored again as Q6_K where Q6_K holds every value.
/// <code>
///   IQ2_XXS  d, qs[32] u16 (4 a 32: four 8-bit points, then 4 × 7 sign bits and a 4-bit scale)  value = d (0.5 + s) / 4 × point × sign
///   IQ2_XS   d, qs[32] u16 (a 9-bit point and 7 sign bits each), scales[8] (4 bits a 16)       value = d (0.5 + s) / 4 × point × sign
///   IQ2_S    d, qs[64] (32 points' low bytes, 32 sign bytes), qh[8] (their 2 high bits), scales[8] (4 bits a 16)
///   IQ3_XXS  d, qs[96] (64 8-bit points of 4, then per 32: 4 × 7 sign bits and a 4-bit scale)   value = d (0.5 + s) / 2 × point × sign
///   IQ3_S    d, qs[64], qh[8] (ninth bits), signs[32], scales[4] (4 bits a 32)                value = d (1 + 2s) × point × sign
///   IQ1_S    d, qs[32], qh[8] u16 (per 32: 4 × 3 high point bits, a 3-bit scale, the delta's sign)  value = d (2s + 1) × (point ± 1/8)
///   IQ1_M    qs[32], qh[16] (3 high point bits and a delta sign per 8), scales[8] (3 bits a 16, d's f16 in the top nibbles)
/// </code>
/// IQ3_XXS, IQ3_S, IQ1_S and IQ1_M store again as Q6_K without loss (<see cref="ToQ6_K"/>): their values are a super-block
/// scale times a small odd (or IQ3_XXS's half-even) integer per group of 16 or 32 times a code within Q6_K's -32..31. IQ2's
/// magnitudes 8, 25 and 43 times signs do not fit Q6_K's codes, and its scales in eighths do not fit Q8_0's f16 ones.
/// </summary>
public static class IqBlocks
{
    public const int BlockValues = 256;

    private const float Iq1Delta = 0.125f;

    /// <summary>Bytes of a super-block of each type.</summary>
    public static int Bytes(IqType type) => type switch
    {
        IqType.Iq2Xxs => 66,
        IqType.Iq2Xs => 74,
        IqType.Iq2S => 82,
        IqType.Iq3Xxs => 98,
        IqType.Iq3S => 110,
        IqType.Iq1S => 50,
        IqType.Iq1M => 56,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "not an i-quant"),
    };

    /// <summary>Whether <see cref="ToQ6_K"/> holds every value of <paramref name="type"/>.</summary>
    public static bool FitsQ6_K(IqType type) => type is IqType.Iq3Xxs or IqType.Iq3S or IqType.Iq1S or IqType.Iq1M;

    /// <summary>Whole super-blocks of <paramref name="type"/> as ggml's reference dequantizer gives them (the same float operations).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Dequantize(IqType type, ReadOnlySpan<byte> blocks, Span<float> values)
    {
        int bytes = Bytes(type);
        Span<sbyte> codes = stackalloc sbyte[BlockValues];
        Span<int> multipliers = stackalloc int[BlockValues / 8];
        Span<float> scales = stackalloc float[BlockValues / 8];
        Span<bool> negativeDelta = stackalloc bool[BlockValues / 8];
        for (int b = 0; b < values.Length / BlockValues; b++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(b * bytes, bytes);
            Span<float> y = values.Slice(b * BlockValues, BlockValues);
            float d = type is IqType.Iq1S or IqType.Iq1M ? Iq1(type, block, codes, multipliers, negativeDelta) : Signed(type, block, codes, multipliers);
            for (int g = 0; g < scales.Length; g++)
            {
                scales[g] = GroupScale(type, d, multipliers[g]);
            }

            if (type is IqType.Iq1S or IqType.Iq1M)
            {
                // d (2s + 1) × (point + delta): the point and the delta added first, as ggml does.
                for (int v = 0; v < BlockValues; v++)
                {
                    y[v] = scales[v / 8] * (codes[v] + (negativeDelta[v / 8] ? -Iq1Delta : Iq1Delta));
                }

                continue;
            }

            // Scale × magnitude, then the sign (exact).
            for (int v = 0; v < BlockValues; v++)
            {
                float magnitude = scales[v / 8] * Math.Abs((int)codes[v]);
                y[v] = codes[v] < 0 ? -magnitude : magnitude;
            }
        }
    }

    /// <summary>
    /// Super-blocks of IQ3_XXS, IQ3_S, IQ1_S or IQ1_M (<see cref="FitsQ6_K"/>) stored again as Q6_K super-blocks (210 bytes):
    /// the same values, every one, where the super-block scale divided by IQ3_XXS's 2 or IQ1's 8 is an f16: it is for any
    /// scale from 2^-13 (IQ1: 2^-11) up; a smaller one's part is rounded to the nearest f16 (from the smallest normal scale,
    /// 2^-14, a relative error of at most 2^-10 on each value, far below the 1-3-bit code's own).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ToQ6_K(IqType type, ReadOnlySpan<byte> blocks, Span<byte> q6Blocks)
    {
        if (!FitsQ6_K(type))
        {
            throw new ArgumentException($"{type} values do not fit Q6_K", nameof(type));
        }

        const int Q6Bytes = 210;
        int bytes = Bytes(type);
        Span<sbyte> codes = stackalloc sbyte[BlockValues];
        Span<int> multipliers = stackalloc int[BlockValues / 8];
        Span<sbyte> q6Codes = stackalloc sbyte[BlockValues];
        Span<bool> negativeDelta = stackalloc bool[BlockValues / 8];
        for (int b = 0; b < blocks.Length / bytes; b++)
        {
            ReadOnlySpan<byte> block = blocks.Slice(b * bytes, bytes);
            Span<byte> q6 = q6Blocks.Slice(b * Q6Bytes, Q6Bytes);
            float d;
            if (type is IqType.Iq1S or IqType.Iq1M)
            {
                // (2s + 1) d × (point ± 1/8) = (2s + 1) × d / 8 × (8 point ± 1): codes -9, -7, -1, 1, 7, 9.
                d = Iq1(type, block, codes, multipliers, negativeDelta);
                for (int v = 0; v < BlockValues; v++)
                {
                    q6Codes[v] = (sbyte)((8 * codes[v]) + (negativeDelta[v / 8] ? -1 : 1) + 32);
                }

                d /= 8;
            }
            else
            {
                // IQ3_XXS: d (0.5 + s) / 2 × point = (1 + 2s) × d / 2 × point / 2, every point even (4, 12, ..., 52, 62),
                // so its half a code (2, 6, ..., 26, 31). IQ3_S: (1 + 2s) × d × point.
                d = Signed(type, block, codes, multipliers);
                for (int v = 0; v < BlockValues; v++)
                {
                    q6Codes[v] = (sbyte)((type == IqType.Iq3Xxs ? codes[v] / 2 : codes[v]) + 32);
                }

                if (type == IqType.Iq3Xxs)
                {
                    d /= 2;
                }
            }

            // Q6_K's scale of 16 values: their groups of 8 share one multiplier (IQ3's and IQ1_S's are per 32, IQ1_M's per 16).
            KQuantQuantizer.PackQ6_KCodes(q6Codes, q6);
            for (int g = 0; g < 16; g++)
            {
                q6[192 + g] = (byte)(sbyte)multipliers[2 * g];
            }

            BinaryPrimitives.WriteUInt16LittleEndian(q6[208..], HalfBits.FromSingle(d));
        }
    }

    /// <summary>
    /// A group of 8's float scale from the super-block's <paramref name="d"/> and the group's odd <paramref name="multiplier"/>,
    /// by ggml's operations: IQ2 d × (0.5 + s) × 0.25, IQ3_XXS d × (0.5 + s) × 0.5 (0.5 + s is the multiplier / 2, exactly),
    /// IQ3_S d × (1 + 2s), IQ1 d × (2s + 1).
    /// </summary>
    private static float GroupScale(IqType type, float d, int multiplier) => type switch
    {
        IqType.Iq2Xxs or IqType.Iq2Xs or IqType.Iq2S => d * (multiplier * 0.5f) * 0.25f,
        IqType.Iq3Xxs => d * (multiplier * 0.5f) * 0.5f,
        _ => d * multiplier,
    };

    /// <summary>
    /// An IQ2 or IQ3 super-block's 256 signed codes (the point's magnitude times the sign) and the odd multiplier 1 + 2s of
    /// each group of 8's 4-bit scale s; returns its f16 scale d.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Signed(IqType type, ReadOnlySpan<byte> block, Span<sbyte> codes, Span<int> multipliers)
    {
        float d = HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block));
        Span<ulong> groups = System.Runtime.InteropServices.MemoryMarshal.Cast<sbyte, ulong>(codes);
        for (int ib = 0; ib < 8; ib++)
        {
            for (int l = 0; l < 4; l++)
            {
                // Group l of the 32 values ib: its 8 magnitudes (a byte each), 8 sign bits and 4-bit scale.
                ulong magnitudes;
                int signs, scale;
                switch (type)
                {
                    case IqType.Iq2Xxs:
                    {
                        uint aux = BinaryPrimitives.ReadUInt32LittleEndian(block[(2 + (8 * ib) + 4)..]);
                        magnitudes = Word64(IqGrids.Iq2Xxs(block[2 + (8 * ib) + l]));
                        signs = IqGrids.Signs((int)(aux >> (7 * l)) & 127);
                        scale = (int)(aux >> 28);
                        break;
                    }

                    case IqType.Iq2Xs:
                    {
                        int q = BinaryPrimitives.ReadUInt16LittleEndian(block[(2 + (8 * ib) + (2 * l))..]);
                        magnitudes = Word64(IqGrids.Iq2Xs(q & 511));
                        signs = IqGrids.Signs(q >> 9);
                        scale = (block[2 + 64 + ib] >> (4 * (l / 2))) & 0xF;
                        break;
                    }

                    case IqType.Iq2S:
                    {
                        magnitudes = Word64(IqGrids.Iq2S(block[2 + (4 * ib) + l] | ((block[2 + 64 + ib] << (8 - (2 * l))) & 0x300)));
                        signs = block[2 + 32 + (4 * ib) + l];
                        scale = (block[2 + 64 + 8 + ib] >> (4 * (l / 2))) & 0xF;
                        break;
                    }

                    case IqType.Iq3Xxs:
                    {
                        uint aux = BinaryPrimitives.ReadUInt32LittleEndian(block[(2 + 64 + (4 * ib))..]);
                        magnitudes = Word32(IqGrids.Iq3Xxs(block[2 + (8 * ib) + (2 * l)])) | ((ulong)Word32(IqGrids.Iq3Xxs(block[2 + (8 * ib) + (2 * l) + 1])) << 32);
                        signs = IqGrids.Signs((int)(aux >> (7 * l)) & 127);
                        scale = (int)(aux >> 28);
                        break;
                    }

                    default:
                    {
                        // IQ3_S: the points' ninth bits in qh[ib], two a group.
                        int qh = block[2 + 64 + ib];
                        magnitudes = Word32(IqGrids.Iq3S(block[2 + (8 * ib) + (2 * l)] | ((qh << (8 - (2 * l))) & 256)))
                            | ((ulong)Word32(IqGrids.Iq3S(block[2 + (8 * ib) + (2 * l) + 1] | ((qh << (7 - (2 * l))) & 256))) << 32);
                        signs = block[2 + 64 + 8 + (4 * ib) + l];
                        scale = (block[2 + 64 + 8 + 32 + (ib / 2)] >> (4 * (ib % 2))) & 0xF;
                        break;
                    }
                }

                // Each byte negated where its sign bit is set: (m ^ 0xFF) + 1, no carry between bytes since no magnitude is 0.
                int group = (4 * ib) + l;
                ulong negate = NegateMasks[signs];
                groups[group] = (magnitudes ^ negate) + (negate & 0x0101010101010101);
                multipliers[group] = 1 + (2 * scale);
            }
        }

        return d;
    }

    /// <summary>A point's bytes as one little-endian word (byte j: weight j's), so a group's eight are signed at once.</summary>
    private static ulong Word64(ReadOnlySpan<byte> point) => BinaryPrimitives.ReadUInt64LittleEndian(point);

    private static uint Word32(ReadOnlySpan<byte> point) => BinaryPrimitives.ReadUInt32LittleEndian(point);

    /// <summary>For each sign byte, 0xFF in the bytes whose bit is set.</summary>
    private static readonly ulong[] NegateMasks = [.. Enumerable.Range(0, 256).Select(bits => Enumerable.Range(0, 8).Aggregate(0UL, (mask, j) => (bits >> j & 1) != 0 ? mask | (0xFFUL << (8 * j)) : mask))];

    /// <summary>
    /// An IQ1_S or IQ1_M super-block's 256 point values (-1, 0, 1), each group of 8's odd multiplier 2s + 1 of its 3-bit scale
    /// s and whether its delta is -1/8; returns its f16 scale d.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Iq1(IqType type, ReadOnlySpan<byte> block, Span<sbyte> codes, Span<int> multipliers, Span<bool> negativeDelta)
    {
        if (type == IqType.Iq1S)
        {
            for (int ib = 0; ib < 8; ib++)
            {
                int qh = BinaryPrimitives.ReadUInt16LittleEndian(block[(2 + 32 + (2 * ib))..]);
                for (int l = 0; l < 4; l++)
                {
                    int group = (4 * ib) + l;
                    IqGrids.Iq1S(block[2 + (4 * ib) + l] | (((qh >> (3 * l)) & 7) << 8)).CopyTo(codes.Slice(8 * group, 8));
                    multipliers[group] = (2 * ((qh >> 12) & 7)) + 1;
                    negativeDelta[group] = (qh & 0x8000) != 0;
                }
            }

            return HalfBits.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block));
        }

        // IQ1_M: d's f16 bits are the top nibbles of the four 16-bit words of scales.
        Span<int> words = stackalloc int[4];
        for (int i = 0; i < 4; i++)
        {
            words[i] = BinaryPrimitives.ReadUInt16LittleEndian(block[(48 + (2 * i))..]);
        }

        ushort bits = (ushort)((words[0] >> 12) | ((words[1] >> 8) & 0x00F0) | ((words[2] >> 4) & 0x0F00) | (words[3] & 0xF000));
        for (int ib = 0; ib < 8; ib++)
        {
            for (int l = 0; l < 4; l++)
            {
                int qh = block[32 + (2 * ib) + (l / 2)];
                int high = l % 2 == 0 ? (qh << 8) & 0x700 : (qh << 4) & 0x700;
                int group = (4 * ib) + l;
                IqGrids.Iq1S(block[(4 * ib) + l] | high).CopyTo(codes.Slice(8 * group, 8));
                // The first 16 values' 3-bit scale, then the next 16's.
                multipliers[group] = (2 * ((words[ib / 2] >> ((6 * (ib % 2)) + (l < 2 ? 0 : 3))) & 7)) + 1;
                negativeDelta[group] = (qh & (l % 2 == 0 ? 0x08 : 0x80)) != 0;
            }
        }

        return HalfBits.ToSingle(bits);
    }
}

/// <summary>The 1-3-bit i-quants of <see cref="IqBlocks"/>.</summary>
public enum IqType
{
    Iq2Xxs,
    Iq2Xs,
    Iq2S,
    Iq3Xxs,
    Iq3S,
    Iq1S,
    Iq1M,
}
