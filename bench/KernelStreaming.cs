using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;
using QwenSharp.Memory;
using QwenSharp.Numerics;

namespace QwenSharp.Bench;

/// <summary>
/// Each decode kernel streaming 512 MiB of weights from memory on one thread, timed in turn with a plain vector sum over
/// as many bytes (<see cref="StreamSum"/>, the read <c>qwensharp bench --memory</c> measures; both on huge pages where
/// Linux gives them, as <see cref="HugePages"/>): the figure is the median
/// of the trials' ratios, kernel GB/s over sum GB/s, which a host's drifting bandwidth moves far less than either alone.
/// <code>
///   dotnet run -c Release --project bench -- stream [--type q8_0,q4_0,q5_0,q3_k,q4_k,q5_k,q6_k,iq4_xs,bf16,f16] [--trials 12] [--cols N]
///       [--rows-apart on|off] [--wide on|off] [--placed on|off] [--paired on|off] [--deposit on|off] [--panels on|off]
///       [--half-scales on|off] [--kib N]
/// </code>
/// <c>--panels</c> reads Q4_0's rows repacked into panels (<c>PanelDecode</c>) or as stored, whatever the CPU's answer;
/// <c>--half-scales off</c> keeps those panels' scales as f32 rather than f16 (<c>PanelScales</c>).
/// <c>--deposit</c> reads their scales by pdep (and IQ4_XS's) or as stored, whatever the CPU's answer.
/// <c>--paired</c> reads Q4_K's and Q5_K's rows paired (<c>PairedNibbleRows</c>) or as stored, whatever the CPU's answer.
/// <c>--placed</c> reads F16 weights placed throughout, or by their maps of exact groups, whatever
/// <c>SubnormalOperands</c> answers for this CPU.
/// <c>--wide</c> takes or leaves the 64-byte integer kernels (<c>VectorUnits</c>) whatever the CPU's answer; <c>--kib</c>
/// streams that many KiB of rows (and of the sum) over and over, up to 512 MiB a trial: a few hundred KiB measure a
/// kernel from L2, where only its own instructions bound it.
/// The rows are read as one-token decode reads them, 1024 at a time (repacked panels take over from
/// <c>MatMul.RepackedPanelTokens</c> tokens): the quantized kernels' rows and BF16/F16's <c>MatMul.Rows</c>, with
/// <c>RowsApart</c> where this CPU takes it (Q8_0 and BF16/F16 in pairs, on the 512-bit path BF16/F16 rows of at least
/// <c>RowsApart.FloatMinimumWidth</c> in fours) unless
/// <c>--rows-apart</c> says otherwise. They are 896 wide (1536 for the k-quants, Q3_K included, and IQ4_XS) unless <c>--cols</c> gives a width (a
/// whole number of the type's blocks), with random codes and sane scales, and
/// BF16/F16 weights uniform in ±0.035 as the random models' (F16 read as decode reads it: by its map of exact groups, or
/// placed throughout where <c>SubnormalOperands</c> allows).
/// </summary>
internal static unsafe class KernelStreaming
{
    private const long Bytes = 512L << 20;

    /// <summary>The smallest <c>--kib</c>: a few rows of the widest type still fit.</summary>
    private const int MinimumKib = 16;

    /// <summary>The widest <c>--cols</c>: 1M values, far past any model's, leaves a row well inside the buffer.</summary>
    private const int MaximumWidth = 1 << 20;

