using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using QwenSharp.Formats;

namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// Whether one token's product with a repacked Q4_0 matrix (a decode step of one sequence) reads the matrix's panels
/// (<see cref="NibblePanels"/>) rather than its stored rows (<see cref="Q8IntegerKernel"/>). The panels are 20 bytes per 32
/// weights against the rows' 18, but a panel's sixteen rows share each activation load, and with vpmaddubsw a sub-block's
/// sixteen 16-bit pair sums add up before one vpmaddwd widens them (<see cref="NibblePairSums"/>), where a stored row pays
/// a vpmaddwd, a conversion and two float operations for every block. Where the integer units, not memory, bound decode
/// that wins: on AMD Zen and Zen+ (family 17h below model 30h), whose 256-bit operations each run as two 128-bit halves and
/// whose vector integer multiplies issue on one pipe, both engines read Q4_0 rows at a third of the read bandwidth (ours and
/// llama.cpp's alike, see bench/results/amd-epyc-zen1-2core-avx2). There, the Q4_0 Qwen2.5-0.5B decoded 14.6-15.4 tokens/s
/// on one thread from the rows and 24.0-25.2 from the panels, 25.6-26.6 and 40.6-44.2 on two (alternating runs, 2-vCPU
/// EPYC). Q4_K's panels are 24 bytes per 32 weights against 18 and gained nothing there (1.5B Q4_K_M, two threads: 10.9
/// and 12.0 from the rows, 11.0 and 11.5 from the panels), so Q4_K reads its rows. Zen 3 (AVX2 only, whole 256-bit units)
/// reads Q4_0 rows at 57-64% of the read bound (bench/results/amd-epyc-zen3-2core-avx2), its four-row kernel held by its
/// arithmetic as on Zen 1: there the 0.5B decoded 33.6-54.0 tokens/s from the panels against 31.7-46.1 from the rows on
/// one thread (medians 42.6 and 37.6) and 54.9-88.5 against 52.4-85.1 on two (75.7 and 66.4; 8 alternating pairs each, 13
/// of the 16 won by the panels), so it reads the panels too. (On 2026-12-02, on a host reading 10-16 GB/s, the two
/// measured alike.) Zen 4 (the rest of AMD family 19h, <see cref="CpuIdentity.IsZen4"/>) has vpdpbusd only as AVX512_VNNI,
/// which .NET does not expose, so its rows take vpmaddubsw and vpmaddwd too, and one core reading 30 GB/s outruns them:
/// <c>bench stream --type q4_0</c> read the rows at 53-55% of a plain sum, the panels at 84% with f32 scales and 88-93% with
/// f16 ones; the 0.5B decoded 47-56 → 82-96 tokens/s on one thread and 85-91 → 104-143 on two (3 alternating runs each,
/// each won; llama.cpp 60 and 79 there). So it reads the panels, with f16 scales. Other cores with whole 256-bit units
/// (Zen 2, Zen 5, Intel's) read the rows; where one stream nears the read bound, 11% more bytes would cost. Tests set
/// either answer on their own thread.
/// From cache on that Zen 1 (256 rows of 896, one token), a block of a row took 2.35 ns through the panels against 3.87
/// through the rows; at 2.35 ns the 0.5B's 15.4 million row-blocks are about the whole decode step, so the panel kernel's
/// arithmetic is now the limit there. Walking each pair of sub-blocks once (each load split into both nibbles) instead of
/// twice measured the same (2.33-2.37 ns against 2.35-2.37), so the kernel is as prefill's.
/// </summary>
/// <remarks>
/// <para>
/// One token runs a thread's panels in one loop (<see cref="MultiplyQ4_0"/>) rather than through the panels' entry for any
/// number of tokens panel by panel, with the same sums bit for bit: on the Zen 3, the 0.5B decoded 49.0 → 56.0 tokens/s on
/// one thread and 68.8 → 89.5 on two (medians of 8 alternating runs each, 7 of 8 won each; 36.8 → 53.6 and 65.8 → 76.7 in
/// 6 earlier ones, each won), and <c>bench stream --type q4_0 --panels on</c> read the panels from memory at 80-85% of a
/// plain sum on one core (on runs where the host did not hold it to 62-67%).
/// </para>
/// <para>
/// The eight column quads of a pair of blocks are written out (<see cref="Quad"/>), their offsets constants: from L2 the loop
/// ran 35 → 42 GB/s on the Zen 3. From memory the same code with the pair's prefetches after its quads fell from 81% of a
/// plain sum to 68% (its loads, come sooner, held the miss buffers the prefetches wanted), 77% with them before the quads, 80%
/// with each quad prefetching its own code line, as here. On Zen 3 the panels keep f16 scales (<see cref="PanelScales"/>).
/// </para>
/// <para>
/// A panel's sums are the same for a token whatever else it is multiplied with, so where one token reads the panels, a
/// batch-invariant step (<see cref="CpuBackendOptions.BatchInvariant"/>) reads them too and gives each row its bits alone.
/// </para>
/// </remarks>
internal static class PanelDecode
{
    private static readonly bool s_pays = CpuIdentity.IsZen1Class || CpuIdentity.IsZen3 || CpuIdentity.IsZen4;

