using System.Globalization;

namespace QwenSharp.Formats;

/// <summary>
/// Which type each matrix of a model is quantized to. <see cref="Pure"/>: every matrix in one type (llama-quantize's
/// <c>--pure</c>). The named mixes are llama-quantize's (<c>llama_tensor_get_type</c>), tensor by tensor, so a file
/// written with one holds the types its file of that name holds: the output (and an embedding tied to it) in Q6_K, or
/// Q8_0 where its rows are not whole 256-value super-blocks; Q4_K_M and Q5_K_M also store the value projection and
/// the MLP's down projection in Q6_K in the first eighth of the layers, the last eighth and every third between
/// (<see cref="MoreBits"/>); Q4_K_S stores the value projection of the first four layers and the down projection of the
/// first eighth in Q5_K; Q3_K_M and Q3_K_L store the value, down and attention-output projections with Q4_K or Q5_K, Q2_K
/// with Q3_K (the value projection with Q4_K where 4 or more query heads share a key/value head). The i-quant mixes (IQ4,
/// IQ3, IQ2, IQ1) follow its rules for them, their output in Q5_K below 3 bits, and their 1-3-bit lattice types need an
/// importance matrix entry for each matrix they hold, as llama-quantize requires. Every choice then takes llama.cpp's
/// fallback where rows are not whole blocks (<see cref="QuantizationFallback"/>).
/// </summary>
public sealed class QuantizationMix
{
    private readonly Func<string, int, ModelShape, bool, DType?>? _raise;

    private QuantizationMix(string name, DType baseType, uint? fileType, Func<string, int, ModelShape, bool, DType?>? raise,
        TensorTypeOverrides? overrides = null, ImportanceMatrix? importance = null)
    {
        Name = name;
        Base = baseType;
        FileType = fileType;
        _raise = raise;
        Overrides = overrides ?? TensorTypeOverrides.None;
        Importance = importance;
    }

    /// <summary>
    /// The importance matrix the matrices are quantized with (llama-quantize's <c>--imatrix</c>; <see cref="ImportanceOf"/>),
    /// or null. llama-quantize's IQ4 mixes leave the first layers' down projections alone when there is one.
    /// </summary>
    public ImportanceMatrix? Importance { get; }

    /// <summary>This mix quantized with <paramref name="importance"/> (null: without one).</summary>
    public QuantizationMix WithImportance(ImportanceMatrix? importance) => new(Name, Base, FileType, _raise, Overrides, importance);

    /// <summary>The importance weights of the matrix <paramref name="ggufName"/> of <paramref name="columns"/> columns (null where there are none).</summary>
    public float[]? ImportanceOf(string ggufName, long columns) =>
        Importance?.ImportanceOf(ggufName, columns, Importance.Path ?? "the importance matrix");

    /// <summary>The types set over the mix's choices (llama-quantize's --output-tensor-type and the like).</summary>
    public TensorTypeOverrides Overrides { get; }

    /// <summary>
    /// This mix with <paramref name="overrides"/>, applied where llama-quantize applies them: <c>output.weight</c> left as
    /// stored when asked; the embedding type for <c>token_embd.weight</c> and the output type for <c>output.weight</c> by
    /// name, as given; a matrix a pattern finds in the pattern's type instead of the mix's choice (here for the single
    /// types too), and in a mix the output type for an embedding tied to the output: both then take the fallback where
    /// their rows do not fit, as the mix's own choices do.
    /// </summary>
    public QuantizationMix With(TensorTypeOverrides overrides) => new(Name, Base, FileType, _raise, overrides, Importance);

    /// <summary>llama-quantize's name, lower case: q4_k_m.</summary>
    public string Name { get; }

    /// <summary>The type of every matrix no rule raises.</summary>
    public DType Base { get; }

    /// <summary>llama.cpp's <c>llama_ftype</c> of the mix, written as <c>general.file_type</c>; null for a type it names no file type after (Q4_K alone).</summary>
    public uint? FileType { get; }

    /// <summary>Whether every matrix takes <see cref="Base"/> (or its fallback).</summary>
    public bool IsPure => _raise is null;

