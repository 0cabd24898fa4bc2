using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using QwenSharp.Formats;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// y = x · Wᵀ + bias over a range of output rows: the work of one thread in a linear layer.
/// One token (decode) streams each weight row once through <see cref="Dot{TW}"/>; it is memory-bound, so
/// the weights are read in their stored type; a few tokens (a small batch's decode step) share each row the
/// same way through <see cref="DotTokens{TW}"/>. More tokens (prefill, big batches) convert a panel of
/// <see cref="PanelRows"/> weight rows to f32 once (<see cref="F32Panel"/>) and reuse it for every block of tokens
/// (<see cref="TokenBlocks"/>) through <see cref="OuterProductTile"/>; the conversion is then paid once per panel, not once per token. Q4_0 and the k-quants
/// unpack their panels to integer codes instead and multiply integers (<see cref="QuantPanel"/>).
/// </summary>
internal static class MatMul
{
    /// <summary>
    /// Weight rows converted together: 16 rows of 4864 f32 are 311 KB, which stays in a 1 MB L2 while all
    /// tokens pass over it; and 16 is a whole number of tiles.
    /// </summary>
    public const int PanelRows = F32Panel.Rows;

    /// <summary>
    /// Up to this many tokens (a decode step of a small batch) each weight row is dotted with every token
    /// (<see cref="DotTokens{TW}"/>: the row is read once, and each token's sum is bit-identical to its sum
    /// alone), for block-quantized weights: from 8 on their panels win. Q8_0 weights measured with f32 activations then
    /// (panel → rows): 2 tokens 18 → 59, 4: 50 → 91. Block-quantized weights dot integers with the activations quantized
    /// once per step (<see cref="Q8IntegerKernel"/>, <see cref="KQuantIntegerKernel"/>). Float weights: <see cref="FloatRowDotTokens"/>.
    /// </summary>
    public const int RowDotTokens = 7;

    /// <summary>
    /// <see cref="RowDotTokens"/> for float weights (BF16, F16, F32, through <see cref="Rows{TW}"/>). Measured on Qwen2.5-0.5B's
    /// shape, BF16, 2 threads (decode tokens/s in all): on Zen 4 with the 4 × 4 dot tiles panels had then (panel → rows),
    /// 2 tokens 24 → 54, 4: 53 → 76, 6: 54 → 79, 8: 80 → 75, 16: 113 → 62; on the Intel Xeon with the outer-product tiles
    /// (which pad a block to 16 tokens), rows against panels, 4 tokens 36-41 against 25-28, 6: 45-47 against 35-37. Once
    /// <see cref="DotTokens{TW}"/> prefetched its rows and took a pair of tokens in one pass, panels against rows: 8 sequences
    /// 48-50 against 58-65, 10: 56-62 against 62-63, 12: 75-86 against 47-62.
    /// </summary>
    public const int FloatRowDotTokens = 8;

    /// <summary>
    /// Whether <paramref name="tokens"/> tokens multiply <paramref name="type"/>'s weights as f32 panels, reading their
    /// activations as <see cref="TokenBlocks"/> (the linear job writes them only then): float weights past
    /// <see cref="FloatRowDotTokens"/>, Q8_0 past <see cref="RowDotTokens"/> where its panels do not multiply in integers,
    /// Q2_K and IQ4_XS past <see cref="RowDotTokens"/> (they have no integer panels). Q4_0 and the other k-quants always multiply integers.
    /// </summary>
    public static bool ReadsTokenBlocks(KernelPath path, Formats.DType type, int tokens) => type switch
    {
        Formats.DType.BF16 or Formats.DType.F16 or Formats.DType.F32 => tokens > FloatRowDotTokens,
        Formats.DType.Q8_0 => tokens > RowDotTokens && !QuantPanel.MultipliesInIntegers(path, Formats.DType.Q8_0),
        Formats.DType.Q2_K => tokens > RowDotTokens,
        Formats.DType.IQ4_XS => tokens > RowDotTokens && !Iq4XsInIntegerPanels(path, tokens),
        _ => false,
    };

