using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using V256 = System.Runtime.Intrinsics.Vector256;
using V512 = System.Runtime.Intrinsics.Vector512;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Scaled dot-product attention of one query head over the cached keys and values of its sequence:
/// out = softmax(q · Kᵀ / sqrt(d)) · V over positions 0..length-1 (the causal mask is the range itself).
/// A head is short (8 to 128 floats), so the per-position dot product and the weighted sum of values are
/// inlined vector loops: a library call per position would cost more than the arithmetic.
/// Keys and values are read as the cache stores them (<typeparamref name="TK"/>: f32, f16, bf16, q8_0 or q4_0), widened to f32
/// (as they are loaded in <see cref="Head"/>, a tile at a time in <see cref="Block"/>): the same products and sums, in the
/// same order, as f32 keys and values of the same numbers. Offsets and strides are in elements; a q8_0 or q4_0 head and
/// row are whole blocks of 32.
/// </summary>
internal static class AttentionKernel<TK>
    where TK : struct, IWeightLoad
{
    /// <summary>Bytes from a row's start to its element <paramref name="index"/> (for q8_0 and q4_0, the first of a block).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static nint OffsetOf(nint index) =>
        typeof(TK) == typeof(Q8_0KvLoad) ? Q8_0KvLoad.OffsetOf(index) : typeof(TK) == typeof(Q4_0KvLoad) ? Q4_0KvLoad.OffsetOf(index) : index * TK.ElementSize;

    /// <param name="query">[head_dim]</param>
    /// <param name="keys">The cache rows of one slot, a position every <paramref name="positionStride"/> elements; the head's keys start at element <paramref name="headOffset"/>.</param>
    /// <param name="values">Same layout as keys.</param>
    /// <param name="scores">Scratch of at least <paramref name="length"/> floats.</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Head(KernelPath path, ReadOnlySpan<float> query, ReadOnlySpan<byte> keys, ReadOnlySpan<byte> values,
        int positionStride, int headOffset, int length, float scale, Span<float> scores, Span<float> output)
    {
        int d = query.Length;
        if (length <= 0 || ((long)(length - 1) * OffsetOf(positionStride)) + OffsetOf(headOffset) + OffsetOf(d) > Math.Min(keys.Length, values.Length) || scores.Length < length || output.Length < d)
        {
            throw new ArgumentException($"attention over {length} positions does not fit the given buffers");
        }

        // A head of q8_0 or q4_0 blocks goes as a group of one: its tiles widened a block at a time (a scale converted once
        // per 32 values, not at every 8-value load), the same bits. One Zen 1 core, 4096 positions of a 64-value head
        // (bench attention --per-head, three alternating rounds): q8_0 105-109 -> 64-70 ns a position, q4_0 alike
        // (109-118 -> 104-116). f16 and bf16 were slower widened a tile at a time here, and stay as they are.
        if (typeof(TK) == typeof(Q8_0KvLoad) || typeof(TK) == typeof(Q4_0KvLoad))
        {
            Block(path, query, d, 1, keys, values, positionStride, headOffset, length, scale, 1, d, scores, output);
            return;
        }

        ref float q = ref MemoryMarshal.GetReference(query);
        ref byte k = ref Unsafe.Add(ref MemoryMarshal.GetReference(keys), OffsetOf(headOffset));
        ref byte v = ref Unsafe.Add(ref MemoryMarshal.GetReference(values), OffsetOf(headOffset));
        ref float o = ref MemoryMarshal.GetReference(output);
        nint rowBytes = OffsetOf(positionStride);
        scores = scores[..length];
        int first = path == KernelPath.Vector512 && d % 16 == 0 ? FourScores512(ref q, ref k, rowBytes, d, length, scale, scores) : 0;
        for (int j = first; j < length; j++)
        {
            scores[j] = Dot(path, ref q, ref Unsafe.Add(ref k, j * rowBytes), d) * scale;
        }

        SoftmaxKernel.InPlace(scores);
        WeightedValues(path, ref v, rowBytes, scores, ref o, d, first: true);
    }

    /// <summary>
    /// Positions a <see cref="Block"/> pass takes at a time: 16 KiB of a head's keys (or values), so they stay in L1 while
    /// every query head goes over them (64 positions of a 64-float head; 32 and 64 measured alike, 16 slower). A multiple
    /// of four, so that the same positions go four at a time as in <see cref="Head"/>.
    /// </summary>
    private static int TileOf(int d) => Math.Max(4, 4096 / d / 4 * 4);

    /// <summary>
    /// <see cref="Head"/> for the <paramref name="heads"/> query heads that share one key-value head (grouped-query
    /// attention), for <paramref name="rows"/> consecutive tokens of one sequence (one token at decode, a block of a prompt's):
    /// row r's heads start at r × <paramref name="rowStride"/> in <paramref name="queries"/> and <paramref name="outputs"/>
    /// (heads of <paramref name="d"/> floats, one after another), and it sees <paramref name="firstLength"/> + r positions.
    /// Keys, then values, go a tile of positions at a time through every row's heads while the tile sits in L1: head after
    /// head over all positions read them from L2 once per head (7 times for Qwen2.5-0.5B) and ran at 26 cycles a head and
    /// position, bound by L2's bandwidth; and a prompt reads a tile from L2 (or beyond: a 2048-position head's keys and
    /// values are 1 MiB) once per block of rows, not once per row. Each row's head still gets <see cref="Head"/>'s bits.
    /// </summary>
    /// <param name="scores">Scratch of at least rows × heads × (firstLength + rows − 1) floats.</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Block(KernelPath path, ReadOnlySpan<float> queries, int rowStride, int rows, ReadOnlySpan<byte> keys, ReadOnlySpan<byte> values,
        int positionStride, int headOffset, int firstLength, float scale, int heads, int d, Span<float> scores, Span<float> outputs)
    {
        int length = firstLength + rows - 1;
        if (heads < 1 || rows < 1 || firstLength <= 0 || d < 1 || rowStride < heads * d || queries.Length < ((rows - 1) * rowStride) + (heads * d)
            || outputs.Length < ((rows - 1) * rowStride) + (heads * d)
            || ((long)(length - 1) * OffsetOf(positionStride)) + OffsetOf(headOffset) + OffsetOf(d) > Math.Min(keys.Length, values.Length) || scores.Length < (long)rows * heads * length)
        {
            throw new ArgumentException($"attention of {rows} rows of {heads} heads over {firstLength}.. positions does not fit the given buffers");
        }

        ref float q = ref MemoryMarshal.GetReference(queries);
        ref byte k = ref Unsafe.Add(ref MemoryMarshal.GetReference(keys), OffsetOf(headOffset));
        ref byte v = ref Unsafe.Add(ref MemoryMarshal.GetReference(values), OffsetOf(headOffset));
        ref float o = ref MemoryMarshal.GetReference(outputs);
        nint rowBytes = OffsetOf(positionStride);
        int tileLength = TileOf(d);

        // A cache of halves (or of q8_0 blocks) is widened a tile at a time into f32 (the same numbers its loads give), which every row and
        // head of the block then reads from L1: widened at each load, a tile was converted once per head and row (7
        // times a token for Qwen2.5-0.5B), and f16 attention ran at half the speed of f32.
        bool widen = typeof(TK) != typeof(F32Load);
        int wideFloats = widen ? tileLength * d : 0;
        Span<float> wide = wideFloats <= 16384 ? stackalloc float[wideFloats] : new float[wideFloats];
        ref byte wideBytes = ref Unsafe.As<float, byte>(ref MemoryMarshal.GetReference(wide));
        nint wideRowBytes = (nint)d * sizeof(float);

        for (int j0 = 0; j0 < length; j0 += tileLength)
        {
            ref byte kTile = ref Unsafe.Add(ref k, j0 * rowBytes);
            if (widen)
            {
                WidenTile(path, ref kTile, rowBytes, Math.Min(tileLength, length - j0), d, wide);
                ScoreTile(path, ref q, rowStride, rows, ref wideBytes, wideRowBytes, firstLength, j0, length, tileLength, scale, heads, d, scores);
            }
            else
            {
                ScoreTile(path, ref q, rowStride, rows, ref kTile, rowBytes, firstLength, j0, length, tileLength, scale, heads, d, scores);
            }
        }

        for (int r = 0; r < rows; r++)
        {
            for (int h = 0; h < heads; h++)
            {
                SoftmaxKernel.InPlace(scores.Slice(((r * heads) + h) * length, firstLength + r));
            }
        }

        for (int j0 = 0; j0 < length; j0 += tileLength)
        {
            ref byte vTile = ref Unsafe.Add(ref v, j0 * rowBytes);
            if (widen)
            {
                WidenTile(path, ref vTile, rowBytes, Math.Min(tileLength, length - j0), d, wide);
                ValueTile(path, rowStride, rows, ref wideBytes, wideRowBytes, firstLength, j0, length, tileLength, heads, d, scores, ref o);
            }
            else
            {
                ValueTile(path, rowStride, rows, ref vTile, rowBytes, firstLength, j0, length, tileLength, heads, d, scores, ref o);
            }
        }
    }

    /// <summary>
    /// The <paramref name="n"/> positions of a tile, one head's <paramref name="d"/> elements each, as f32 one after another:
    /// the loops inline. A call per position through <see cref="Widen{TW}.Run"/> cost f16 11.9-17.8 ms a token against
    /// 10.1-14.2 inline, bf16 10.6-15.4 against 8.8-10.9 (<c>bench attention</c>, three alternating rounds, one Zen 5 core).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void WidenTile(KernelPath path, ref byte tile, nint rowBytes, int n, int d, Span<float> wide)
    {
        ref float w = ref MemoryMarshal.GetReference(wide);
        if (typeof(TK) == typeof(Q8_0KvLoad) && path != KernelPath.Scalar)
        {
            for (int j = 0; j < n; j++)
            {
                Q8_0KvLoad.WidenHead(ref Unsafe.Add(ref tile, j * rowBytes), ref Unsafe.Add(ref w, j * d), d);
            }

            return;
        }

        if (typeof(TK) == typeof(Q4_0KvLoad) && path != KernelPath.Scalar)
        {
            for (int j = 0; j < n; j++)
            {
                Q4_0KvLoad.WidenHead(ref Unsafe.Add(ref tile, j * rowBytes), ref Unsafe.Add(ref w, j * d), d);
            }

            return;
        }

        for (int j = 0; j < n; j++)
        {
            ref byte row = ref Unsafe.Add(ref tile, j * rowBytes);
            ref float to = ref Unsafe.Add(ref w, j * d);
            nint i = 0;
            if (path == KernelPath.Vector512)
            {
                for (; i <= d - 16; i += 16)
                {
                    TK.Load512(ref row, i).StoreUnsafe(ref to, (nuint)i);
                }
            }

            if (path != KernelPath.Scalar)
            {
                for (; i <= d - 8; i += 8)
                {
                    TK.Load256(ref row, i).StoreUnsafe(ref to, (nuint)i);
                }
            }

            for (; i < d; i++)
            {
                Unsafe.Add(ref to, i) = TK.LoadScalar(ref row, i);
            }
        }
    }

    /// <summary>Every row's and head's scores over the f32 tile of keys at position <paramref name="j0"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ScoreTile(KernelPath path, ref float q, int rowStride, int rows, ref byte kTile, nint rowBytes, int firstLength, int j0, int length,
        int tileLength, float scale, int heads, int d, Span<float> scores)
    {
        bool four = path == KernelPath.Vector512 && d % 16 == 0;
        for (int r = 0; r < rows; r++)
        {
            // A row's last tile ends at its own length, so its positions go four at a time exactly as in Head.
            int n = Math.Min(tileLength, firstLength + r - j0);
            int h = 0;
            for (; four && h + 2 <= heads && n > 0; h += 2)
            {
                // Two heads over the same keys: the positions four at a time for both, then each head's rest alone.
                ref float qh = ref Unsafe.Add(ref q, (r * rowStride) + (h * d));
                Span<float> tile = scores.Slice((((r * heads) + h) * length) + j0, n), next = scores.Slice((((r * heads) + h + 1) * length) + j0, n);
                int first = FourScores512TwoHeads(ref qh, ref kTile, rowBytes, d, n, scale, tile, next);
                DotScores(path, ref qh, ref kTile, rowBytes, d, scale, first, tile);
                DotScores(path, ref Unsafe.Add(ref qh, d), ref kTile, rowBytes, d, scale, first, next);
            }

            for (; h < heads && n > 0; h++)
            {
                ref float qh = ref Unsafe.Add(ref q, (r * rowStride) + (h * d));
                Span<float> tile = scores.Slice((((r * heads) + h) * length) + j0, n);
                int first = four ? AttentionKernel<F32Load>.FourScores512(ref qh, ref kTile, rowBytes, d, n, scale, tile) : 0;
                DotScores(path, ref qh, ref kTile, rowBytes, d, scale, first, tile);
            }
        }
    }

    /// <summary>The scores of one head for the tile's positions from <paramref name="first"/> on, one dot product each.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void DotScores(KernelPath path, ref float q, ref byte kTile, nint rowBytes, int d, float scale, int first, Span<float> tile)
    {
        for (int j = first; j < tile.Length; j++)
        {
            tile[j] = AttentionKernel<F32Load>.Dot(path, ref q, ref Unsafe.Add(ref kTile, j * rowBytes), d) * scale;
        }
    }

    /// <summary>Every row's and head's outputs summed on over the f32 tile of values at position <paramref name="j0"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ValueTile(KernelPath path, int rowStride, int rows, ref byte vTile, nint rowBytes, int firstLength, int j0, int length,
        int tileLength, int heads, int d, Span<float> scores, ref float o)
    {
        bool pairs = path != KernelPath.Scalar && d % (path == KernelPath.Vector512 ? 64 : 32) == 0;
        for (int r = 0; r < rows; r++)
        {
            int n = Math.Min(tileLength, firstLength + r - j0);
            int h = 0;
            for (; pairs && h + 2 <= heads && n > 0; h += 2)
            {
                WeightedValuesTwoHeads(path, ref vTile, rowBytes, scores.Slice((((r * heads) + h) * length) + j0, n),
                    scores.Slice((((r * heads) + h + 1) * length) + j0, n), ref Unsafe.Add(ref o, (r * rowStride) + (h * d)), d, first: j0 == 0);
            }

            for (; h < heads && n > 0; h++)
            {
                AttentionKernel<F32Load>.WeightedValues(path, ref vTile, rowBytes, scores.Slice((((r * heads) + h) * length) + j0, n),
                    ref Unsafe.Add(ref o, (r * rowStride) + (h * d)), d, first: j0 == 0);
            }
        }
    }

    /// <summary>
    /// <see cref="AttentionKernel{TK}.WeightedValues"/> for two heads that read the same values (their outputs one after
    /// the other at <paramref name="o"/>), for a head of whole 64 (Vector512) or 32 (Vector256) floats: each value vector
    /// is loaded once for both, and the two heads' chains of multiply-adds run side by side. One head's chain alone waits on
    /// each multiply-add's latency (four registers a head of 64, one position after another). Each head's sums are its own
    /// chain, in the same order, so the same bits as one head at a time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void WeightedValuesTwoHeads(KernelPath path, ref byte v, nint rowBytes, ReadOnlySpan<float> weights0, ReadOnlySpan<float> weights1,
        ref float o, int d, bool first)
    {
        int length = weights0.Length;
        ref float w0 = ref MemoryMarshal.GetReference(weights0);
        ref float w1 = ref MemoryMarshal.GetReference(weights1);
        ref float p = ref Unsafe.Add(ref o, d);
        if (path == KernelPath.Vector512)
        {
            for (nint c = 0; c < d; c += 64)
            {
                Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
                if (!first)
                {
                    a0 = V512.LoadUnsafe(ref o, (nuint)c);
                    a1 = V512.LoadUnsafe(ref o, (nuint)(c + 16));
                    a2 = V512.LoadUnsafe(ref o, (nuint)(c + 32));
                    a3 = V512.LoadUnsafe(ref o, (nuint)(c + 48));
                    b0 = V512.LoadUnsafe(ref p, (nuint)c);
                    b1 = V512.LoadUnsafe(ref p, (nuint)(c + 16));
                    b2 = V512.LoadUnsafe(ref p, (nuint)(c + 32));
                    b3 = V512.LoadUnsafe(ref p, (nuint)(c + 48));
                }

                ref byte vj = ref Unsafe.Add(ref v, c * sizeof(float));
                for (int j = 0; j < length; j++)
                {
                    Vector512<float> v0 = F32Load.Load512(ref vj, 0), v1 = F32Load.Load512(ref vj, 16);
                    Vector512<float> v2 = F32Load.Load512(ref vj, 32), v3 = F32Load.Load512(ref vj, 48);
                    Vector512<float> x = V512.Create(Unsafe.Add(ref w0, j)), y = V512.Create(Unsafe.Add(ref w1, j));
                    a0 = V512.FusedMultiplyAdd(v0, x, a0);
                    b0 = V512.FusedMultiplyAdd(v0, y, b0);
                    a1 = V512.FusedMultiplyAdd(v1, x, a1);
                    b1 = V512.FusedMultiplyAdd(v1, y, b1);
                    a2 = V512.FusedMultiplyAdd(v2, x, a2);
                    b2 = V512.FusedMultiplyAdd(v2, y, b2);
                    a3 = V512.FusedMultiplyAdd(v3, x, a3);
                    b3 = V512.FusedMultiplyAdd(v3, y, b3);
                    vj = ref Unsafe.Add(ref vj, rowBytes);
                }

                a0.StoreUnsafe(ref o, (nuint)c);
                a1.StoreUnsafe(ref o, (nuint)(c + 16));
                a2.StoreUnsafe(ref o, (nuint)(c + 32));
                a3.StoreUnsafe(ref o, (nuint)(c + 48));
                b0.StoreUnsafe(ref p, (nuint)c);
                b1.StoreUnsafe(ref p, (nuint)(c + 16));
                b2.StoreUnsafe(ref p, (nuint)(c + 32));
                b3.StoreUnsafe(ref p, (nuint)(c + 48));
            }

            return;
        }

        for (nint c = 0; c < d; c += 32)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
            if (!first)
            {
                a0 = V256.LoadUnsafe(ref o, (nuint)c);
                a1 = V256.LoadUnsafe(ref o, (nuint)(c + 8));
                a2 = V256.LoadUnsafe(ref o, (nuint)(c + 16));
                a3 = V256.LoadUnsafe(ref o, (nuint)(c + 24));
                b0 = V256.LoadUnsafe(ref p, (nuint)c);
                b1 = V256.LoadUnsafe(ref p, (nuint)(c + 8));
                b2 = V256.LoadUnsafe(ref p, (nuint)(c + 16));
                b3 = V256.LoadUnsafe(ref p, (nuint)(c + 24));
            }

            ref byte vj = ref Unsafe.Add(ref v, c * sizeof(float));
            for (int j = 0; j < length; j++)
            {
                Vector256<float> v0 = F32Load.Load256(ref vj, 0), v1 = F32Load.Load256(ref vj, 8);
                Vector256<float> v2 = F32Load.Load256(ref vj, 16), v3 = F32Load.Load256(ref vj, 24);
                Vector256<float> x = V256.Create(Unsafe.Add(ref w0, j)), y = V256.Create(Unsafe.Add(ref w1, j));
                a0 = V256.FusedMultiplyAdd(v0, x, a0);
                b0 = V256.FusedMultiplyAdd(v0, y, b0);
                a1 = V256.FusedMultiplyAdd(v1, x, a1);
                b1 = V256.FusedMultiplyAdd(v1, y, b1);
                a2 = V256.FusedMultiplyAdd(v2, x, a2);
                b2 = V256.FusedMultiplyAdd(v2, y, b2);
                a3 = V256.FusedMultiplyAdd(v3, x, a3);
                b3 = V256.FusedMultiplyAdd(v3, y, b3);
                vj = ref Unsafe.Add(ref vj, rowBytes);
            }

            a0.StoreUnsafe(ref o, (nuint)c);
            a1.StoreUnsafe(ref o, (nuint)(c + 8));
            a2.StoreUnsafe(ref o, (nuint)(c + 16));
            a3.StoreUnsafe(ref o, (nuint)(c + 24));
            b0.StoreUnsafe(ref p, (nuint)c);
            b1.StoreUnsafe(ref p, (nuint)(c + 8));
            b2.StoreUnsafe(ref p, (nuint)(c + 16));
            b3.StoreUnsafe(ref p, (nuint)(c + 24));
        }
    }

    /// <summary>
    /// Scores of keys four at a time (the vector path, whole 16-float chunks of a head): the four sums reduce together,
    /// two vhaddps for four keys instead of a full horizontal sum each, which had cost more than the products. Returns
    /// the first position left for <see cref="Dot"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int FourScores512(ref float q, ref byte k, nint rowBytes, int d, int length, float scale, Span<float> scores)
    {
        int j = 0;
        for (; j + 4 <= length; j += 4)
        {
            ref byte k0 = ref Unsafe.Add(ref k, j * rowBytes);
            ref byte k1 = ref Unsafe.Add(ref k0, rowBytes), k2 = ref Unsafe.Add(ref k0, 2 * rowBytes), k3 = ref Unsafe.Add(ref k0, 3 * rowBytes);
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (nint i = 0; i < d; i += 16)
            {
                Vector512<float> qi = V512.LoadUnsafe(ref q, (nuint)i);
                a0 = V512.FusedMultiplyAdd(qi, TK.Load512(ref k0, i), a0);
                a1 = V512.FusedMultiplyAdd(qi, TK.Load512(ref k1, i), a1);
                a2 = V512.FusedMultiplyAdd(qi, TK.Load512(ref k2, i), a2);
                a3 = V512.FusedMultiplyAdd(qi, TK.Load512(ref k3, i), a3);
            }

            (Sum4(Half(a0), Half(a1), Half(a2), Half(a3)) * scale).StoreUnsafe(ref MemoryMarshal.GetReference(scores), (nuint)j);
        }

        return j;
    }

    /// <summary>
    /// <see cref="FourScores512"/> for two heads (queries one after the other at <paramref name="q"/>) over the same keys:
    /// each key vector is loaded once for both. Each head's products, sums and reductions are its own, as alone.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int FourScores512TwoHeads(ref float q, ref byte k, nint rowBytes, int d, int length, float scale, Span<float> scores0, Span<float> scores1)
    {
        ref float p = ref Unsafe.Add(ref q, d);
        int j = 0;
        for (; j + 4 <= length; j += 4)
        {
            ref byte k0 = ref Unsafe.Add(ref k, j * rowBytes);
            ref byte k1 = ref Unsafe.Add(ref k0, rowBytes), k2 = ref Unsafe.Add(ref k0, 2 * rowBytes), k3 = ref Unsafe.Add(ref k0, 3 * rowBytes);
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, b0 = default, b1 = default, b2 = default, b3 = default;
            for (nint i = 0; i < d; i += 16)
            {
                Vector512<float> x = V512.LoadUnsafe(ref q, (nuint)i), y = V512.LoadUnsafe(ref p, (nuint)i);
                Vector512<float> c0 = F32Load.Load512(ref k0, i), c1 = F32Load.Load512(ref k1, i), c2 = F32Load.Load512(ref k2, i), c3 = F32Load.Load512(ref k3, i);
                a0 = V512.FusedMultiplyAdd(x, c0, a0);
                b0 = V512.FusedMultiplyAdd(y, c0, b0);
                a1 = V512.FusedMultiplyAdd(x, c1, a1);
                b1 = V512.FusedMultiplyAdd(y, c1, b1);
                a2 = V512.FusedMultiplyAdd(x, c2, a2);
                b2 = V512.FusedMultiplyAdd(y, c2, b2);
                a3 = V512.FusedMultiplyAdd(x, c3, a3);
                b3 = V512.FusedMultiplyAdd(y, c3, b3);
            }

            (Sum4(Half(a0), Half(a1), Half(a2), Half(a3)) * scale).StoreUnsafe(ref MemoryMarshal.GetReference(scores0), (nuint)j);
            (Sum4(Half(b0), Half(b1), Half(b2), Half(b3)) * scale).StoreUnsafe(ref MemoryMarshal.GetReference(scores1), (nuint)j);
        }

        return j;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Half(Vector512<float> a)
    {
        Vector256<float> h = a.GetLower() + a.GetUpper();
        return h.GetLower() + h.GetUpper();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Sum4(Vector128<float> s0, Vector128<float> s1, Vector128<float> s2, Vector128<float> s3) =>
        System.Runtime.Intrinsics.X86.Sse3.HorizontalAdd(System.Runtime.Intrinsics.X86.Sse3.HorizontalAdd(s0, s1), System.Runtime.Intrinsics.X86.Sse3.HorizontalAdd(s2, s3));

    /// <summary>
    /// o = Σ_j weight_j · v_j, position by position for every element (the reference's order), 64 floats of the head at a
    /// time in four registers over all positions: accumulating into the output in memory chained every position's
    /// multiply-add to the previous one's store. Unless <paramref name="first"/>, the sums go on from what o holds (a
    /// later tile of positions): the same chain of multiply-adds, so the same bits as one pass.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void WeightedValues(KernelPath path, ref byte v, nint rowBytes, ReadOnlySpan<float> weights, ref float o, int d, bool first)
    {
        int length = weights.Length;
        ref float w = ref MemoryMarshal.GetReference(weights);
        nint c = 0;
        if (path == KernelPath.Vector512)
        {
            for (; c + 64 <= d; c += 64)
            {
                Vector512<float> o0 = default, o1 = default, o2 = default, o3 = default;
                if (!first)
                {
                    o0 = V512.LoadUnsafe(ref o, (nuint)c);
                    o1 = V512.LoadUnsafe(ref o, (nuint)(c + 16));
                    o2 = V512.LoadUnsafe(ref o, (nuint)(c + 32));
                    o3 = V512.LoadUnsafe(ref o, (nuint)(c + 48));
                }

                ref byte vj = ref Unsafe.Add(ref v, OffsetOf(c));
                for (int j = 0; j < length; j++)
                {
                    Vector512<float> wj = V512.Create(Unsafe.Add(ref w, j));
                    o0 = V512.FusedMultiplyAdd(TK.Load512(ref vj, 0), wj, o0);
                    o1 = V512.FusedMultiplyAdd(TK.Load512(ref vj, 16), wj, o1);
                    o2 = V512.FusedMultiplyAdd(TK.Load512(ref vj, 32), wj, o2);
                    o3 = V512.FusedMultiplyAdd(TK.Load512(ref vj, 48), wj, o3);
                    vj = ref Unsafe.Add(ref vj, rowBytes);
                }

                o0.StoreUnsafe(ref o, (nuint)c);
                o1.StoreUnsafe(ref o, (nuint)(c + 16));
                o2.StoreUnsafe(ref o, (nuint)(c + 32));
                o3.StoreUnsafe(ref o, (nuint)(c + 48));
            }
        }

        if (path != KernelPath.Scalar)
        {
            for (; c + 32 <= d; c += 32)
            {
                Vector256<float> o0 = default, o1 = default, o2 = default, o3 = default;
                if (!first)
                {
                    o0 = V256.LoadUnsafe(ref o, (nuint)c);
                    o1 = V256.LoadUnsafe(ref o, (nuint)(c + 8));
                    o2 = V256.LoadUnsafe(ref o, (nuint)(c + 16));
                    o3 = V256.LoadUnsafe(ref o, (nuint)(c + 24));
                }

                ref byte vj = ref Unsafe.Add(ref v, OffsetOf(c));
                for (int j = 0; j < length; j++)
                {
                    Vector256<float> wj = V256.Create(Unsafe.Add(ref w, j));
                    o0 = V256.FusedMultiplyAdd(TK.Load256(ref vj, 0), wj, o0);
                    o1 = V256.FusedMultiplyAdd(TK.Load256(ref vj, 8), wj, o1);
                    o2 = V256.FusedMultiplyAdd(TK.Load256(ref vj, 16), wj, o2);
                    o3 = V256.FusedMultiplyAdd(TK.Load256(ref vj, 24), wj, o3);
                    vj = ref Unsafe.Add(ref vj, rowBytes);
                }

                o0.StoreUnsafe(ref o, (nuint)c);
                o1.StoreUnsafe(ref o, (nuint)(c + 8));
                o2.StoreUnsafe(ref o, (nuint)(c + 16));
                o3.StoreUnsafe(ref o, (nuint)(c + 24));
            }
        }

        // The rest of the head (and every element on the scalar path): the output in memory, position by position.
        for (nint i = c; i < d && first; i++)
        {
            Unsafe.Add(ref o, i) = 0;
        }

        for (int j = 0; j < length && c < d; j++)
        {
            MultiplyAdd(path, ref Unsafe.Add(ref v, (j * rowBytes) + (OffsetOf(c))), Unsafe.Add(ref w, j), ref Unsafe.Add(ref o, c), d - (int)c);
        }
    }

    /// <summary>Σ a[i] b[i] over a head.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Dot(KernelPath path, ref float a, ref byte b, int d)
    {
        float sum = 0;
        nint i = 0;
        if (path == KernelPath.Vector512)
        {
            Vector512<float> acc = default;
            for (; i <= d - 16; i += 16)
            {
                acc = V512.FusedMultiplyAdd(V512.LoadUnsafe(ref a, (nuint)i), TK.Load512(ref b, i), acc);
            }

            sum = V512.Sum(acc);
        }

        if (path != KernelPath.Scalar)
        {
            Vector256<float> acc = default;
            for (; i <= d - 8; i += 8)
            {
                acc = V256.FusedMultiplyAdd(V256.LoadUnsafe(ref a, (nuint)i), TK.Load256(ref b, i), acc);
            }

            sum += V256.Sum(acc);
        }

        for (; i < d; i++)
        {
            sum += Unsafe.Add(ref a, i) * TK.LoadScalar(ref b, i);
        }

        return sum;
    }

    /// <summary>o[i] += weight · v[i] over a head.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MultiplyAdd(KernelPath path, ref byte v, float weight, ref float o, int d)
    {
        nint i = 0;
        if (path == KernelPath.Vector512)
        {
            Vector512<float> w = V512.Create(weight);
            for (; i <= d - 16; i += 16)
            {
                V512.FusedMultiplyAdd(TK.Load512(ref v, i), w, V512.LoadUnsafe(ref o, (nuint)i)).StoreUnsafe(ref o, (nuint)i);
            }
        }

        if (path != KernelPath.Scalar)
        {
            Vector256<float> w = V256.Create(weight);
            for (; i <= d - 8; i += 8)
            {
                V256.FusedMultiplyAdd(TK.Load256(ref v, i), w, V256.LoadUnsafe(ref o, (nuint)i)).StoreUnsafe(ref o, (nuint)i);
            }
        }

        for (; i < d; i++)
        {
            Unsafe.Add(ref o, i) += weight * TK.LoadScalar(ref v, i);
        }
    }
}
