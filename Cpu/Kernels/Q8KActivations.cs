using System.Runtime.Intrinsics;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Activation rows quantized to 8 bits per 256 values, as ggml's <c>block_q8_K</c> (<c>quantize_row_q8_K_ref</c>):
/// per block a scale d with the largest |x| at ±127, codes round(x / d) (ties to even), and the sum of every 16
/// codes (for the k-quants' mins and offsets; ggml's <c>bsums</c>), and here also of every 32 (Q4_K's sub-blocks). The
/// k-quant dot products then multiply integers, as llama.cpp does. The sums are 16-bit (at most 32 × 127 in size) so
/// the kernels weight them with one vpmaddwd. Buffers grow to the largest step and are reused.
/// </summary>
internal sealed class Q8KActivations
{
    public const int BlockValues = 256;

    private sbyte[] _codes = [];
    private sbyte[] _pairedCodes = [];
    private float[] _scales = [];
    private short[] _groupSums = [];
    private short[] _subBlockSums = [];
    private int[] _q6KOffsets = [];
    private float[] _scalesByBlock = [];
    private float[] _scaledSubBlockSums = [];

    public int Cols { get; private set; }

    public int Tokens { get; private set; }

    /// <summary>The tokens the integer panels' tables hold: <see cref="Tokens"/>, then zero tokens up to a group (see <see cref="Prepare(int, int, int)"/>).</summary>
    public int PanelTokens { get; private set; }

    /// <summary>Quantizes <paramref name="tokens"/> rows of <paramref name="cols"/> values (a multiple of 256).</summary>
    public void Quantize(ReadOnlySpan<float> x, int tokens, int cols, KernelPath path = KernelPath.Vector256)
    {
        Prepare(tokens, cols);
        QuantizeRows(x, 0, tokens, path);
    }

    /// <summary>Makes room for <paramref name="tokens"/> rows of <paramref name="cols"/>, to be filled by <see cref="QuantizeRows"/>.</summary>
    public void Prepare(int tokens, int cols) => Prepare(tokens, cols, tokens);

    /// <summary>
    /// <see cref="Prepare(int, int)"/>, with the integer panels' tables (<see cref="AllCodes"/> and the block-major ones) holding
    /// <paramref name="panelTokens"/> (at least <paramref name="tokens"/>) tokens, those past the real ones all zero, as
    /// <see cref="Q8Activations.Prepare(int, int, int)"/> does (see <see cref="QuantPanel.PanelTokens"/>).
    /// </summary>
    public void Prepare(int tokens, int cols, int panelTokens)
    {
        QuantPanel.CheckPanelTokens(tokens, panelTokens);
        int blocks = panelTokens * cols / BlockValues;
        if (_codes.Length < panelTokens * cols)
        {
            _codes = new sbyte[panelTokens * cols];
            _scales = new float[blocks];
            _groupSums = new short[panelTokens * cols / 16];
            _subBlockSums = new short[panelTokens * cols / 32];
            _q6KOffsets = new int[panelTokens * cols / 16];
            _scalesByBlock = new float[blocks];
            _scaledSubBlockSums = new float[panelTokens * cols / 32];
        }

        (Cols, Tokens, PanelTokens) = (cols, tokens, panelTokens);
        Paired = false;
        if (panelTokens > tokens)
        {
            // The padding tokens' codes and table entries zero, as in Q8Activations.Prepare.
            _codes.AsSpan(tokens * cols, (panelTokens - tokens) * cols).Clear();
            QuantPanel.ClearPadding<float>(_scalesByBlock, cols / BlockValues, tokens, panelTokens);
            QuantPanel.ClearPadding<float>(_scaledSubBlockSums, cols / 32, tokens, panelTokens);
            QuantPanel.ClearPadding<int>(_q6KOffsets, cols / 16, tokens, panelTokens);
        }
    }