    /// <summary>llama-quantize's mixes, by name.</summary>
    public static IReadOnlyList<QuantizationMix> Mixes { get; } =
    [
        new("q2_k", DType.Q2_K, 10, (role, _, model, _) => role switch
        {
            "attn_v" => model.QueriesPerKvHead >= 4 ? DType.Q4_K : DType.Q3_K,
            "ffn_down" or "attn_output" => DType.Q3_K,
            _ => null,
        }),
        new("q3_k_s", DType.Q3_K, 11, (_, _, _, _) => null),
        new("q3_k_m", DType.Q3_K, 12, (role, layer, model, _) => role switch
        {
            "attn_v" => layer < 2 ? DType.Q5_K : DType.Q4_K,
            "ffn_down" => layer < model.Layers / 16 ? DType.Q5_K : DType.Q4_K,
            "attn_output" => DType.Q4_K,
            _ => null,
        }),
        new("q3_k_l", DType.Q3_K, 13, (role, _, _, _) => role is "attn_v" or "ffn_down" or "attn_output" ? DType.Q5_K : null),
        new("q4_k_s", DType.Q4_K, 14, (role, layer, model, _) => role switch
        {
            "attn_v" when layer < 4 => DType.Q5_K,
            "ffn_down" when layer < model.Layers / 8 => DType.Q5_K,
            _ => null,
        }),
        new("q4_k_m", DType.Q4_K, 15, (role, layer, model, _) => role is "attn_v" or "ffn_down" && MoreBits(layer, model.Layers) ? DType.Q6_K : null),
        new("q5_k_s", DType.Q5_K, 16, (_, _, _, _) => null),
        new("q5_k_m", DType.Q5_K, 17, (role, layer, model, _) => role is "attn_v" or "ffn_down" && MoreBits(layer, model.Layers) ? DType.Q6_K : null),
        new("iq4_nl", DType.IQ4_NL, 25, RaiseIq4),
        new("iq4_xs", DType.IQ4_XS, 30, RaiseIq4),
        new("iq1_s", DType.IQ1_S, 24, (role, layer, model, _) => RaiseIq2(role, layer, model, DType.Q2_K, attentionOutput: DType.IQ2_XXS)),
        new("iq1_m", DType.IQ1_M, 31, (role, layer, model, _) => RaiseIq2(role, layer, model, DType.Q2_K, attentionOutput: DType.IQ2_XXS)),
        new("iq2_xxs", DType.IQ2_XXS, 19, (role, layer, model, _) => RaiseIq2(role, layer, model, DType.Q2_K, attentionOutput: null)),
        new("iq2_xs", DType.IQ2_XS, 20, (role, layer, model, _) => RaiseIq2(role, layer, model, DType.Q2_K, attentionOutput: null)),
        new("iq2_s", DType.IQ2_XS, 28, (role, layer, model, _) => RaiseIq2(role, layer, model, DType.IQ3_S, attentionOutput: DType.IQ3_S)),
        new("iq2_m", DType.IQ2_S, 29, (role, layer, model, _) => RaiseIq2(role, layer, model, DType.IQ3_S, attentionOutput: DType.IQ3_S)),
        new("iq3_xxs", DType.IQ3_XXS, 23, (role, layer, model, weighted) => role switch
        {
            "attn_v" => model.QueriesPerKvHead >= 4 ? DType.Q4_K : weighted ? DType.IQ3_XXS : DType.IQ3_S,
            "ffn_down" when !weighted => layer < model.Layers / 8 ? DType.Q4_K : DType.Q3_K,
            "attn_q" or "attn_k" => DType.IQ2_S,
            "attn_output" or "token_embd" => DType.IQ3_S,
            _ => null,
        }),
        new("iq3_xs", DType.IQ3_S, 22, (role, layer, model, _) => role switch
        {
            "attn_v" when model.QueriesPerKvHead >= 4 => DType.Q4_K,
            "attn_q" or "attn_k" => DType.IQ3_XXS,
            "ffn_gate" or "ffn_up" when layer >= model.Layers / 8 && layer < 7 * model.Layers / 8 => DType.IQ3_XXS,
            _ => null,
        }),
        new("iq3_s", DType.IQ3_S, 26, (role, _, model, _) => role == "attn_v" && model.QueriesPerKvHead >= 4 ? DType.Q4_K : null),
        new("iq3_m", DType.IQ3_S, 27, (role, layer, model, _) => role switch
        {
            "attn_v" or "attn_output" => DType.Q4_K,
            "ffn_down" when layer < model.Layers / 8 => DType.Q4_K,
            _ => null,
        }),
    ];

