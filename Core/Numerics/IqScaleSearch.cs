namespace QwenSharp.Numerics;

/// <summary>
/// How one lattice i-quant fits a block (ggml's <c>quantize_row_iq3_xxs_impl</c>, <c>_iq3_s_impl</c>, <c>_iq2_s_impl</c>,
/// <c>_iq2_xs_impl</c>, <c>_iq2_xxs_impl</c> differ only in these): values a block, values a lattice group, levels, the
/// candidate scales' step and count each side, whether the second pass leaves lattice points alone, whether the count of
/// minus signs is kept even (7 sign bits a group of eight), the magnitude below which a block is left unscaled, σ² twice the
/// super-block's mean square or once, the unweighted weights' floor as a share of σ² (IQ2_S: 1/4), and IQ2_XXS's start from
/// make_qp_quants with every group rounded again.
/// </summary>
internal readonly record struct IqSearchRule(int Block, int GroupSize, int MaxLevel, float Step, int Tries, bool KeepOnGrid, bool EvenSigns,
    float SkipBelow, bool SigmaTwice = true, float UnweightedSigmaShare = 0, bool FirstFit = false);

/// <summary>
/// The scale search ggml's lattice i-quants share: one block's weights, magnitudes and signs; over candidate scales
/// (2 maxLevel - 1 + t × step) / max each group's magnitudes rounded to levels and, off the lattice, replaced by the nearest
/// neighbour; the scale that fits best in weighted least squares kept, then the groups off the lattice rounded again
/// against it and the scale refitted (<see cref="TryFit"/>).
/// </summary>
internal sealed class IqScaleSearch(IqSearchRule rule)
{
    private readonly int block = rule.Block, groupSize = rule.GroupSize, maxLevel = rule.MaxLevel;
    private readonly float step = rule.Step;
    private readonly float[] _weight = new float[rule.Block], _magnitude = new float[rule.Block], _rootWeight = new float[rule.Block];
    private readonly sbyte[] _codes = new sbyte[rule.Block], _trial = new sbyte[rule.Block];
    private readonly bool[] _onGrid = new bool[rule.Block / rule.GroupSize], _trialOnGrid = new bool[rule.Block / rule.GroupSize];
    private readonly byte[] _firstCodes = new byte[rule.Block];

    /// <summary>The chosen levels (0..maxLevel-1) of the block's magnitudes.</summary>
    public Span<sbyte> Codes => _codes;

    /// <summary>The super-block's σ²: its mean square, twice it as the rule says.</summary>
    public float Sigma2(ReadOnlySpan<float> superBlock) => (rule.SigmaTwice ? 2 : 1) * ImportanceQuantizer.SumOfSquares(superBlock) / superBlock.Length;

    /// <summary>The block's part of a row's importance (one weight a value), or none where the row has none.</summary>
    public static ReadOnlySpan<float> ImportanceOf(ReadOnlySpan<float> importance, int start, int length) =>
        importance.IsEmpty ? default : importance.Slice(start, length);

    /// <summary>
    /// Fits a block: its signs into <paramref name="signs"/> (one byte a group of eight), its levels into <see cref="Codes"/>,
    /// its scale, made positive (the signs flipped where it came out negative). False, nothing fitted, for a block too small
    /// to scale (below the rule's bound, or IQ2_XXS's first fit not positive).
    /// </summary>
    public bool TryFit(IqLattice lattice, ReadOnlySpan<float> xb, ReadOnlySpan<float> importance, float sigma2, Span<byte> signs, out float scale)
    {
        Weigh(xb, importance, sigma2, rule.UnweightedSigmaShare == 0 ? 0 : rule.UnweightedSigmaShare * sigma2);
        for (int k = 0; k < block / 8; k++)
        {
            signs[k] = rule.EvenSigns ? EvenSigns(xb, k) : AllSigns(xb, k);
        }

        float max = MaxMagnitude();
        scale = 0;
        if (max < rule.SkipBelow)
        {
            return false;
        }

        if (rule.FirstFit)
        {
            float first = ImportanceQuantizer.PositiveScale(_magnitude, _firstCodes, maxLevel + 1, _weight);
            if (first * maxLevel <= 0)
            {
                return false;
            }

            scale = Search(lattice, first * maxLevel, rule.Tries, keepOnGrid: false, initialScale: first, alwaysRefine: true);
        }
        else
        {
            scale = Search(lattice, max, rule.Tries, rule.KeepOnGrid);
        }

        if (scale < 0)
        {
            scale = -scale;
            for (int k = 0; k < block / 8; k++)
            {
                signs[k] = (byte)(~signs[k] & (rule.EvenSigns ? 127 : 255));
            }
        }

        return true;
    }

    /// <summary>
    /// The block's weights: importance × √(σ² + x²), or without importance <paramref name="unweightedFloor"/> + x² (IQ2_S
    /// σ²/4, IQ3 none).
    /// </summary>
    private void Weigh(ReadOnlySpan<float> xb, ReadOnlySpan<float> importance, float sigma2, float unweightedFloor)
    {
        for (int i = 0; i < block; i++)
        {
            _weight[i] = importance.IsEmpty ? unweightedFloor + (xb[i] * xb[i]) : importance[i] * MathF.Sqrt(sigma2 + (xb[i] * xb[i]));
        }

        for (int i = 0; i < block; i++)
        {
            _rootWeight[i] = MathF.Sqrt(_weight[i]);
        }
    }