    /// <summary>Where the panels keep f16 scales (see <see cref="Scales"/>): Zen 3 and Zen 4, where one token waits on memory; not Zen 1, whose integer units bound it.</summary>
    private static readonly bool s_halfScales = CpuIdentity.IsZen3 || CpuIdentity.IsZen4;

    /// <summary>Whether one token's product with a repacked <paramref name="type"/> matrix on <paramref name="path"/> reads its panels (see the class).</summary>
    public static bool Pays(KernelPath path, DType type) =>
        type == DType.Q4_0 && path != KernelPath.Scalar && Avx2.IsSupported && Fma.IsSupported && ThreadOverride<Switch>.Or(s_pays);

    /// <summary>
    /// How a Q4_0 matrix repacked for <paramref name="path"/> keeps its panels' scales: f16 where one token reads them with
    /// <see cref="MultiplyQ4_0"/> and waits on memory (AMD Zen 3 and Zen 4: a tenth fewer bytes to wait for), else f32 (see
    /// <see cref="PanelScales"/>). On Zen 1, whose integer units bound the panels, widening them would cost.
    /// </summary>
    public static PanelScales Scales(KernelPath path) =>
        Pays(path, DType.Q4_0) && HasKernel(path) && ThreadOverride<HalfScalesSwitch>.Or(s_halfScales) ? PanelScales.F16 : PanelScales.F32;

    /// <summary>Until disposed, this thread's Q4_0 panels read by one token keep f16 scales if <paramref name="halves"/>, whatever the CPU's answer (for tests and <c>bench stream</c>).</summary>
    public static ThreadOverride<HalfScalesSwitch>.Scope AssumeHalfScales(bool halves) => ThreadOverride<HalfScalesSwitch>.Set(halves);

    /// <summary>Until disposed, this thread takes <paramref name="pays"/> as the CPU's answer (for tests).</summary>
    public static ThreadOverride<Switch>.Scope Assume(bool pays) => ThreadOverride<Switch>.Set(pays);

    /// <summary>Whether <see cref="MultiplyQ4_0"/> runs on <paramref name="path"/>: AVX2 and FMA without vpdpbusd (whose panels' odd sub-blocks are the codes × 16).</summary>
    public static bool HasKernel(KernelPath path) => path != KernelPath.Scalar && Avx2.IsSupported && Fma.IsSupported && !ByteDots.Vnni(path);