    /// <summary>
    /// llama-quantize's IQ4_NL and IQ4_XS: the value projection in Q5_K where 4 or more query heads share a key/value head,
    /// and without an importance matrix the down projection of the first eighth of the layers.
    /// </summary>
    private static DType? RaiseIq4(string role, int layer, ModelShape model, bool weighted) => role switch
    {
        "attn_v" when model.QueriesPerKvHead >= 4 => DType.Q5_K,
        "ffn_down" when layer < model.Layers / 8 && !weighted => DType.Q5_K,
        _ => null,
    };

    /// <summary>
    /// llama-quantize's IQ1 and IQ2 mixes: the value projection in Q4_K where 4 or more query heads share a key/value head,
    /// else in <paramref name="side"/> (IQ2_S and IQ2_M IQ3_S, the others Q2_K), as the first eighth's down projections and
    /// (untied) the embedding; the attention output in <paramref name="attentionOutput"/> (IQ2_S, IQ2_M IQ3_S; IQ1_S,
    /// IQ1_M IQ2_XXS). The output is Q5_K (<see cref="TypeOf"/>).
    /// </summary>
    private static DType? RaiseIq2(string role, int layer, ModelShape model, DType side, DType? attentionOutput) => role switch
    {
        "attn_v" => model.QueriesPerKvHead >= 4 ? DType.Q4_K : side,
        "ffn_down" when layer < model.Layers / 8 => side,
        "token_embd" => side,
        "attn_output" => attentionOutput,
        _ => null,
    };

    /// <summary>A type as the mix of every matrix in it (<see cref="Pure"/>), so <c>Quantize = DType.Q8_0</c> reads as it did.</summary>
    public static implicit operator QuantizationMix(DType type) => Pure(type);

    /// <summary>Every matrix in <paramref name="type"/> (a quantized or float type), or llama.cpp's fallback where its rows do not fit.</summary>
    public static QuantizationMix Pure(DType type) => new(DTypes.Name(type).ToLowerInvariant(), type, PureFileType(type), null);

    /// <summary>A mix by llama-quantize's name (q4_k_m, Q4_K_M), or a type's name for <see cref="Pure"/>.</summary>
    public static bool TryParse(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out QuantizationMix? mix)
    {
        ArgumentNullException.ThrowIfNull(name);
        mix = Mixes.FirstOrDefault(m => string.Equals(m.Name, name, StringComparison.OrdinalIgnoreCase));
        if (mix is null && DTypes.TryParse(name, out DType type))
        {
            mix = Pure(type);
        }

        return mix is not null;
    }

    /// <summary>
    /// llama.cpp's <c>use_more_bits</c>: the first eighth of the layers, the last eighth, and every third layer between,
    /// whose value and down projections the _M mixes store with more bits.
    /// </summary>
    public static bool MoreBits(int layer, int layers) =>
        layer < layers / 8 || layer >= 7 * layers / 8 || (layer - (layers / 8)) % 3 == 2;

