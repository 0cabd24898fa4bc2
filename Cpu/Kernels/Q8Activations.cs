using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Activation rows quantized to 8 bits per 32 values, as ggml's <c>block_q8_0</c> for the activations of Q8_0 and Q4_0
/// products (<c>quantize_row_q8_0</c>): per block d = max|x| / 127 and codes round(x / d), at most 127 in size; a block
/// of zeros has d = 0. Ties round to even on every path, as ggml's x86 code does (its scalar reference rounds them
/// away from zero, a difference only at exact halves). The scale stays f32 (ggml stores it as f16). For Q4_0 (codes
/// stored + 8) each block also keeps -8 × the sum of every 4 codes, the eight 32-bit lanes a 32-byte integer product
/// sums them into, to start that product from. Buffers grow to the largest step and are reused.
/// </summary>
internal sealed class Q8Activations
{
    public const int BlockValues = 32;

    private sbyte[] _codes = [];
    private float[] _scales = [];
    private int[] _offsets = [];
    private float[] _scalesByBlock = [];
    private int[] _q4_0Offsets = [];
    private int[] _q8_0Offsets = [];

    public int Cols { get; private set; }

    public int Tokens { get; private set; }

    /// <summary>The tokens the integer panels' tables hold: <see cref="Tokens"/>, then zero tokens up to a group (see <see cref="Prepare(int, int, int)"/>).</summary>
    public int PanelTokens { get; private set; }

    /// <summary>Quantizes <paramref name="tokens"/> rows of <paramref name="cols"/> values (a multiple of 32).</summary>
    public void Quantize(ReadOnlySpan<float> x, int tokens, int cols, KernelPath path)
    {
        Prepare(tokens, cols);
        QuantizeRows(x, 0, tokens, path);
    }

    /// <summary>Makes room for <paramref name="tokens"/> rows of <paramref name="cols"/>, to be filled by <see cref="QuantizeRows"/>.</summary>
    public void Prepare(int tokens, int cols) => Prepare(tokens, cols, tokens);

    /// <summary>
    /// <see cref="Prepare(int, int)"/>, with the integer panels' tables (<see cref="AllCodes"/>, <see cref="ScalesByBlock"/>,
    /// the offsets) holding <paramref name="panelTokens"/> (at least <paramref name="tokens"/>) tokens, those past the real
    /// ones all zero: the panels then multiply them in a group of four or eight instead of one by one
    /// (<see cref="QuantPanel.PanelTokens"/>) and leave their results out.
    /// </summary>
    public void Prepare(int tokens, int cols, int panelTokens)
    {
        QuantPanel.CheckPanelTokens(tokens, panelTokens);
        int blocks = panelTokens * cols / BlockValues;
        if (_codes.Length < panelTokens * cols)
        {
            _codes = new sbyte[panelTokens * cols];
            _scales = new float[blocks];
            _offsets = new int[blocks * 8];
            _scalesByBlock = new float[blocks];
            _q4_0Offsets = new int[blocks];
            _q8_0Offsets = new int[blocks];
        }

        (Cols, Tokens, PanelTokens) = (cols, tokens, panelTokens);
        if (panelTokens > tokens)
        {
            // The padding tokens: zero codes, scales and offsets, so that their sums (never written out) are 0 rather than
            // whatever a bigger step left, which could be subnormal or NaN and slow the multiply-adds down.
            _codes.AsSpan(tokens * cols, (panelTokens - tokens) * cols).Clear();
            QuantPanel.ClearPadding<float>(_scalesByBlock, cols / BlockValues, tokens, panelTokens);
            QuantPanel.ClearPadding<int>(_q4_0Offsets, cols / BlockValues, tokens, panelTokens);
            QuantPanel.ClearPadding<int>(_q8_0Offsets, cols / BlockValues, tokens, panelTokens);
        }
    }

    /// <summary>
    /// Rows <paramref name="first"/>..first + count - 1 of <paramref name="x"/> (whole rows of <see cref="Cols"/>); threads may fill
    /// disjoint rows at once (a long prompt's activations are quantized in parallel).
    /// </summary>
    public void QuantizeRows(ReadOnlySpan<float> x, int first, int count, KernelPath path)
    {
        bool vector = path != KernelPath.Scalar && Avx2.IsSupported;
        int perRow = Cols / BlockValues;
        for (int b = first * perRow; b < (first + count) * perRow; b++)
        {
            ReadOnlySpan<float> values = x.Slice(b * BlockValues, BlockValues);
            Span<sbyte> codes = _codes.AsSpan(b * BlockValues, BlockValues);
            Span<int> offsets = _offsets.AsSpan(b * 8, 8);
            if (vector)
            {
                _scales[b] = QuantizeBlock256(values, codes, offsets);
            }
            else
            {
                _scales[b] = QuantizeBlockScalar(values, codes);
                for (int lane = 0; lane < 8; lane++)
                {
                    offsets[lane] = -8 * (codes[4 * lane] + codes[(4 * lane) + 1] + codes[(4 * lane) + 2] + codes[(4 * lane) + 3]);
                }
            }

            // The block's code sum, from the offsets (-8 × each lane's four codes) either path made.
            int offsetSum = 0;
            for (int lane = 0; lane < 8; lane++)
            {
                offsetSum += offsets[lane];
            }

            // Block-major copies for the integer panels, which take a block of eight tokens at once.
            int byBlock = ((b % perRow) * PanelTokens) + (b / perRow);
            _scalesByBlock[byBlock] = _scales[b];
            _q4_0Offsets[byBlock] = offsetSum;
            _q8_0Offsets[byBlock] = 16 * offsetSum;
        }
    }