    /// <summary>
    /// Rows <paramref name="first"/>..first + count - 1 of <paramref name="x"/> (whole rows of <see cref="Cols"/>); threads may fill
    /// disjoint rows at once (a long prompt's activations are quantized in parallel).
    /// </summary>
    public void QuantizeRows(ReadOnlySpan<float> x, int first, int count, KernelPath path)
    {
        int perRow = Cols / BlockValues;
        Paired = false;
        bool vector = path != KernelPath.Scalar && Vector256.IsHardwareAccelerated;
        for (int b = first * perRow; b < (first + count) * perRow; b++)
        {
            ReadOnlySpan<float> values = x.Slice(b * BlockValues, BlockValues);
            Span<sbyte> codes = _codes.AsSpan(b * BlockValues, BlockValues);
            Span<short> groupSums = _groupSums.AsSpan(b * 16, 16);
            float max = LargestMagnitude(values, vector);
            if (max == 0)
            {
                codes.Clear();
                _scales[b] = 0;
                groupSums.Clear();
                _subBlockSums.AsSpan(b * 8, 8).Clear();
                WriteBlockMajor(b, 0, groupSums, perRow);
                continue;
            }

            // ggml's choice: the value of largest magnitude becomes -127 (its sign flipped by the negative scale).
            float inverse = -127f / max;
            if (vector)
            {
                QuantizeBlock256(values, inverse, codes, groupSums);
            }
            else
            {
                QuantizeBlockScalar(values, inverse, codes, groupSums);
            }

            float d = 1 / inverse;
            _scales[b] = d;
            for (int j = 0; j < 8; j++)
            {
                _subBlockSums[(b * 8) + j] = (short)(groupSums[2 * j] + groupSums[(2 * j) + 1]);
            }

            WriteBlockMajor(b, d, groupSums, perRow);
        }
    }

    /// <summary>
    /// Block <paramref name="b"/>'s scale, its sub-blocks' d × Σ and its groups' -32 × Σ into the block-major tables of
    /// <see cref="QuantPanel"/>, which takes eight tokens at once: block j of token t at j × <see cref="PanelTokens"/> + t.
    /// </summary>
    private void WriteBlockMajor(int b, float d, ReadOnlySpan<short> groupSums, int perRow)
    {
        int token = b / perRow, block = b % perRow, stride = PanelTokens;
        _scalesByBlock[(block * stride) + token] = d;
        for (int j = 0; j < 8; j++)
        {
            _scaledSubBlockSums[(((block * 8) + j) * stride) + token] = d * (groupSums[2 * j] + groupSums[(2 * j) + 1]);
        }

        for (int g = 0; g < 16; g++)
        {
            _q6KOffsets[(((block * 16) + g) * stride) + token] = -32 * groupSums[g];
        }
    }

    /// <summary>The first value of the largest magnitude, sign kept (ggml's <c>max</c>; 0 for an all-zero block).</summary>
    private static float LargestMagnitude(ReadOnlySpan<float> values, bool vector)
    {
        float amax = 0;
        if (vector)
        {
            Vector256<float> m = Vector256<float>.Zero;
            for (int i = 0; i < BlockValues; i += 8)
            {
                m = Vector256.Max(m, Vector256.Abs(Vector256.Create(values.Slice(i, 8))));
            }

            amax = MaxAcross(m);
        }

        float max = 0, best = 0;
        foreach (float v in values)
        {
            float a = MathF.Abs(v);
            if (a > best)
            {
                best = a;
                max = v;
                if (vector && a == amax)
                {
                    break;     // the first value that reaches the largest magnitude: the one the scalar scan keeps
                }
            }
        }

        return max;
    }

    /// <summary>The largest of the eight lanes.</summary>
    internal static float MaxAcross(Vector256<float> v)
    {
        Vector128<float> m = Vector128.Max(v.GetLower(), v.GetUpper());
        m = Vector128.Max(m, Vector128.Shuffle(m, Vector128.Create(2, 3, 0, 1)));
        return MathF.Max(m[0], m[1]);
    }

    /// <summary>The reference: codes round(inverse × x) (ties to even), at most 127; sums of every 16 codes.</summary>
    private static void QuantizeBlockScalar(ReadOnlySpan<float> values, float inverse, Span<sbyte> codes, Span<short> groupSums)
    {
        for (int j = 0; j < BlockValues; j++)
        {
            codes[j] = (sbyte)Math.Min(127, (int)MathF.Round(inverse * values[j]));
        }

        for (int g = 0; g < 16; g++)
        {
            int sum = 0;
            for (int j = 0; j < 16; j++)
            {
                sum += codes[(g * 16) + j];
            }

            groupSums[g] = (short)sum;
        }
    }

    /// <summary>
    /// <see cref="QuantizeBlockScalar"/> eight values at a time: vroundps rounds ties to even as MathF.Round does, and the
    /// codes lie in -127..127 after the minimum, so narrowing to bytes loses nothing.
    /// </summary>
    private static void QuantizeBlock256(ReadOnlySpan<float> values, float inverse, Span<sbyte> codes, Span<short> groupSums)
    {
        var scale = Vector256.Create(inverse);
        var top = Vector256.Create(127);
        for (int g = 0; g < 16; g++)
        {
            Vector256<int> a = Vector256.Min(top, Vector256.ConvertToInt32(Vector256.Round(Vector256.Create(values.Slice(g * 16, 8)) * scale)));
            Vector256<int> b = Vector256.Min(top, Vector256.ConvertToInt32(Vector256.Round(Vector256.Create(values.Slice((g * 16) + 8, 8)) * scale)));
            Vector256<short> pair = Vector256.Narrow(a, b);
            Vector128.Narrow(pair.GetLower(), pair.GetUpper()).CopyTo(codes.Slice(g * 16, 16));
            groupSums[g] = (short)Vector256.Sum(a + b);
        }
    }