    /// <summary>
    /// The type of the matrix <paramref name="ggufName"/> (llama.cpp's name: <c>blk.3.attn_v.weight</c>, <c>output.weight</c>),
    /// of <paramref name="columns"/> values a row, stored as <paramref name="stored"/>, in a model of <paramref name="model"/>'s shape.
    /// </summary>
    public DType TypeOf(string ggufName, long columns, DType stored, ModelShape model)
    {
        ArgumentNullException.ThrowIfNull(ggufName);
        TensorTypeOverrides o = Overrides;
        if (o.KeepOutput && ggufName == "output.weight")
        {
            return stored;
        }

        if (ggufName == "token_embd.weight" && o.TokenEmbedding is DType embedding)
        {
            return Fitting(ggufName, columns, embedding);
        }

        if (ggufName == "output.weight" && o.Output is DType head)
        {
            return Fitting(ggufName, columns, head);
        }

        DType target = Base;
        if (o.ByPattern(ggufName) is DType manual)
        {
            target = manual;
        }
        else if (_raise is not null && DTypes.IsQuantized(Base))
        {
            bool output = ggufName == "output.weight" || (model.TiedEmbeddings && ggufName == "token_embd.weight");
            if (output)
            {
                // llama.cpp: Q8_0 where rows are not whole blocks of the mix's type, else Q6_K (Q5_K in its 2-3-bit i-quant mixes).
                target = o.Output ?? (columns % DTypes.BlockValues(Base) != 0 ? DType.Q8_0 : IsIq2(Base) || Base == DType.IQ3_XXS ? DType.Q5_K : DType.Q6_K);
            }
            else if (ggufName == "token_embd.weight")
            {
                target = _raise("token_embd", 0, model, Importance is not null) ?? Base;
            }
            else if (Layer(ggufName) is (int layer, string role))
            {
                target = _raise(role, layer, model, Importance is not null) ?? Base;

                // llama.cpp's 70B rule (its qwen2 and llama with 80 layers): 8 query heads share each value head, so the
                // value projection is an eighth of the query's, and more bits there cost little.
                // (Not in its 1-2-bit mixes, whose value projections it picks before that rule.)
                if (role == "attn_v" && model.Layers == 80 && target is DType.Q3_K or DType.Q4_K && !IsIq2(Base))
                {
                    target = DType.Q5_K;
                }
            }
        }

        DType chosen = QuantizationFallback.For(target, stored, columns);
        if ((chosen == DType.IQ3_XXS || IsIq2(chosen)) && ggufName is not ("token_embd.weight" or "output.weight") && Importance?.Entries.ContainsKey(ggufName) != true)
        {
            // llama-quantize refuses too (tensor_requires_imatrix): 2-3 bits a value without knowing which columns matter.
            throw new NotSupportedException(Importance is null
                ? $"tensor '{ggufName}': {DTypes.Name(chosen)} needs an importance matrix, as llama-quantize requires: make one with qwensharp imatrix and give it with --imatrix F"
                : $"tensor '{ggufName}': {DTypes.Name(chosen)} needs the importance matrix's entry for it, and {Importance.Path ?? "the matrix"} has none (llama-quantize stops here too): was it computed for this model, or filtered by --include-weights/--exclude-weights?");
        }

        return chosen;
    }

    /// <summary>The types of llama-quantize's 1-2-bit mixes (its <c>llama_tensor_get_type</c> branch of its own; they need an importance matrix).</summary>
    private static bool IsIq2(DType type) => type is DType.IQ2_S or DType.IQ2_XS or DType.IQ2_XXS or DType.IQ1_S or DType.IQ1_M;

    /// <summary>A type given by name for one matrix: refused where its blocks do not fit the rows (llama-quantize would stop on it).</summary>
    private static DType Fitting(string ggufName, long columns, DType type) =>
        columns % DTypes.BlockValues(type) == 0 ? type
            : throw new NotSupportedException($"tensor '{ggufName}': its rows of {columns} values are not whole blocks of {DTypes.Name(type)} ({DTypes.BlockValues(type)} values): give it another type");

    /// <summary>The layer and role (<c>attn_v</c>, <c>ffn_down</c>) of a <c>blk.N.ROLE.weight</c> name.</summary>
    private static (int Layer, string Role)? Layer(string ggufName)
    {
        string[] parts = ggufName.Split('.');
        return parts.Length == 4 && parts[0] == "blk" && parts[3] == "weight" && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int layer)
            ? (layer, parts[2])
            : null;
    }

    private static uint? PureFileType(DType type) => type switch
    {
        DType.F32 => 0,
        DType.F16 => 1,
        DType.Q4_0 => 2,
        DType.Q4_1 => 3,
        DType.Q8_0 => 7,
        DType.Q5_0 => 8,
        DType.Q5_1 => 9,
        DType.Q6_K => 18,
        DType.BF16 => 32,
        _ => null,
    };

    public override string ToString() => Name;
}

/// <summary>What the mixes' rules read of a model: its layer count, whether its output matrix is the embedding, query heads per key/value head.</summary>
public readonly record struct ModelShape(int Layers, bool TiedEmbeddings, int QueriesPerKvHead);
