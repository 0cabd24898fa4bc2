namespace QwenSharp.Cpu.Kernels;

/// <summary>
/// How a repacked Q4_0 panel (<see cref="NibblePanels"/>) holds its rows' block scales: widened to f32 after all its codes (20
/// bytes a row per 32 values), or as the file's f16 after each pair of blocks' codes (18 bytes, as Q4_0's rows; one stream of
/// bytes), widened by the kernels at every block (<see cref="NibblePanels.WidenHalves"/>).
/// </summary>
/// <remarks>
/// <para>
/// Where one token reads the panels and waits on memory (<see cref="PanelDecode"/> on AMD Zen 3), the tenth fewer bytes is a
/// tenth less to wait for, and the widening's four instructions per eight scales mostly run while it waits; where the
/// integer units bound the product (Zen 1's panels, prefill on the 512-bit path) they would be a cost, so the matrix keeps
/// f32 scales there. A product of more than four tokens widens a panel's f16 scales once, into the f32 layout, rather than
/// at every pass over its tokens.
/// </para>
/// <para>
/// On the Zen 3 (2 vCPUs, Q4_0 Qwen2.5-0.5B, alternating runs, medians of 8): decode 58.4 → 59.8 tokens/s on one thread
/// (6 of 8 won), 82.0 → 91.3 on two (8 of 8), with the one-token loop's quads written out (<see cref="PanelDecode"/>) and
/// the f16 scales after all the codes; the panels 308.7 → 277.9 MB. From memory on one core (<c>bench stream --type q4_0
/// --half-scales on|off</c>) that read at 76% of a plain sum; with each pair's scales after its codes, 85-86%, and decode
/// went 57.3 → 61.2 tokens/s on one thread (6 of 6 won; two threads alike, 98.1 and 97.3). From L2, where only instructions
/// bound it, the widening costs 8% of the rows a second. A 16-token prefill measured 2-3% slower (190 → 185 tokens/s, one
/// thread), a 512-token one alike within the host's noise.
/// </para>
/// </remarks>
internal enum PanelScales
{
    /// <summary>f32, an odd block's divided by 16 (exact: see <see cref="NibblePanels"/>).</summary>
    F32,

    /// <summary>The f16 bits as stored, every one finite (<see cref="NibblePanels.HasFiniteScales"/>).</summary>
    F16,
}
