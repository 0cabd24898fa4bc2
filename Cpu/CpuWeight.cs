using QwenSharp.Backend;
using QwenSharp.Cpu.Kernels;
using QwenSharp.Formats;
using QwenSharp.Memory;
using QwenSharp.Numerics;

namespace QwenSharp.Cpu;

/// <summary>
/// A weight as the CPU uses it: matrices stay where they are stored (the memory-mapped file, in their stored
/// type, zero-copy); vectors (norms, biases) are widened to f32 once, since every use reads them whole. A Q4_0 or Q4_K
/// matrix (and a Q8_0 one where the CPU has vpdpbusd) is also repacked once into the panels the integer kernels read
/// (<see cref="NibblePanels"/>, <see cref="Q8_0Panels"/>), which serve the products of several tokens (prefill, a batch's
/// decode step, prompt lookup's guesses); its stored rows stay for decode and the embedding lookup. Where the CPU's Q4_K
/// and Q5_K decode kernels read paired rows (<see cref="PairedNibbleRows"/>), such a matrix (given to <see cref="Repack"/>)
/// also holds its rows so rearranged, which decode then reads in place of the stored ones. Where every product reads such
/// copies (<see cref="ProductsReadCopies"/>), the model lets the stored rows' pages of a mapped file go from memory.
/// A Q5_0 matrix here is always its blocks in pairs (<see cref="Q5_0Pairs"/>, owned), with Q8_0 panels of the same values
/// for several tokens; where the CPU has no kernel for those it was widened to Q8_0 at upload. An IQ4_NL matrix here is
/// its stored rows (where <see cref="Iq4NlRows.Pays"/>), with Q8_0 panels of the same values likewise. One with
/// <see cref="BlockMinimums"/> was a Q5_1 matrix: its pairs hold the codes to take as they are, without Q5_0's offset.
/// </summary>
internal sealed unsafe class CpuWeight : DeviceWeight
{
    /// <summary>Where <see cref="Panels"/> came from.</summary>
    private WeightArena? _panelArena;

    /// <summary>The arena <see cref="Data"/> (and <see cref="BlockMinimums"/>) came from where this weight owns it (a Q5_0 matrix in pairs, or a Q5_0, IQ4_NL, Q4_1 or Q5_1 one widened to Q8_0); null for stored bytes or once given back.</summary>
    private WeightArena? _dataArena;

    /// <param name="dataArena">Where <paramref name="view"/>'s bytes came from when this weight is to own them (given back when it is disposed).</param>
    public CpuWeight(TensorView view, int rows, int cols, float[]? vector, WeightArena? dataArena = null)
        : base(view.Name, view.DType, rows, cols)
    {
        Data = (byte*)view.Data;
        RowBytes = DTypes.ByteLength(view.DType, cols);
        Vector = vector;
        _dataArena = dataArena;
    }

    public byte* Data { get; }

    /// <summary>A matrix multiplied from the view it was uploaded from reads its bytes; vectors (f32 copies) and matrices stored again do not.</summary>
    public override bool ReadsSourceBytes => Vector == null && _dataArena == null;

    public long RowBytes { get; }

    /// <summary>
    /// A Q4_1 or Q5_1 matrix's block minimums as f32 in groups of rows (<see cref="Kernels.BlockMinimums.Index"/>), its codes and
    /// scales being <see cref="Data"/> as Q8_0 (or Q5_0's pairs); null for other matrices. Owned with <see cref="Data"/>.
    /// </summary>
    public float* BlockMinimums { get; init; }

    /// <summary>Row <paramref name="row"/>'s minimum of block <paramref name="block"/> (<see cref="BlockMinimums"/>).</summary>
    public float BlockMinimum(int row, int block) => BlockMinimums[Kernels.BlockMinimums.Index(row, block, Cols / Kernels.BlockMinimums.BlockValues)];

    /// <summary>Whether the matrix has <see cref="BlockMinimums"/> (was stored as Q4_1 or Q5_1).</summary>
    public bool HasBlockMinimums => BlockMinimums != null;

    /// <summary>
    /// What a Q5_0 matrix's pairs' codes carry above their values' (<see cref="Q5_0Pairs"/>): Q5_0's 16, or 0 where the matrix has
    /// <see cref="BlockMinimums"/> (a Q5_1 matrix's codes, taken as stored, its minimums added apart).
    /// </summary>
    public int PairCodeOffset => HasBlockMinimums ? 0 : 16;

    /// <summary>The f32 values of a one-row weight; null for matrices.</summary>
    public float[]? Vector { get; }

    /// <summary>An F16 matrix with no infinity or NaN, read by the faster <see cref="Kernels.F16FiniteLoad"/>.</summary>
    public bool FiniteF16 => ExactGroups != null;