    /// <summary>
    /// Whether <see cref="PairCodes"/> has filled the paired codes of this quantization's tokens (for Q4_K's and Q5_K's paired
    /// rows, <see cref="PairedNibbleRows"/>); <see cref="Prepare(int, int, int)"/> and <see cref="QuantizeRows"/> clear it.
    /// </summary>
    public bool Paired { get; private set; }

    /// <summary>Every token's codes rearranged for <see cref="PairedNibbleRows"/> (<see cref="Q8KRow.PairedCodes"/>), once the rows are quantized.</summary>
    public void PairCodes()
    {
        if (_pairedCodes.Length < _codes.Length)
        {
            _pairedCodes = new sbyte[_codes.Length];
        }

        PairedNibbleRows.PairActivations(_codes.AsSpan(0, Tokens * Cols), _pairedCodes.AsSpan(0, Tokens * Cols));
        Paired = true;
    }

    /// <summary>The block scales block by block: block j of token t at j × <see cref="PanelTokens"/> + t (for <see cref="QuantPanel"/>).</summary>
    public ReadOnlySpan<float> ScalesByBlock => _scalesByBlock.AsSpan(0, PanelTokens * Cols / BlockValues);

    /// <summary>
    /// The block scale × the sums of every 32 codes, sub-block by sub-block as <see cref="ScalesByBlock"/>: the mins' term of Q4_K's
    /// and Q5_K's packed panels (<see cref="QuantPanel"/>).
    /// </summary>
    public ReadOnlySpan<float> ScaledSubBlockSums => _scaledSubBlockSums.AsSpan(0, PanelTokens * Cols / 32);

    /// <summary>
    /// -32 × the sums of every 16 codes, group by group as <see cref="ScalesByBlock"/>: where Q6_K's panels store its codes + 32
    /// (0..63), a group's integer product starts from it and comes out as the product with the signed values (<see cref="QuantPanel"/>).
    /// </summary>
    public ReadOnlySpan<int> Q6KOffsets => _q6KOffsets.AsSpan(0, PanelTokens * Cols / 16);

    /// <summary>Every token's codes, row after row, the <see cref="PanelTokens"/> past <see cref="Tokens"/> zero.</summary>
    public ReadOnlySpan<sbyte> AllCodes => _codes.AsSpan(0, PanelTokens * Cols);

    /// <summary>Row <paramref name="token"/>: its codes, block scales and sums.</summary>
    public Q8KRow Row(int token) => new(
        _codes.AsSpan(token * Cols, Cols),
        _scales.AsSpan(token * Cols / BlockValues, Cols / BlockValues),
        _groupSums.AsSpan(token * Cols / 16, Cols / 16),
        _subBlockSums.AsSpan(token * Cols / 32, Cols / 32),
        Paired ? _pairedCodes.AsSpan(token * Cols, Cols) : default);
}

/// <summary>One token's Q8_K activations: codes, a scale per 256, sums of the codes per 16 and per 32, and where made, the codes paired for Q4_K's and Q5_K's paired rows.</summary>
internal readonly ref struct Q8KRow(ReadOnlySpan<sbyte> codes, ReadOnlySpan<float> scales, ReadOnlySpan<short> groupSums, ReadOnlySpan<short> subBlockSums,
    ReadOnlySpan<sbyte> pairedCodes = default)
{
    public ReadOnlySpan<sbyte> Codes { get; } = codes;

    /// <summary><see cref="Codes"/> rearranged for <see cref="PairedNibbleRows"/>; empty where not made.</summary>
    public ReadOnlySpan<sbyte> PairedCodes { get; } = pairedCodes;

    public ReadOnlySpan<float> Scales { get; } = scales;

    /// <summary>Σ codes over each 16 values (Q6_K's scale groups).</summary>
    public ReadOnlySpan<short> GroupSums { get; } = groupSums;

    /// <summary>Σ codes over each 32 values (Q4_K's sub-blocks).</summary>
    public ReadOnlySpan<short> SubBlockSums { get; } = subBlockSums;
}