    /// <summary>
    /// y[i] = row i of the consecutive repacked Q4_0 <paramref name="panels"/> (<see cref="NibblePanels"/>) dotted with the one
    /// token of <paramref name="x"/>: bit for bit the sums of <see cref="QuantPanel.MultiplyRepacked(KernelPath, ReadOnlySpan{byte}, int, Q8Activations, Span{float}, int, ReadOnlySpan{byte})"/>
    /// panel by panel (each row: per block, in order, y = fma(Σ (code − 8) × a, scale × dx, y)), in one loop over the panels.
    /// That entry, made for any number of tokens, set up its operands for every panel, and cleared, loaded and stored its
    /// sixteen sums in memory at every block; here they stay in two registers through a panel, and each load of a pair of
    /// blocks' codes serves both blocks (its low nibbles, then its high ones shifted down). The panels hold their scales as
    /// <paramref name="panelScales"/> says (f16 ones after each pair's codes, widened exactly).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void MultiplyQ4_0(KernelPath path, ReadOnlySpan<byte> panels, int cols, Q8Activations x, Span<float> y, PanelScales panelScales = PanelScales.F32)
    {
        int panelBytes = NibblePanels.PanelBytes(DType.Q4_0, cols, panelScales);
        if (!HasKernel(path) || x.Tokens != 1 || x.PanelTokens != 1 || x.Cols != cols || !NibblePanels.Fits(DType.Q4_0, QuantPanel.Rows, cols)
            || panels.Length % panelBytes != 0 || y.Length != panels.Length / panelBytes * QuantPanel.Rows)
        {
            throw new ArgumentException($"one token against repacked Q4_0 panels of {cols} values, {panelScales} scales, on {path}: {panels.Length} bytes, {x.Tokens} tokens of {x.Cols}, {y.Length} results");
        }

        int count = panels.Length / panelBytes, pairs = cols / 64, codeBytes = NibblePanels.CodeBytes(cols), pairBytes = NibblePanels.PairBytes(panelScales);
        bool prefetch = Prefetch.InDecode(DType.Q4_0), halves = panelScales == PanelScales.F16;
        var widening = Vector256.Create(NibblePanels.HalfWidening);
        ref byte first = ref MemoryMarshal.GetReference(panels);
        ref sbyte a = ref MemoryMarshal.GetReference(x.AllCodes);
        ref float dx = ref MemoryMarshal.GetReference(x.ScalesByBlock);
        ref int offsets = ref MemoryMarshal.GetReference(x.Q4_0Offsets);
        ref float results = ref MemoryMarshal.GetReference(y);
        var ones = Vector256.Create((short)1);
        for (int p = 0; p < count; p++)
        {
            // References from offsets, never moved past the panels' end (the garbage collector would take such a reference
            // for the next object's).
            ref byte panel = ref Unsafe.Add(ref first, (nint)p * panelBytes);
            Vector256<float> y0 = default, y1 = default;
            for (int j = 0; j < pairs; j++)
            {
                // f16 scales follow the pair's codes; f32 ones come after all the panel's codes.
                ref byte w = ref Unsafe.Add(ref panel, pairBytes * j);
                ref byte scales = ref halves ? ref Unsafe.Add(ref w, 512) : ref Unsafe.Add(ref panel, codeBytes + (128 * j));
                if (prefetch)
                {
                    // The pair's 128 (or 64) scale bytes a few pages on; each quad prefetches its own code line.
                    Prefetch.Ahead(ref scales, halves ? 1 : 2);
                }

                // Blocks 2j (low nibbles) and 2j + 1 (high), rows 0-7 and 8-15: vpmaddubsw's pair sums add up in 16 bits over a
                // block (see NibblePairSums), widened once. The eight column quads written out: each one's offsets constants, with
                // no loop counter or address arithmetic.
                Vector256<short> low0 = default, low1 = default, high0 = default, high1 = default;
                ref sbyte xj = ref Unsafe.Add(ref a, 64 * j);
                Quad(ref w, ref xj, 0, prefetch, ref low0, ref low1, ref high0, ref high1);
                Quad(ref w, ref xj, 1, prefetch, ref low0, ref low1, ref high0, ref high1);
                Quad(ref w, ref xj, 2, prefetch, ref low0, ref low1, ref high0, ref high1);
                Quad(ref w, ref xj, 3, prefetch, ref low0, ref low1, ref high0, ref high1);
                Quad(ref w, ref xj, 4, prefetch, ref low0, ref low1, ref high0, ref high1);
                Quad(ref w, ref xj, 5, prefetch, ref low0, ref low1, ref high0, ref high1);
                Quad(ref w, ref xj, 6, prefetch, ref low0, ref low1, ref high0, ref high1);
                Quad(ref w, ref xj, 7, prefetch, ref low0, ref low1, ref high0, ref high1);

                // The blocks' scales of rows 0-7 and 8-15, as the panels' kernels have them: f16 widened exactly, or f32 with the
                // odd block's stored / 16 and × 16 again (exact); each × dx, then fma.
                Vector256<float> sLow0, sLow1, sHigh0, sHigh1;
                if (halves)
                {
                    sLow0 = NibblePanels.WidenHalves(ref scales) * widening;
                    sLow1 = NibblePanels.WidenHalves(ref Unsafe.Add(ref scales, 16)) * widening;
                    sHigh0 = NibblePanels.WidenHalves(ref Unsafe.Add(ref scales, 32)) * widening;
                    sHigh1 = NibblePanels.WidenHalves(ref Unsafe.Add(ref scales, 48)) * widening;
                }
                else
                {
                    ref float f32 = ref Unsafe.As<byte, float>(ref scales);
                    (sLow0, sLow1) = (Vector256.LoadUnsafe(ref f32), Vector256.LoadUnsafe(ref f32, 8));
                    (sHigh0, sHigh1) = (Vector256.LoadUnsafe(ref f32, 16) * 16, Vector256.LoadUnsafe(ref f32, 24) * 16);
                }

                var dLow = Vector256.Create(Unsafe.Add(ref dx, 2 * j));
                var dHigh = Vector256.Create(Unsafe.Add(ref dx, (2 * j) + 1));
                var offsetLow = Vector256.Create(Unsafe.Add(ref offsets, 2 * j));
                var offsetHigh = Vector256.Create(Unsafe.Add(ref offsets, (2 * j) + 1));
                y0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(low0, ones) + offsetLow), sLow0 * dLow, y0);
                y1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(low1, ones) + offsetLow), sLow1 * dLow, y1);
                y0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(high0, ones) + offsetHigh), sHigh0 * dHigh, y0);
                y1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(Avx2.MultiplyAddAdjacent(high1, ones) + offsetHigh), sHigh1 * dHigh, y1);
            }

            y0.StoreUnsafe(ref results, (nuint)(p * QuantPanel.Rows));
            y1.StoreUnsafe(ref results, (nuint)((p * QuantPanel.Rows) + 8));
        }
    }

    /// <summary>
    /// Column quad <paramref name="q"/> of a pair of blocks of the sixteen rows at <paramref name="w"/> against the token's
    /// codes at <paramref name="x"/>: one load of each eight rows' bytes for both blocks, its low nibbles then its high ones.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Quad(ref byte w, ref sbyte x, int q, bool prefetch, ref Vector256<short> low0, ref Vector256<short> low1, ref Vector256<short> high0,
        ref Vector256<short> high1)
    {
        if (prefetch)
        {
            Prefetch.Ahead(ref Unsafe.Add(ref w, 64 * q));
        }

        var nibbles = Vector256.Create((byte)0x0F);
        Vector256<byte> v0 = Vector256.LoadUnsafe(ref w, (nuint)(64 * q)), v1 = Vector256.LoadUnsafe(ref w, (nuint)((64 * q) + 32));
        Vector256<sbyte> xLow = QuantPanel.Broadcast(ref x, 4 * q), xHigh = QuantPanel.Broadcast(ref x, 32 + (4 * q));
        low0 += Avx2.MultiplyAddAdjacent(v0 & nibbles, xLow);
        low1 += Avx2.MultiplyAddAdjacent(v1 & nibbles, xLow);
        high0 += Avx2.MultiplyAddAdjacent((v0.AsUInt16() >> 4).AsByte() & nibbles, xHigh);
        high1 += Avx2.MultiplyAddAdjacent((v1.AsUInt16() >> 4).AsByte() & nibbles, xHigh);
    }

    /// <summary>Names this switch's <see cref="ThreadOverride{TSwitch}"/>.</summary>
    internal readonly struct Switch
    {
    }

    /// <summary>Names <see cref="AssumeHalfScales"/>' <see cref="ThreadOverride{TSwitch}"/>.</summary>
    internal readonly struct HalfScalesSwitch
    {
    }
}