    /// <summary>
    /// From this many tokens a repacked Q4_0, Q4_K or Q8_0 matrix (<see cref="NibblePanels"/>, <see cref="Q8_0Panels"/>) multiplies its
    /// panels, the tokens padded to a group of four (<see cref="QuantPanel.PanelTokens"/>), which costs about what one token alone
    /// costs there; one token reads its rows as stored (<see cref="Q8IntegerKernel"/>, <see cref="KQuantIntegerKernel"/>), which stream
    /// faster. Decode of 2 sequences, tokens/s in all, rows → panels, alternating runs on a Zen 5 (1 core; 2 cores):
    /// Qwen2.5-0.5B's shape in Q8_0 63.6-69.3 → 74.0-99.9 (132-138 → 132-144), in Q4_0 105-112 → 116-127 (178-188 → 186-205);
    /// the 1.5B shape in Q4_K 33.0-34.0 → 39.2-40.4 (63.3-63.7 → 63.6-71.7). One token through the panels: Q8_0 0.5B 60.3 and 54.7
    /// against 70.8 and 70.0 on the rows (1 core). Before the padding, the Xeon's Q4_0 0.5B gave 2 sequences 84-117 on the rows
    /// and 80-95 on the panels, 3: 94-104 → 111-124, 4: 67-121 → 179-190, 16: 200-265 → 289-314 (2 cores). Where the integer
    /// units bound Q4_0's decode (<see cref="PanelDecode"/>), one token reads the panels too.
    /// </summary>
    public const int RepackedPanelTokens = 2;