    public static int Run(string[] args)
    {
        string[] types = (PeerDecode.Option(args, "--type") ?? "q8_0,q4_0,q4_k,q5_k,q6_k,iq4_xs,bf16,f16").Split(',');
        int trials = PeerDecode.Count(args, "--trials", 12, minimum: 2);
        KernelPath path = KernelPaths.Default;
        int? cols = PeerDecode.Option(args, "--cols") is null ? null : PeerDecode.Count(args, "--cols", 0, minimum: 1);
        using ThreadOverride<RowsApart.Switch>.Scope? apart = OnOff(args, "--rows-apart", RowsApart.Assume);
        using ThreadOverride<VectorUnits.Switch>.Scope? wide = OnOff(args, "--wide", VectorUnits.Assume);

        using ThreadOverride<SubnormalOperands.Switch>.Scope? placed = OnOff(args, "--placed", SubnormalOperands.Assume);
        using ThreadOverride<PairedNibbleRows.Switch>.Scope? paired = OnOff(args, "--paired", PairedNibbleRows.Assume);
        using ThreadOverride<KQuantIntegerKernel.ScaleDepositSwitch>.Scope? deposit = OnOff(args, "--deposit", KQuantIntegerKernel.AssumeScaleDeposit);
        using ThreadOverride<PanelDecode.Switch>.Scope? panels = OnOff(args, "--panels", PanelDecode.Assume);
        using ThreadOverride<PanelDecode.HalfScalesSwitch>.Scope? halves = OnOff(args, "--half-scales", PanelDecode.AssumeHalfScales);

        // --kib: that many KiB of rows, passed over again and again up to 512 MiB a trial (from cache where they fit).
        long bytes = PeerDecode.Option(args, "--kib") is null ? Bytes : 1024L * Math.Min(PeerDecode.Count(args, "--kib", 0, minimum: MinimumKib), (int)(Bytes >> 10));
        int passes = (int)(Bytes / bytes);
        float* sumBuffer = (float*)HugePages.Allocate(Bytes);

        // One buffer for every type's rows, from the same allocator as the sum's and the model's repacked weights: a
        // managed array advised after the fact could be memory the collector had already faulted in on small pages.
        byte* weightBuffer = (byte*)HugePages.Allocate(Bytes);
        try
        {
            new Span<float>(sumBuffer, (int)(Bytes / sizeof(float))).Fill(1);
            Console.WriteLine($"{path}, 1 thread, {bytes >> 10} KiB each{(passes > 1 ? $" read {passes} times" : "")}, {trials} trials (the first dropped); medians");
            foreach (string name in types)
            {
                // By any type's name (DTypes.TryParse knows only the types QwenSharp writes), of those with a decode kernel here.
                DType? named = Enum.GetValues<DType>().Where(t => DTypes.Name(t).Equals(name, StringComparison.OrdinalIgnoreCase)).Cast<DType?>().FirstOrDefault();
                DType type = named is DType.Q2_K or DType.Q3_K or DType.Q8_0 or DType.Q4_0 or DType.IQ4_NL or DType.Q5_0 or DType.Q4_K or DType.Q5_K or DType.Q6_K or DType.IQ4_XS or DType.BF16 or DType.F16
                    ? named.Value
                    : throw new ArgumentException($"--type {name}: expected q8_0, q4_0, iq4_nl, q5_0, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_xs, bf16 or f16");
                int width = cols ?? (DTypes.BlockValues(type) == 256 ? 1536 : 896);
                if (width % DTypes.BlockValues(type) != 0 || width > MaximumWidth)
                {
                    throw new ArgumentException($"--cols {width}: a {DTypes.Name(type)} row is whole blocks of {DTypes.BlockValues(type)} values, at most {MaximumWidth}");
                }

                Action kernel = Kernel(type, path, width, weightBuffer, bytes);
                var ratios = new List<double>();
                var kernelRates = new List<double>();
                var sumRates = new List<double>();
                float keep = 0;
                for (int trial = 0; trial < trials; trial++)
                {
                    long start = Stopwatch.GetTimestamp();
                    for (int pass = 0; pass < passes; pass++)
                    {
                        keep += StreamSum.Sum(sumBuffer, bytes / sizeof(float));
                    }

                    double sumRate = passes * bytes / Stopwatch.GetElapsedTime(start).TotalSeconds / 1e9;
                    start = Stopwatch.GetTimestamp();
                    for (int pass = 0; pass < passes; pass++)
                    {
                        kernel();
                    }

                    double kernelRate = passes * bytes / Stopwatch.GetElapsedTime(start).TotalSeconds / 1e9;
                    if (trial > 0)
                    {
                        ratios.Add(kernelRate / sumRate);
                        kernelRates.Add(kernelRate);
                        sumRates.Add(sumRate);
                    }
                }

                GC.KeepAlive(keep);
                var c = CultureInfo.InvariantCulture;
                Console.WriteLine(string.Create(c, $"{DTypes.Name(type),-5} {width,5} wide: kernel {PeerDecode.Median(kernelRates),5:F2} GB/s, sum {PeerDecode.Median(sumRates),5:F2} GB/s: {100 * PeerDecode.Median(ratios):F1}% (trials {100 * ratios.Min():F0}-{100 * ratios.Max():F0}%)"));
            }

            return 0;
        }
        finally
        {
            HugePages.Free(sumBuffer);
            HugePages.Free(weightBuffer);
        }
    }

