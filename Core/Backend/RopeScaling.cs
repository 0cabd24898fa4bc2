namespace QwenSharp.Backend;

/// <summary>How a RoPE scaling stretches the rotary frequencies past the context a model was trained on.</summary>
public enum RopeScalingKind
{
    /// <summary>Position interpolation: every frequency divided by the factor (transformers' <c>linear</c>).</summary>
    Linear,

    /// <summary>
    /// YaRN (Peng et al. 2023, "YaRN: Efficient Context Window Extension"): high frequencies kept, low ones divided by
    /// the factor, a linear ramp between, and cos/sin scaled by the attention factor.
    /// </summary>
    Yarn,

    /// <summary>
    /// Each frequency divided by its own number: Llama 3.1's <c>llama3</c> scaling, which GGUF files carry as the
    /// <c>rope_freqs.weight</c> tensor.
    /// </summary>
    FrequencyDivisors,
}

/// <summary>
/// A RoPE scaling, as transformers' <c>rope_scaling</c> and llama.cpp's <c>rope.scaling.*</c> define it: it changes the
/// inverse frequencies θᵢ (<see cref="InverseFrequencies"/>) and multiplies cos and sin by <see cref="AttentionFactor"/>
/// (so q·k by its square). Static: the same at every sequence length, as transformers and llama.cpp apply it.
/// </summary>
public sealed record RopeScaling
{
    public required RopeScalingKind Kind { get; init; }

    /// <summary>How many times the trained context the scaling stretches to (Linear, Yarn; 1 for divisors).</summary>
    public double Factor { get; init; } = 1;

    /// <summary>The context the model was trained on (YaRN's <c>original_max_position_embeddings</c>).</summary>
    public int OriginalContext { get; init; }

    /// <summary>YaRN: frequencies that turn more than this many times over the original context are kept (α in the paper).</summary>
    public double BetaFast { get; init; } = 32;

    /// <summary>YaRN: frequencies that turn fewer than this many times are divided by the factor (β in the paper).</summary>
    public double BetaSlow { get; init; } = 1;

    /// <summary>YaRN: the ramp's ends rounded outwards to whole dimensions (transformers' <c>truncate</c>, always so in llama.cpp).</summary>
    public bool Truncate { get; init; } = true;

    /// <summary>What cos and sin are multiplied by (YaRN's 0.1 ln(factor) + 1 unless the config names it).</summary>
    public double AttentionFactor { get; init; } = 1;

    /// <summary>FrequencyDivisors: one divisor per rotated pair (head_dim / 2).</summary>
    public IReadOnlyList<double> Divisors { get; init; } = [];

    /// <summary>YaRN's default attention factor for a stretch of <paramref name="factor"/> (the paper's √(1/t)).</summary>
    public static double YarnAttentionFactor(double factor, double mscale = 1) => factor <= 1 ? 1.0 : (0.1 * mscale * Math.Log(factor)) + 1.0;

    /// <summary>Llama 3.1's divisors (transformers' <c>_compute_llama3_parameters</c>, llama.cpp's <c>rope_freqs</c>):
    /// wavelengths shorter than the original context / high_freq_factor kept, longer than / low_freq_factor divided by
    /// the factor, and a smooth blend between.</summary>
    public static double[] Llama3Divisors(int headDim, double theta, double factor, double lowFreqFactor, double highFreqFactor, int originalContext)
    {
        double[] plain = RopeAngles.InverseFrequencies(headDim, theta);
        double lowWavelength = originalContext / lowFreqFactor, highWavelength = originalContext / highFreqFactor;
        var divisors = new double[plain.Length];
        for (int i = 0; i < plain.Length; i++)
        {
            double wavelength = 2 * Math.PI / plain[i];
            if (wavelength < highWavelength)
            {
                divisors[i] = 1;
            }
            else if (wavelength > lowWavelength)
            {
                divisors[i] = factor;
            }
            else
            {
                double smooth = ((originalContext / wavelength) - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
                divisors[i] = 1 / (((1 - smooth) / factor) + smooth);
            }
        }

        return divisors;
    }

    /// <summary>θᵢ after scaling, for i &lt; headDim / 2.</summary>
    public double[] InverseFrequencies(int headDim, double theta)
    {
        double[] inverse = RopeAngles.InverseFrequencies(headDim, theta);
        switch (Kind)
        {
            case RopeScalingKind.Linear:
                for (int i = 0; i < inverse.Length; i++)
                {
                    inverse[i] /= Factor;
                }

                break;
            case RopeScalingKind.Yarn:
                (double low, double high) = YarnRamp(headDim, theta);
                for (int i = 0; i < inverse.Length; i++)
                {
                    // 1 where the frequency is kept (extrapolated), 0 where it is divided by the factor (interpolated).
                    double kept = 1 - Math.Clamp((i - low) / (high - low), 0, 1);
                    inverse[i] = (inverse[i] / Factor * (1 - kept)) + (inverse[i] * kept);
                }

                break;
            case RopeScalingKind.FrequencyDivisors:
                if (Divisors.Count != inverse.Length)
                {
                    throw new ArgumentException($"RoPE frequency divisors: {Divisors.Count} given for {inverse.Length} rotated pairs (head_dim {headDim})");
                }

                for (int i = 0; i < inverse.Length; i++)
                {
                    inverse[i] /= Divisors[i];
                }

                break;
        }

        return inverse;
    }

    /// <summary>
    /// YaRN's ramp over the rotated pairs: the dimension where a frequency turns <see cref="BetaFast"/> times over the
    /// original context, to where it turns <see cref="BetaSlow"/> times (a dimension d turns L / (2π θ^(2d/D)) times).
    /// </summary>
    private (double Low, double High) YarnRamp(int headDim, double theta)
    {
        double Dimension(double turns) => headDim * Math.Log(OriginalContext / (turns * 2 * Math.PI)) / (2 * Math.Log(theta));
        double low = Dimension(BetaFast), high = Dimension(BetaSlow);
        if (Truncate)
        {
            low = Math.Floor(low);
            high = Math.Ceiling(high);
        }

        low = Math.Max(low, 0);
        high = Math.Min(high, headDim - 1);
        return (low, high == low ? high + 0.001 : high);
    }

    /// <summary>One line for <c>info</c>: "YaRN x4 over 32768 positions".</summary>
    public string Describe() => Kind switch
    {
        RopeScalingKind.Linear => FormattableString.Invariant($"linear x{Factor:G}"),
        RopeScalingKind.Yarn => FormattableString.Invariant($"YaRN x{Factor:G} over {OriginalContext} positions, attention factor {AttentionFactor:G4}"),
        _ => FormattableString.Invariant($"frequency divisors {Divisors.Min():G4} to {Divisors.Max():G4}"),
    };
}