    /// <summary>
    /// y[t, n] = Σ_k x[t, k] · w[n, k] + bias[n] for n in [rowStart, rowEnd) and every token t.
    /// <paramref name="weights"/> holds just those rows (so no span has to cover a weight over 2 GiB); <paramref name="x"/>
    /// is the tokens' rows, and from <see cref="FloatRowDotTokens"/> + 1 tokens on <paramref name="xBlocks"/> the same activations as
    /// <see cref="TokenBlocks"/>; <paramref name="panel"/> is scratch of at least <see cref="PanelScratchFloats"/> floats.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Rows<TW>(KernelPath path, ReadOnlySpan<byte> weights, int inFeatures, int outFeatures,
        ReadOnlySpan<float> x, ReadOnlySpan<float> xBlocks, int tokens, ReadOnlySpan<float> bias, Span<float> y, int rowStart, int rowEnd, Span<float> panel,
        ReadOnlySpan<ulong> exactGroups = default)
        where TW : struct, IWeightLoad
    {
        int rowBytes = inFeatures * TW.ElementSize;
        if (tokens == 1)
        {
            // One token (decode): DotTokens' one-token case without its per-row checks and result span, which were a
            // tenth of a 896-wide f16 row's time from L2. F16 rows read their maps (exactGroups, rows [rowStart, rowEnd)),
            // except on CPUs that multiply subnormals at full speed (SubnormalOperands): the same sums either way.
            ReadOnlySpan<float> x0 = x[..inFeatures];
            int words = exactGroups.IsEmpty ? 0 : F16ExactGroups.MapWords(inFeatures);
            bool placed = words != 0 && SubnormalOperands.AtFullSpeed;
            bool readsEveryGroupAlike = typeof(TW) == typeof(Bf16Load) || (typeof(TW) == typeof(F16ScaledLoad) && placed);
            bool prefetch = Prefetch.InDecode(TW.Type);
            if (readsEveryGroupAlike && RowsApart.Pay(path))
            {
                if (path == KernelPath.Vector512 && inFeatures >= RowsApart.FloatMinimumWidth)
                {
                    QuarteredRows<TW>(weights, rowBytes, x0, bias, y, rowStart, rowEnd, prefetch);
                }
                else
                {
                    HalvedRows<TW>(path, weights, rowBytes, x0, bias, y, rowStart, rowEnd, prefetch);
                }

                return;
            }

            for (int n = rowStart; n < rowEnd; n++)
            {
                ReadOnlySpan<byte> row = weights.Slice((n - rowStart) * rowBytes, rowBytes);
                float sum = words == 0 ? Dot<TW>.Run(path, row, x0, prefetch)
                    : placed ? Dot<TW>.RunPlaced(path, row, x0, prefetch)
                    : Dot<TW>.Run(path, row, x0, exactGroups.Slice((n - rowStart) * words, words), prefetch);
                y[n] = bias.IsEmpty ? sum : sum + bias[n];
            }

            return;
        }

        if (tokens <= FloatRowDotTokens)
        {
            Span<float> sums = stackalloc float[tokens];
            for (int n = rowStart; n < rowEnd; n++)
            {
                DotTokens<TW>.Run(path, weights.Slice((n - rowStart) * rowBytes, rowBytes), x, inFeatures, tokens, sums);
                for (int t = 0; t < tokens; t++)
                {
                    y[(t * outFeatures) + n] = bias.IsEmpty ? sums[t] : sums[t] + bias[n];
                }
            }

            return;
        }

        Span<float> converted = panel[..F32Panel.Floats(inFeatures)];
        for (int p = rowStart; p < rowEnd; p += PanelRows)
        {
            int rows = Math.Min(PanelRows, rowEnd - p);
            F32Panel.Fill<TW>(path, weights[((p - rowStart) * rowBytes)..], rowBytes, rows, inFeatures, converted);
            Panel(path, converted, rows, inFeatures, outFeatures, xBlocks, tokens, bias, y, p, NextPanel(weights, rowBytes, p + rows - rowStart));
        }
    }

    /// <summary>
    /// One token's rows of at least <see cref="RowsApart.FloatMinimumWidth"/> values in fours a quarter of the range apart,
    /// the last few alone (<see cref="RowsApart"/>); no F16 group is read exactly, in fours or alone (this runs only where
    /// <see cref="SubnormalOperands.AtFullSpeed"/>).
    /// </summary>
    private static void QuarteredRows<TW>(ReadOnlySpan<byte> weights, int rowBytes, ReadOnlySpan<float> x, ReadOnlySpan<float> bias, Span<float> y,
        int rowStart, int rowEnd, bool prefetch)
        where TW : struct, IWeightLoad
    {
        int quarter = (rowEnd - rowStart) / 4;
        for (int j = 0; j < quarter; j++)
        {
            (float a, float b, float c, float d) = Dot<TW>.FourRows512(weights.Slice(j * rowBytes, rowBytes), weights.Slice((quarter + j) * rowBytes, rowBytes),
                weights.Slice(((2 * quarter) + j) * rowBytes, rowBytes), weights.Slice(((3 * quarter) + j) * rowBytes, rowBytes), x, prefetch);
            int first = rowStart + j;
            y[first] = WithBias(a, bias, first);
            y[first + quarter] = WithBias(b, bias, first + quarter);
            y[first + (2 * quarter)] = WithBias(c, bias, first + (2 * quarter));
            y[first + (3 * quarter)] = WithBias(d, bias, first + (3 * quarter));
        }

        for (int n = rowStart + (4 * quarter); n < rowEnd; n++)
        {
            y[n] = WithBias(Dot<TW>.RunPlaced(KernelPath.Vector512, weights.Slice((n - rowStart) * rowBytes, rowBytes), x, prefetch), bias, n);
        }
    }

    /// <summary>
    /// One token's rows in pairs half the range apart, the last one alone (<see cref="RowsApart"/>): on the 512-bit path rows
    /// narrower than <see cref="RowsApart.FloatMinimumWidth"/>, without prefetch (<see cref="Dot{TW}.TwoRows512"/>), on the
    /// 256-bit path every row, prefetching as <paramref name="prefetch"/> says; no F16 group is read exactly, as in
    /// <see cref="QuarteredRows{TW}"/>.
    /// </summary>
    private static void HalvedRows<TW>(KernelPath path, ReadOnlySpan<byte> weights, int rowBytes, ReadOnlySpan<float> x, ReadOnlySpan<float> bias, Span<float> y,
        int rowStart, int rowEnd, bool prefetch)
        where TW : struct, IWeightLoad
    {
        int half = (rowEnd - rowStart) / 2;
        bool wide = path == KernelPath.Vector512;
        for (int j = 0; j < half; j++)
        {
            ReadOnlySpan<byte> first = weights.Slice(j * rowBytes, rowBytes), second = weights.Slice((half + j) * rowBytes, rowBytes);
            (float a, float b) = wide ? Dot<TW>.TwoRows512(first, second, x) : Dot<TW>.TwoRows256(first, second, x, prefetch);
            y[rowStart + j] = WithBias(a, bias, rowStart + j);
            y[rowStart + half + j] = WithBias(b, bias, rowStart + half + j);
        }

        for (int n = rowStart + (2 * half); n < rowEnd; n++)
        {
            y[n] = WithBias(Dot<TW>.RunPlaced(path, weights.Slice((n - rowStart) * rowBytes, rowBytes), x, prefetch && !wide), bias, n);
        }
    }

    /// <summary>A row's sum plus its bias, if there is one.</summary>
    private static float WithBias(float sum, ReadOnlySpan<float> bias, int n) => bias.IsEmpty ? sum : sum + bias[n];

    /// <summary>Floats of per-thread scratch the f32 panels of rows of <paramref name="inFeatures"/> values take: a panel, and rows dequantized into it.</summary>
    public static int PanelScratchFloats(int inFeatures) => F32Panel.Floats(inFeatures) + (PanelRows * inFeatures);

    /// <summary>
    /// <see cref="Rows{TW}"/> for Q8_0 and Q4_0 weights (and IQ4_NL's, a few tokens only): a few tokens (given as
    /// <paramref name="quantized"/> Q8_0 rows) dot each row of blocks in integers; more tokens multiply integer panels (<see cref="QuantPanel"/>; Q8_0 only with
    /// AVX-VNNI, see <see cref="QuantPanel.MultipliesInIntegers"/>), or without quantized activations dequantize a panel
    /// of rows to f32 once and reuse it for every block of tokens (<paramref name="xBlocks"/>). Q8_0's panels on the Intel Xeon: a 128-token prefill of the 0.5B
    /// shape 85.7 → 224.9 tokens/s on one thread (f32 panels against integers).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Q8Rows(KernelPath path, Formats.DType type, ReadOnlySpan<byte> weights, int inFeatures, int outFeatures,
        ReadOnlySpan<float> xBlocks, Q8Activations? quantized, int tokens, ReadOnlySpan<float> bias, Span<float> y, int rowStart, int rowEnd, Span<float> panel)
    {
        if (quantized is not null && tokens > RowDotTokens && type != Formats.DType.IQ4_NL)
        {
            // Prefill: panels of interleaved integer codes, as the k-quants' (Q8_0 only where QuantPanel.MultipliesInIntegers).
            QuantizedPanels(path, type, weights, inFeatures, outFeatures, quantized, null, tokens, bias, y, rowStart, rowEnd, panel);
            return;
        }

        if (quantized is not null && type == Formats.DType.Q4_0)
        {
            // A few tokens of Q4_0 (a small batch's decode step): integer products, two tokens at a time, each token's
            // result bit for bit its result alone (see Q8IntegerKernel.GemmRows).
            Q8IntegerKernel.GemmRows(path, weights, rowEnd - rowStart, quantized, tokens, y[rowStart..], outFeatures);
            for (int t = 0; t < tokens; t++)
            {
                AddBias(y.Slice((t * outFeatures) + rowStart, rowEnd - rowStart), bias, rowStart);
            }

            return;
        }

        if (quantized is not null)
        {
            // Q8_0 at decode: two tokens per pass over the rows (each token's sums bit for bit its sums alone). IQ4_NL token by
            // token (more than one only where each must get its own bits: else its Q8_0 panels, made at load, serve them).
            int t = 0;
            for (; type == Formats.DType.Q8_0 && t + 2 <= tokens; t += 2)
            {
                Span<float> first = y.Slice((t * outFeatures) + rowStart, rowEnd - rowStart), second = y.Slice(((t + 1) * outFeatures) + rowStart, rowEnd - rowStart);
                Q8IntegerKernel.DotRowsTwoTokens(path, weights, rowEnd - rowStart, quantized.Row(t), quantized.Row(t + 1), first, second);
                AddBias(first, bias, rowStart);
                AddBias(second, bias, rowStart);
            }

            for (; t < tokens; t++)
            {
                Span<float> results = y.Slice((t * outFeatures) + rowStart, rowEnd - rowStart);
                Q8IntegerKernel.DotRows(path, type, weights, rowEnd - rowStart, quantized.Row(t), results);
                AddBias(results, bias, rowStart);
            }

            return;
        }

        DequantizedPanels(path, type, weights, inFeatures, outFeatures, xBlocks, tokens, bias, y, rowStart, rowEnd, panel);
    }

    /// <summary>
    /// A Q5_0 matrix's rows in pairs of blocks (<see cref="Q5_0Pairs"/>) against a few tokens, each through
    /// <see cref="Q5_0PairKernel"/> alone (one token's decode; a few where each token must get its own bits, else they read
    /// the matrix's Q8_0 panels); the codes less 16 where <paramref name="offset"/>, else as they are (a Q5_1 matrix's).
    /// </summary>
    public static void Q5_0PairRows(KernelPath path, ReadOnlySpan<byte> pairs, int outFeatures, Q8Activations quantized, int tokens, ReadOnlySpan<float> bias,
        Span<float> y, int rowStart, int rowEnd, bool offset)
    {
        for (int t = 0; t < tokens; t++)
        {
            Span<float> results = y.Slice((t * outFeatures) + rowStart, rowEnd - rowStart);
            Q5_0PairKernel.DotRows(path, pairs, rowEnd - rowStart, quantized.Row(t), results, offset);
            AddBias(results, bias, rowStart);
        }
    }

    /// <summary>
    /// <see cref="Q8Rows"/>' and <see cref="KQuantRows"/>' panels for Q4_0 or Q4_K weights repacked at load (<see cref="NibblePanels"/>;
    /// rows a whole number of panels): the tokens' activations (<paramref name="q8"/> for Q4_0, <paramref name="q8k"/> for Q4_K)
    /// multiply the panels as they are (<see cref="QuantPanel.MultiplyRepacked(KernelPath, ReadOnlySpan{byte}, int, Q8Activations, Span{float}, int, ReadOnlySpan{byte})"/>),
    /// the next one prefetched while this one is multiplied.
    /// </summary>
    /// <remarks>
    /// Below <see cref="RepackedPanelTokens"/> tokens the rows are read as stored instead (see there), except where
    /// <see cref="PanelDecode"/> pays. A Q4_0 matrix's panels hold their scales as <paramref name="scales"/> says.
    /// </remarks>
    public static void RepackedRows(KernelPath path, Formats.DType type, ReadOnlySpan<byte> panels, int inFeatures, int outFeatures, Q8Activations? q8,
        Q8KActivations? q8k, int tokens, ReadOnlySpan<float> bias, Span<float> y, int rowStart, int rowEnd, PanelScales scales = PanelScales.F32)
    {
        int panelBytes = type == Formats.DType.Q8_0 ? Q8_0Panels.PanelBytes(inFeatures) : NibblePanels.PanelBytes(type, inFeatures, scales);
        if (type == Formats.DType.Q4_0 && q8 is { Tokens: 1, PanelTokens: 1 } && PanelDecode.HasKernel(path))
        {
            // One token (decode, where it reads the panels): all of them in one loop.
            Span<float> results = y[rowStart..rowEnd];
            PanelDecode.MultiplyQ4_0(path, panels[..((rowEnd - rowStart) / QuantPanel.Rows * panelBytes)], inFeatures, q8, results, scales);
            AddBias(results, bias, rowStart);
            return;
        }

        for (int p = rowStart; p < rowEnd; p += QuantPanel.Rows)
        {
            int at = (p - rowStart) / QuantPanel.Rows * panelBytes;
            ReadOnlySpan<byte> next = p + QuantPanel.Rows < rowEnd ? panels.Slice(at + panelBytes, panelBytes) : default;
            if (q8k is not null)
            {
                QuantPanel.MultiplyRepacked(path, panels.Slice(at, panelBytes), inFeatures, q8k, y[p..], outFeatures, next);
            }
            else if (type == Formats.DType.Q8_0)
            {
                QuantPanel.MultiplyRepackedQ8_0(path, panels.Slice(at, panelBytes), inFeatures, q8!, y[p..], outFeatures, next);
            }
            else
            {
                QuantPanel.MultiplyRepacked(path, panels.Slice(at, panelBytes), inFeatures, q8!, y[p..], outFeatures, next, scales);
            }

            for (int t = 0; t < tokens; t++)
            {
                AddBias(y.Slice((t * outFeatures) + p, QuantPanel.Rows), bias, p);
            }
        }
    }

    private static void AddBias(Span<float> results, ReadOnlySpan<float> bias, int rowStart)
    {
        if (!bias.IsEmpty)
        {
            System.Numerics.Tensors.TensorPrimitives.Add(results, bias.Slice(rowStart, results.Length), results);
        }
    }

    /// <summary>
    /// <see cref="Rows{TW}"/> for Q3_K, Q4_K, Q5_K and Q6_K weights (and Q2_K's and IQ4_XS's at decode) against the <paramref name="quantized"/> Q8_K activations: a few
    /// tokens dot each row of super-blocks in integers; more unpack a panel of rows once into interleaved integer codes and
    /// multiply every token against it (<see cref="QuantPanel"/>). Without activations, f32 panels against <paramref name="xBlocks"/>.
    /// With a <paramref name="layout"/> other than <see cref="PairedLayout.None"/>, <paramref name="weights"/> are a Q4_K or Q5_K
    /// matrix's paired rows (<see cref="PairedNibbleRows"/>), which only the few tokens' dot products read.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void KQuantRows(KernelPath path, Formats.DType type, ReadOnlySpan<byte> weights, int inFeatures, int outFeatures,
        ReadOnlySpan<float> xBlocks, Q8KActivations? quantized, int tokens, ReadOnlySpan<float> bias, Span<float> y, int rowStart, int rowEnd, Span<float> panel,
        PairedLayout layout = PairedLayout.None)
    {
        if (layout != PairedLayout.None && (quantized is null || tokens > RowDotTokens))
        {
            throw new ArgumentException($"paired {type} rows are read by the dot products of at most {RowDotTokens} quantized tokens; got {tokens}{(quantized is null ? ", not quantized" : "")}", nameof(layout));
        }

        if (quantized is not null && tokens > RowDotTokens)
        {
            // Many tokens (prefill, a big batch): panels of interleaved integer codes.
            QuantizedPanels(path, type, weights, inFeatures, outFeatures, null, quantized, tokens, bias, y, rowStart, rowEnd, panel);
            return;
        }

        if (quantized is not null)
        {
            // A few tokens (decode): integer dot products with the activations quantized once per step. A chunk's rows
            // stay in cache from one token to the next.
            for (int t = 0; t < tokens; t++)
            {
                Span<float> results = y.Slice((t * outFeatures) + rowStart, rowEnd - rowStart);
                KQuantIntegerKernel.DotRows(path, type, weights, rowEnd - rowStart, quantized.Row(t), results, layout);
                AddBias(results, bias, rowStart);
            }

            return;
        }

        DequantizedPanels(path, type, weights, inFeatures, outFeatures, xBlocks, tokens, bias, y, rowStart, rowEnd, panel);
    }

    /// <summary>
    /// Whether <paramref name="tokens"/> tokens multiply IQ4_XS rows through Q8_0 panels packed from them at every step
    /// (<see cref="Iq4XsPanels"/>) against Q8_0 activations: a prefill's, where Q8_0's panels multiply in integers (vpdpbusd).
    /// Elsewhere, and for fewer, as the other k-quants without integer panels: f32 panels (<see cref="ReadsTokenBlocks"/>).
    /// </summary>
    public static bool Iq4XsInIntegerPanels(KernelPath path, int tokens) => tokens > RowDotTokens && QuantPanel.MultipliesInIntegers(path, Formats.DType.Q8_0);

    /// <summary>
    /// IQ4_XS rows for many tokens (<see cref="Iq4XsInIntegerPanels"/>): <see cref="QuantizedPanels"/> with each panel of rows
    /// packed in Q8_0's form (<see cref="Q8_0Panels.PackIq4Xs"/>: every value as stored, a scale per 32) and multiplied against
    /// the tokens' Q8_0 activations in integers. On the 2-core Xeon an IQ4_XS 1.5B prefilled 512 tokens at 44-45 tokens/s
    /// with f32 panels, 60-67 so (one thread).
    /// </summary>
    public static void Iq4XsPanels(KernelPath path, ReadOnlySpan<byte> weights, int inFeatures, int outFeatures, Q8Activations q8, int tokens,
        ReadOnlySpan<float> bias, Span<float> y, int rowStart, int rowEnd, Span<float> panel) =>
        QuantizedPanels(path, Formats.DType.IQ4_XS, weights, inFeatures, outFeatures, q8, null, tokens, bias, y, rowStart, rowEnd, panel);

    /// <summary>
    /// Q4_0 or k-quant rows for many tokens: each panel of <see cref="QuantPanel.Rows"/> rows unpacked once into interleaved
    /// integer codes, then every token's quantized activations (<paramref name="q8"/> for Q4_0, Q8_0 and IQ4_XS, whose panels
    /// take Q8_0's form; <paramref name="q8k"/> for the k-quants) multiplied against it in integers.
    /// </summary>
    private static void QuantizedPanels(KernelPath path, Formats.DType type, ReadOnlySpan<byte> weights, int inFeatures, int outFeatures,
        Q8Activations? q8, Q8KActivations? q8k, int tokens, ReadOnlySpan<float> bias, Span<float> y, int rowStart, int rowEnd, Span<float> panel)
    {
        int rowBytes = (int)Formats.DTypes.ByteLength(type, inFeatures);
        for (int p = rowStart; p < rowEnd; p += QuantPanel.Rows)
        {
            int rows = Math.Min(QuantPanel.Rows, rowEnd - p);
            // The next panel's rows are prefetched while this one is multiplied: packing reads sixteen rows at once, which the
            // hardware prefetchers do not follow, and waited on memory at every line (a 16-token step of Q4_0's 4864 × 896
            // took 1.15 ms on one core, 0.46 of it multiplying).
            ReadOnlySpan<byte> next = p + rows < rowEnd
                ? weights.Slice((p + rows - rowStart) * rowBytes, Math.Min(QuantPanel.Rows, rowEnd - p - rows) * rowBytes)
                : default;
            QuantPanel.Pack(path, type, weights.Slice((p - rowStart) * rowBytes, rows * rowBytes), rows, inFeatures, panel);
            if (q8 is not null)
            {
                QuantPanel.Multiply(path, type, panel, rows, inFeatures, q8, y[p..], outFeatures, next);
            }
            else
            {
                QuantPanel.Multiply(path, type, panel, rows, inFeatures, q8k!, y[p..], outFeatures, next);
            }

            for (int t = 0; t < tokens; t++)
            {
                AddBias(y.Slice((t * outFeatures) + p, rows), bias, p);
            }
        }
    }

    /// <summary>
    /// Block-quantized rows (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K) for many tokens: each panel of <see cref="PanelRows"/> rows dequantized
    /// to f32 once, then used by every token.
    /// </summary>
    private static void DequantizedPanels(KernelPath path, Formats.DType type, ReadOnlySpan<byte> weights, int inFeatures, int outFeatures,
        ReadOnlySpan<float> xBlocks, int tokens, ReadOnlySpan<float> bias, Span<float> y, int rowStart, int rowEnd, Span<float> panel)
    {
        int rowBytes = (int)Formats.DTypes.ByteLength(type, inFeatures);
        Span<float> converted = panel[..F32Panel.Floats(inFeatures)];
        Span<float> dequantized = panel.Slice(F32Panel.Floats(inFeatures), PanelRows * inFeatures);
        for (int p = rowStart; p < rowEnd; p += PanelRows)
        {
            int rows = Math.Min(PanelRows, rowEnd - p);
            for (int r = 0; r < rows; r++)
            {
                ReadOnlySpan<byte> row = weights.Slice((p - rowStart + r) * rowBytes, rowBytes);
                QuantizedRows.Dequantize(path, type, row, dequantized.Slice(r * inFeatures, inFeatures));
            }

            F32Panel.Fill<F32Load>(path, MemoryMarshal.AsBytes(dequantized), inFeatures * sizeof(float), rows, inFeatures, converted);
            Panel(path, converted, rows, inFeatures, outFeatures, xBlocks, tokens, bias, y, p, NextPanel(weights, rowBytes, p + rows - rowStart));
        }
    }

    /// <summary>The stored rows of the panel from row <paramref name="row"/> of <paramref name="weights"/>, to prefetch; empty past the end.</summary>
    private static ReadOnlySpan<byte> NextPanel(ReadOnlySpan<byte> weights, int rowBytes, int row) =>
        weights.Length / rowBytes > row ? weights.Slice(row * rowBytes, Math.Min(PanelRows, (weights.Length / rowBytes) - row) * rowBytes) : default;

    /// <summary>
    /// All tokens against one <see cref="F32Panel"/> of <paramref name="rows"/> weight rows, a block of tokens at a time
    /// (<see cref="OuterProductTile"/>), each sum plus its bias written to its place in <paramref name="y"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Panel(KernelPath path, ReadOnlySpan<float> panel, int rows, int k, int outFeatures,
        ReadOnlySpan<float> xBlocks, int tokens, ReadOnlySpan<float> bias, Span<float> y, int firstRow, ReadOnlySpan<byte> next)
    {
        int lanes = TokenBlocks.Lanes(path), quads = F32Panel.ColumnQuads(k), blockFloats = TokenBlocks.BlockFloats(path, k);
        Span<float> sums = stackalloc float[OuterProductTile.Rows * OuterProductTile.Tokens], byToken = stackalloc float[OuterProductTile.Tokens * OuterProductTile.Rows];
        for (int first = 0; first < tokens; first += OuterProductTile.Tokens)
        {
            int blocks = Math.Min(OuterProductTile.Blocks(path), TokenBlocks.Count(path, tokens - first));
            OuterProductTile.Run(path, panel, xBlocks.Slice(first / lanes * blockFloats, blocks * blockFloats), blocks, quads, sums, first == 0 ? next : default);
            OuterProductTile.ByToken(path, sums, byToken);
            int inTile = Math.Min(OuterProductTile.Tokens, tokens - first);
            for (int t = 0; t < inTile; t++)
            {
                ReadOnlySpan<float> results = byToken.Slice(t * OuterProductTile.Rows, rows);
                Span<float> yt = y.Slice(((first + t) * outFeatures) + firstRow, rows);
                if (bias.IsEmpty)
                {
                    results.CopyTo(yt);
                }
                else
                {
                    System.Numerics.Tensors.TensorPrimitives.Add(results, bias.Slice(firstRow, rows), yt);
                }
            }
        }
    }
}