    /// <summary>
    /// A finite F16 matrix's map of the groups decode reads exactly (<see cref="F16ExactGroups.MapRow"/>, one row after
    /// another); null for other matrices.
    /// </summary>
    public ulong[]? ExactGroups { get; init; }

    /// <summary>The maps of rows [first, first + count) of <see cref="ExactGroups"/>; empty where there is none.</summary>
    public ReadOnlySpan<ulong> ExactGroupsOf(int first, int count)
    {
        int words = F16ExactGroups.MapWords(Cols);
        return ExactGroups is null ? default : ExactGroups.AsSpan(first * words, count * words);
    }

    /// <summary>A Q4_0, Q4_K, Q8_0, Q5_0 or IQ4_NL matrix's rows repacked (<see cref="NibblePanels"/>, <see cref="Q8_0Panels"/>), owned by this weight; null when not repacked.</summary>
    public byte* Panels { get; private set; }

    /// <summary>A Q4_K or Q5_K matrix's rows with paired nibbles (<see cref="PairedNibbleRows"/>), owned by this weight; null where decode reads the stored rows.</summary>
    public byte* PairedRows { get; private set; }

    /// <summary>How a repacked Q4_0 matrix's <see cref="Panels"/> hold their scales (chosen once, at <see cref="Repack"/>: <see cref="PanelDecode.Scales"/>).</summary>
    public PanelScales PanelScales { get; private set; }

    /// <summary>Whether decode reads <see cref="PairedRows"/>.</summary>
    public bool HasPairedRows => PairedRows != null;

    /// <summary>How <see cref="PairedRows"/> hold their scales (chosen once, at <see cref="Repack"/>); <see cref="PairedLayout.None"/> without.</summary>
    public PairedLayout PairedLayout { get; private set; }

    /// <summary>Bytes of <see cref="PairedRows"/> (the stored rows' bytes); 0 without.</summary>
    public long PairedBytesTotal => PairedRows == null ? 0 : RowBytes * Rows;

    /// <summary>Rows [first, first + count) of <see cref="PairedRows"/>.</summary>
    public ReadOnlySpan<byte> PairedRowBytesOf(int first, int count) =>
        PairedRows == null ? throw new InvalidOperationException($"{Name} has no paired rows") : new(PairedRows + (first * RowBytes), checked((int)(count * RowBytes)));

    /// <summary>The kernel path the matrix was repacked for (<see cref="Repack"/>).</summary>
    private KernelPath _repackedFor;

    /// <summary>The repacked panels' bytes where one token reads them (<see cref="PanelDecode"/>), else the stored rows'.</summary>
    public override long DecodeStepBytes =>
        (Repacked && PanelDecode.Pays(_repackedFor, StoredType) ? PanelBytesTotal : base.DecodeStepBytes) + MinimumBytes;

    /// <summary>Bytes of <see cref="BlockMinimums"/>; 0 without.</summary>
    public long MinimumBytes => BlockMinimums == null ? 0 : Kernels.BlockMinimums.Floats(Rows, Cols / Kernels.BlockMinimums.BlockValues) * sizeof(float);

    /// <summary>
    /// A Q4_K matrix with paired rows and panels (decode reads the one, several tokens the other), or a Q4_0 one whose panels
    /// one token reads too (<see cref="PanelDecode"/>): the stored rows serve only the embedding lookup of a tied table and
    /// fallbacks. (A Q5_K matrix's panels are packed from its stored rows at every prefill; a Q8_0's decode reads its rows.)
    /// </summary>
    public override bool ProductsReadCopies =>
        ReadsSourceBytes && Repacked && ((StoredType == DType.Q4_K && HasPairedRows) || PanelDecode.Pays(_repackedFor, StoredType));

    /// <summary>Whether the matrix was repacked (<see cref="Panels"/>).</summary>
    public bool Repacked => Panels != null;

    /// <summary>The repacked panels of rows [first, first + count), both whole panels (the linear job's chunks are).</summary>
    public ReadOnlySpan<byte> PanelBytesOf(int first, int count)
    {
        if (Panels == null || first % QuantPanel.Rows != 0 || count % QuantPanel.Rows != 0 || first < 0 || count < 0 || first + count > Rows)
        {
            throw new ArgumentOutOfRangeException(nameof(first), $"{Name}: rows {first} + {count} of {Rows} are not whole repacked panels of {QuantPanel.Rows}");
        }

        int panelBytes = PanelBytes;
        return new(Panels + (first / QuantPanel.Rows * (long)panelBytes), checked(count / QuantPanel.Rows * panelBytes));
    }

    /// <summary>Bytes of all the repacked panels; 0 when not repacked.</summary>
    public long PanelBytesTotal => Panels == null ? 0 : (long)PanelBytes * (Rows / QuantPanel.Rows);

    /// <summary>The type <see cref="Panels"/> hold: Q8_0 for a Q5_0 or IQ4_NL matrix (its values as Q8_0, without loss), else the stored type.</summary>
    public DType PanelType => StoredType is DType.Q5_0 or DType.IQ4_NL ? DType.Q8_0 : StoredType;