    /// <summary>
    /// A block's 4-bit scale code under the super-block's d (1 / <paramref name="inverseD"/>): the odd multiple 2l + 1 of d
    /// nearest <paramref name="scale"/>, as every lattice i-quant stores it.
    /// </summary>
    public static int ScaleCode(float inverseD, float scale) => Math.Clamp(KQuantQuantizer.NearestInt(0.5f * ((inverseD * scale) - 1)), 0, 15);

    /// <summary>Eight values' magnitudes, and their signs as bits (IQ3_S, IQ2_S).</summary>
    private byte AllSigns(ReadOnlySpan<float> xb, int k)
    {
        int s = 0;
        for (int i = 0; i < 8; i++)
        {
            float v = xb[(8 * k) + i];
            _magnitude[(8 * k) + i] = v >= 0 ? v : -v;
            s |= v >= 0 ? 0 : 1 << i;
        }

        return (byte)s;
    }

    /// <summary>
    /// IQ3_XXS, IQ2_XS, IQ2_XXS: as <see cref="AllSigns"/>, but an odd count of minus signs is made even by flipping the value with the
    /// least weight × x² (its magnitude then stored negative), and only seven bits kept (the eighth follows from them).
    /// </summary>
    private byte EvenSigns(ReadOnlySpan<float> xb, int k)
    {
        int s = AllSigns(xb, k);
        if (int.PopCount(s) % 2 == 1)
        {
            int least = 0;
            float min = _weight[8 * k] * xb[8 * k] * xb[8 * k];
            for (int i = 1; i < 8; i++)
            {
                float ax = _weight[(8 * k) + i] * xb[(8 * k) + i] * xb[(8 * k) + i];
                if (ax < min)
                {
                    min = ax;
                    least = i;
                }
            }

            _magnitude[(8 * k) + least] = -_magnitude[(8 * k) + least];
            s ^= 1 << least;
        }

        return (byte)(s & 127);
    }

    private float MaxMagnitude()
    {
        float max = _magnitude[0];
        for (int i = 1; i < block; i++)
        {
            max = MathF.Max(max, _magnitude[i]);
        }

        return max;
    }

    /// <summary>
    /// The best scale over t in ±<paramref name="tries"/>, then, where a group was off the lattice, the groups off it (with
    /// <paramref name="keepOnGrid"/>: only those, IQ3_XXS, IQ2_S, IQ2_XS; else every group, IQ3_S) rounded again against it;
    /// with <paramref name="alwaysRefine"/> every group, whether or not one was off (IQ2_XXS, whose candidates are around
    /// <paramref name="initialScale"/>'s top level rather than max / (2 maxLevel - 1)).
    /// </summary>
    private float Search(IqLattice lattice, float max, int tries, bool keepOnGrid, float? initialScale = null, bool alwaysRefine = false)
    {
        // Where no candidate fits at all (every weight zero), the levels stay 0 and (keepOnGrid) count as lattice points.
        float best = 0, scale = initialScale ?? max / ((2 * maxLevel) - 1);
        Array.Clear(_codes);
        Array.Fill(_onGrid, keepOnGrid);
        for (int t = -tries; t <= tries; t++)
        {
            float id = (((2 * maxLevel) - 1) + (t * step)) / max;
            float trialScale = 1 / id;
            for (int k = 0; k < _onGrid.Length; k++)
            {
                _trialOnGrid[k] = Round(lattice, _trial.AsSpan(groupSize * k, groupSize), k, id, trialScale);
            }

            (float sumqx, float sumq2) = Fit(_trial);
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2)
            {
                scale = sumqx / sumq2;
                best = scale * sumqx;
                _trial.CopyTo(_codes, 0);
                _trialOnGrid.CopyTo(_onGrid, 0);
            }
        }

        if ((alwaysRefine || Array.IndexOf(_onGrid, false) >= 0) && scale > 0)
        {
            float id = 1 / scale;
            for (int k = 0; k < _onGrid.Length; k++)
            {
                if (alwaysRefine || !keepOnGrid || !_onGrid[k])
                {
                    Round(lattice, _codes.AsSpan(groupSize * k, groupSize), k, id, scale);
                }
            }

            (float sumqx, float sumq2) = Fit(_codes);
            if (sumq2 > 0)
            {
                scale = sumqx / sumq2;
            }
        }

        return scale;
    }

    /// <summary>Group k's magnitudes × <paramref name="id"/> as levels, moved to the nearest neighbour at <paramref name="scale"/> where off the lattice; whether they were on it.</summary>
    private bool Round(IqLattice lattice, Span<sbyte> group, int k, float id, float scale)
    {
        for (int i = 0; i < groupSize; i++)
        {
            group[i] = (sbyte)Math.Clamp(KQuantQuantizer.NearestInt(0.5f * ((id * _magnitude[(groupSize * k) + i]) - 1)), 0, maxLevel - 1);
        }

        if (lattice.IndexOf(group) >= 0)
        {
            return true;
        }

        lattice.NearestNeighbour(group, _magnitude.AsSpan(groupSize * k, groupSize), _rootWeight.AsSpan(groupSize * k, groupSize), scale);
        return false;
    }

    private (float SumQx, float SumQ2) Fit(ReadOnlySpan<sbyte> codes)
    {
        float sumqx = 0, sumq2 = 0;
        for (int i = 0; i < block; i++)
        {
            float w = _weight[i], q = (2 * codes[i]) + 1;
            sumqx += w * _magnitude[i] * q;
            sumq2 += w * q * q;
        }

        return (sumqx, sumq2);
    }
}