    /// <summary>A switch the option <paramref name="name"/> sets on or off for this thread (<paramref name="assume"/>); null where not given.</summary>
    private static ThreadOverride<TSwitch>.Scope? OnOff<TSwitch>(string[] args, string name, Func<bool, ThreadOverride<TSwitch>.Scope> assume)
        where TSwitch : struct =>
        PeerDecode.Option(args, name) switch
        {
            null => null,
            "on" => assume(true),
            "off" => assume(false),
            string other => throw new ArgumentException($"{name} {other}: expected on or off"),
        };

    /// <summary>The rows 1024 at a time (a product's share, as the linear job hands them out): (first row, count).</summary>
    private static Action InChunks(int rows, Action<int, int> dot) => () =>
    {
        for (int r = 0; r < rows; r += 1024)
        {
            dot(r, Math.Min(1024, rows - r));
        }
    };

    /// <summary>One pass of <paramref name="type"/>'s decode kernel over 512 MiB of its <paramref name="cols"/>-wide rows, written into <paramref name="buffer"/> here.</summary>
    private static Action Kernel(DType type, KernelPath path, int cols, byte* buffer, long bytes)
    {
        var random = new Random(1);
        int rowBytes = DTypes.IsQuantized(type) ? cols / DTypes.BlockValues(type) * DTypes.BlockBytes(type) : cols * 2;
        int rows = (int)(bytes / rowBytes);
        int length = rows * rowBytes;
        Span<byte> weights = new(buffer, length);
        // Rows r up to r + count of the buffer, as the kernels read them.
        ReadOnlySpan<byte> RowsAt(int r, int count) => new(buffer + ((long)r * rowBytes), count * rowBytes);

        float[] x = [.. Enumerable.Range(0, cols).Select(_ => (float)(random.NextDouble() - 0.5))];
        float[] y = new float[rows];
        if (type is DType.BF16 or DType.F16)
        {
            Span<ushort> halves = MemoryMarshal.Cast<byte, ushort>(weights);
            for (int i = 0; i < halves.Length; i++)
            {
                float value = (float)((random.NextDouble() - 0.5) * 0.04 * Math.Sqrt(3));
                halves[i] = type == DType.BF16 ? BFloat16Bits.FromSingle(value) : HalfBits.FromSingle(value);
            }
        }
        else
        {
            RandomBlocks(weights);
        }

        // Blocks of random codes with sane scales.
        void RandomBlocks(Span<byte> blocks)
        {
            random.NextBytes(blocks);
            int blockBytes = DTypes.BlockBytes(type);
            ushort scale = type is DType.Q8_0 or DType.Q4_0 or DType.IQ4_NL or DType.Q5_0 ? (ushort)0x2000 : (ushort)0x3C00;    // 2^-7 and 1: normal f16
            int scaleAt = type switch { DType.Q6_K => 208, DType.Q2_K => 80, DType.Q3_K => 108, _ => 0 };
            for (int b = 0; b < blocks.Length; b += blockBytes)
            {
                MemoryMarshal.Write(blocks[(b + scaleAt)..], scale);
                if (type is DType.Q4_K or DType.Q5_K or DType.Q2_K)
                {
                    MemoryMarshal.Write(blocks[(b + scaleAt + 2)..], scale);    // dmin
                }
            }
        }

        switch (type)
        {
            case DType.Q4_0 when PanelDecode.Pays(path, type):
                // As decode reads them where the CPU takes one token from the panels: the buffer's rows repacked into panels
                // (20 bytes a row per 32 values against 18, or 18 with f16 scales), as many as fit in the same bytes.
                PanelScales scales = PanelDecode.Scales(path);
                int panelBytes = NibblePanels.PanelBytes(type, cols, scales), panelCount = (int)(bytes / panelBytes);
                byte[] source = new byte[QuantPanel.Rows * rowBytes];
                for (int p = 0; p < panelCount; p++)
                {
                    // New rows for each panel, not the buffer's own: the panels overwrite those as they go.
                    RandomBlocks(source);
                    NibblePanels.Repack(type, source, cols, weights.Slice(p * panelBytes, panelBytes), scales);
                }

                var q8Panels = new Q8Activations();
                q8Panels.Quantize(x, 1, cols, path);
                int panelRows = panelCount * QuantPanel.Rows;
                float[] yPanels = new float[panelRows];
                ReadOnlySpan<byte> PanelsAt(int r, int count) => new(buffer + ((long)r / QuantPanel.Rows * panelBytes), count / QuantPanel.Rows * panelBytes);
                return InChunks(panelRows, (r, count) => MatMul.RepackedRows(path, type, PanelsAt(r, count), cols, panelRows, q8Panels, null, 1, default, yPanels, r, r + count, scales));
            case DType.Q5_0:
                // As decode reads them where the CPU has GFNI: in pairs of blocks (Q5_0Pairs), the same bytes; else widened to Q8_0.
                var q8Five = new Q8Activations();
                q8Five.Quantize(x, 1, cols, path);
                if (!Q5_0Pairs.Pays(path) || !Q5_0Pairs.Fits(cols))
                {
                    throw new ArgumentException(Q5_0Pairs.Pays(path)
                        ? $"--cols {cols}: Q5_0's pairs of blocks are 64 values; give a multiple of 64"
                        : $"--type q5_0: this CPU multiplies Q5_0 widened to Q8_0 on {path} (its pairs need GFNI and AVX-VNNI); stream q8_0 instead");
                }

                Q5_0Pairs.Repack(weights.ToArray(), weights);
                return InChunks(rows, (r, count) => Q5_0PairKernel.DotRows(path, RowsAt(r, count), count, q8Five.Row(0), y.AsSpan(r, count)));
            case DType.Q8_0 or DType.Q4_0 or DType.IQ4_NL:
                var q8 = new Q8Activations();
                q8.Quantize(x, 1, cols, path);
                return InChunks(rows, (r, count) => Q8IntegerKernel.DotRows(path, type, RowsAt(r, count), count, q8.Row(0), y.AsSpan(r, count)));
            case DType.Q4_K or DType.Q5_K when PairedNibbleRows.Pays(path, type):
                // As decode reads them where the CPU pairs them: the rows paired (in place), the codes to match.
                bool deposit = KQuantIntegerKernel.DepositsScales;
                PairedNibbleRows.Repack(type, weights, weights, deposit);
                var pairedQ8k = new Q8KActivations();
                pairedQ8k.Quantize(x, 1, cols, path);
                pairedQ8k.PairCodes();
                return InChunks(rows, (r, count) => KQuantIntegerKernel.DotRows(path, type, RowsAt(r, count), count, pairedQ8k.Row(0), y.AsSpan(r, count), deposit ? PairedLayout.DepositedScales : PairedLayout.StoredScales));
            case DType.Q2_K or DType.Q3_K or DType.Q4_K or DType.Q5_K or DType.Q6_K or DType.IQ4_XS:
                var q8k = new Q8KActivations();
                q8k.Quantize(x, 1, cols, path);
                return InChunks(rows, (r, count) => KQuantIntegerKernel.DotRows(path, type, RowsAt(r, count), count, q8k.Row(0), y.AsSpan(r, count)));
            case DType.BF16:
                return InChunks(rows, (r, count) => MatMul.Rows<Bf16Load>(path, RowsAt(r, count), cols, rows, x, default, 1, default, y, r, r + count, default));
            default:
                int words = F16ExactGroups.MapWords(cols);
                ulong[] map = new ulong[rows * words];
                for (int r = 0; r < rows; r++)
                {
                    F16ExactGroups.MapRow(RowsAt(r, 1), cols, map.AsSpan(r * words, words));
                }

                float[] scaled = [.. x.Select(v => v * F16Scaling.Up)];
                return InChunks(rows, (r, count) =>
                    MatMul.Rows<F16ScaledLoad>(path, RowsAt(r, count), cols, rows, scaled, default, 1, default, y, r, r + count, default, map.AsSpan(r * words, count * words)));
        }
    }
}