    /// <summary>Bytes of one repacked panel of this matrix's rows.</summary>
    private int PanelBytes => PanelType == DType.Q8_0 ? Q8_0Panels.PanelBytes(Cols) : NibblePanels.PanelBytes(StoredType, Cols, PanelScales);

    /// <summary>
    /// Repacks a Q4_0 or Q4_K matrix whose shape fits <see cref="NibblePanels"/>, or a Q8_0 one (Q5_0's, IQ4_NL's values) that fits <see cref="Q8_0Panels"/>
    /// where <paramref name="path"/> multiplies its panels in integers (else it stays as stored only), panels in parallel, into
    /// memory from <paramref name="arena"/> (given back when this weight is disposed).
    /// </summary>
    public void Repack(WeightArena arena, KernelPath path)
    {
        if (PairedRows == null && PairedNibbleRows.Pays(path, StoredType))
        {
            byte* paired = (byte*)arena.Allocate(RowBytes * Rows);
            _panelArena = arena;

            // The scales as two runs of fields where pdep is fast, decided here (the workers that read them ask no CPU switch).
            bool deposit = KQuantIntegerKernel.DepositsScales;
            Parallel.For(0, Rows, r => PairedNibbleRows.Repack(StoredType, RowBytesOf(r, 1), new Span<byte>(paired + (r * RowBytes), checked((int)RowBytes)), deposit));
            PairedRows = paired;
            PairedLayout = deposit ? PairedLayout.DepositedScales : PairedLayout.StoredScales;
        }

        bool fits = PanelType == DType.Q8_0
            ? Q8_0Panels.Fits(Rows, Cols) && QuantPanel.MultipliesInIntegers(path, DType.Q8_0)
            : NibblePanels.Fits(StoredType, Rows, Cols);
        if (Panels != null || !fits)
        {
            return;
        }

        // f16 scales where one token reads the panels, if every one is finite (the kernels' widening takes no infinity or NaN).
        PanelScales = StoredType == DType.Q4_0 && PanelDecode.Scales(path) == PanelScales.F16 && NibblePanels.HasFiniteScales(RowBytesOf(0, Rows))
            ? PanelScales.F16 : PanelScales.F32;
        int panelBytes = PanelBytes;
        long bytes = (long)panelBytes * (Rows / QuantPanel.Rows);
        byte* panels = (byte*)arena.Allocate(bytes);
        _panelArena = arena;
        // A Q5_0 matrix's pairs (Q5_0Pairs) or IQ4_NL's blocks become the Q8_0 rows of the same values first, in one buffer per thread.
        long widenedBytes = PanelType != StoredType ? QuantPanel.Rows * DTypes.ByteLength(DType.Q8_0, Cols) : 0;
        Parallel.For(0, Rows / QuantPanel.Rows, () => widenedBytes == 0 ? [] : new byte[widenedBytes], (p, _, widened) =>
        {
            ReadOnlySpan<byte> rows = RowBytesOf(p * QuantPanel.Rows, QuantPanel.Rows);
            var panel = new Span<byte>(panels + ((long)p * panelBytes), panelBytes);
            if (StoredType == DType.Q5_0)
            {
                Q5_0Pairs.ToQ8_0(rows, widened, PairCodeOffset);
                Q8_0Panels.Repack(widened, Cols, panel);
            }
            else if (StoredType == DType.IQ4_NL)
            {
                WidenedBlocks.WidenIq4_NLToQ8_0(rows, widened);
                Q8_0Panels.Repack(widened, Cols, panel);
            }
            else if (StoredType == DType.Q8_0)
            {
                Q8_0Panels.Repack(rows, Cols, panel);
            }
            else
            {
                NibblePanels.Repack(StoredType, rows, Cols, panel, PanelScales);
            }

            return widened;
        }, _ => { });
        Panels = panels;
        _repackedFor = path;
    }

    /// <summary>The stored bytes of rows [first, first + count).</summary>
    public ReadOnlySpan<byte> RowBytesOf(int first, int count) => new(Data + (first * RowBytes), checked((int)(count * RowBytes)));

    public static CpuWeight Of(DeviceWeight weight) =>
        weight as CpuWeight ?? throw new ArgumentException($"weight '{weight.Name}' belongs to another backend");

    public override void Dispose()
    {
        if (Panels != null)
        {
            _panelArena?.Free(Panels);
            Panels = null;
        }

        if (PairedRows != null)
        {
            _panelArena?.Free(PairedRows);
            PairedRows = null;
            PairedLayout = PairedLayout.None;
        }

        if (_dataArena is { } arena)
        {
            _dataArena = null;
            arena.Free(Data);
            if (BlockMinimums != null)
            {
                arena.Free(BlockMinimums);
            }
        }
    }
}