    /// <summary>The reference: one block's codes, and its scale returned.</summary>
    private static float QuantizeBlockScalar(ReadOnlySpan<float> values, Span<sbyte> codes)
    {
        float amax = 0;
        foreach (float v in values)
        {
            amax = MathF.Max(amax, MathF.Abs(v));
        }

        float d = amax / 127, inverse = d == 0 ? 0 : 1 / d;
        for (int j = 0; j < BlockValues; j++)
        {
            codes[j] = (sbyte)Math.Clamp((int)MathF.Round(values[j] * inverse), -127, 127);
        }

        return d;
    }

    /// <summary>
    /// <see cref="QuantizeBlockScalar"/> eight values at a time (vroundps rounds ties to even, as MathF.Round), and the
    /// offsets from the 32-bit lanes of the codes: every 4 codes' sum (as 4 × 8 sums of pairs, then pairs of those), × -8.
    /// </summary>
    private static float QuantizeBlock256(ReadOnlySpan<float> values, Span<sbyte> codes, Span<int> offsets)
    {
        Vector256<float> v0 = Vector256.Create(values), v1 = Vector256.Create(values[8..]),
            v2 = Vector256.Create(values[16..]), v3 = Vector256.Create(values[24..]);
        Vector256<float> m = Vector256.Max(Vector256.Max(Vector256.Abs(v0), Vector256.Abs(v1)), Vector256.Max(Vector256.Abs(v2), Vector256.Abs(v3)));
        float amax = Q8KActivations.MaxAcross(m);
        float d = amax / 127, inverse = d == 0 ? 0 : 1 / d;
        var scale = Vector256.Create(inverse);
        var top = Vector256.Create(127);
        var bottom = Vector256.Create(-127);
        Vector256<int> Codes(Vector256<float> v) => Vector256.Clamp(Vector256.ConvertToInt32(Vector256.Round(v * scale)), bottom, top);
        Vector256<int> c0 = Codes(v0), c1 = Codes(v1), c2 = Codes(v2), c3 = Codes(v3);
        Vector256<short> low = Vector256.Narrow(c0, c1), high = Vector256.Narrow(c2, c3);
        Vector256<sbyte> packed = Vector256.Narrow(low, high);
        packed.CopyTo(codes);

        // The narrowing keeps the codes in order (it packs across 128-bit lanes and fixes the order up), so lane l of
        // the 32-bit sums must be codes 4l..4l+3: sum them from the packed bytes.
        Vector256<short> pairs = Avx2.MultiplyAddAdjacent(Vector256.Create((byte)1), packed);
        Vector256<int> fours = Avx2.MultiplyAddAdjacent(pairs, Vector256.Create((short)1));
        (fours * -8).CopyTo(offsets);
        return d;
    }

    /// <summary>Every token's codes, row after row, the <see cref="PanelTokens"/> past <see cref="Tokens"/> zero.</summary>
    public ReadOnlySpan<sbyte> AllCodes => _codes.AsSpan(0, PanelTokens * Cols);

    /// <summary>The block scales block by block: block j of token t at j × <see cref="PanelTokens"/> + t (for <see cref="QuantPanel"/>).</summary>
    public ReadOnlySpan<float> ScalesByBlock => _scalesByBlock.AsSpan(0, PanelTokens * Cols / BlockValues);

    /// <summary>
    /// -8 × Σ codes per block, block by block as <see cref="ScalesByBlock"/>: where Q4_0's codes are stored + 8 (0..15), a block's
    /// integer product starts from it and comes out as the product with the signed values (<see cref="QuantPanel"/>).
    /// </summary>
    public ReadOnlySpan<int> Q4_0Offsets => _q4_0Offsets.AsSpan(0, PanelTokens * Cols / BlockValues);

    /// <summary>-128 × Σ codes per block, block by block: the same for Q8_0's codes stored + 128.</summary>
    public ReadOnlySpan<int> Q8_0Offsets => _q8_0Offsets.AsSpan(0, PanelTokens * Cols / BlockValues);

    /// <summary>Row <paramref name="token"/>: its codes and block scales.</summary>
    public Q8Row Row(int token) => new(_codes.AsSpan(token * Cols, Cols), _scales.AsSpan(token * Cols / BlockValues, Cols / BlockValues),
        _offsets.AsSpan(token * Cols / BlockValues * 8, Cols / BlockValues * 8));
}

/// <summary>One token's Q8_0 activations: codes, a scale per 32, and Q4_0's offsets (eight per 32).</summary>
internal readonly ref struct Q8Row(ReadOnlySpan<sbyte> codes, ReadOnlySpan<float> scales, ReadOnlySpan<int> offsets)
{
    public ReadOnlySpan<sbyte> Codes { get; } = codes;

    public ReadOnlySpan<float> Scales { get; } = scales;

    /// <summary>-8 × Σ of every 4 codes, eight per block.</summary>
    public ReadOnlySpan<int> Offsets { get; } = offsets;
}
